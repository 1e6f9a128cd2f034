"""GRU4Rec on PyTensor: a faithful reimplementation of the session-based recommender.

`GRU4Rec` and `DataError` are imported on first use, so that the light modules
(`gru4rec.params`, the command-line parsers) load without PyTensor and JAX. Importing the
package sets nothing up; see `gru4rec.backend` for what the first compile does.

The algorithm is described in docs/algorithm.md of the repository: "spec X.Y" in the
docstrings and comments of every module means its section X.Y.
"""
import importlib

__all__ = ["GRU4Rec", "DataError"]
__version__ = "0.1.0"
_LAZY = {"GRU4Rec": ".recommender", "DataError": ".data"}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
