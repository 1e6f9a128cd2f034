"""Fused PyTensor Ops for the two hot spots of a training step, laid out as PyTensor lays out
its own: the Ops in score_loss.py and sparse_adagrad.py, each backend's implementation in its
own module (jax_dispatch.py, numba_dispatch.py), registered by `register_backends()`.

`ScoreLoss` (scores + final activation + loss with its gradient) is built from the formulas of
`gru4rec.losses` and needs no backend code; `SparseAdagrad` (the row-sparse Adagrad + momentum
update of spec 7.4) has a NumPy `perform` (what the C backend runs), a JAX and a Numba
implementation. Both equal the unfused graphs they replace (`gru4rec.losses` /
`gru4rec.optimizers`) on the same masked B x (B + S) problem.
"""
from importlib.util import find_spec

from .score_loss import ScoreLoss, loss_covered, score_loss
from .sparse_adagrad import SparseAdagrad, sparse_adagrad, update_covered

__all__ = ["ScoreLoss", "SparseAdagrad", "loss_covered", "register_backends", "score_loss",
           "sparse_adagrad", "update_covered"]


def register_backends():
    """Registers the JAX and (when installed) Numba implementations of the Ops.
    gru4rec.backend.configure() calls it once, before the first compile, instead of the
    import of this package: importing PyTensor's JAX dispatch sets JAX's x64 mode from
    floatX, and its Numba dispatch fixes the cache folder, so both must come after
    configure() has set floatX and the cache location."""
    from . import jax_dispatch  # noqa: F401  (registers on import)
    if find_spec("numba") is not None:
        from . import numba_dispatch  # noqa: F401
