"""GRU4Rec on PyTensor: a faithful reimplementation of the session-based recommender."""
from . import backend  # noqa: F401  (must come before anything that builds graphs)
from .data import DataError
from .recommender import GRU4Rec

__all__ = ["GRU4Rec", "DataError"]
__version__ = "0.1.0"
