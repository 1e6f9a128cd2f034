"""Fused PyTensor Ops for the hot spots of a training step and the counting pass of the
softmax ranking, laid out as PyTensor lays out its own: the Ops in score_loss.py,
sparse_adagrad.py, dense_adagrad.py and band_counts.py, each backend's implementation in its own
module (jax_dispatch.py, numba_dispatch.py), registered by `register_backend()`.

`ScoreLoss` (scores + final activation + loss with its gradient) is built from the formulas of
`gru4rec.losses`, which every backend compiles; JAX on the CPU runs BPR-max through the C++
kernel of bpr_max.cc instead (the same formulas, rounded differently). `SparseAdagrad` (the
row-sparse Adagrad + momentum update of spec 7.4) has a NumPy `perform` (what the C backend
runs), a JAX and a Numba implementation; on the CPU the JAX one is the C++ kernel of
sparse_update.cc (XLA's bits). Both Ops equal the unfused graphs they replace (`gru4rec.losses`
/ `gru4rec.optimizers`) on the same masked B x (B + S) problem. `DenseAdagrad` (the dense
weights' Adagrad + momentum update) is `Optimizer.dense` as an Op, which every backend compiles;
on the CPU the JAX backend runs the C++ kernel of dense_update.cc instead (XLA's bits).
`BandCounts` has a NumPy `perform` and a JAX implementation, on the CPU the C++ kernel of
band_counts.cc (gru4rec.ops.cpu_kernels builds the kernels).
"""
from .band_counts import BandCounts, band_counts
from .dense_adagrad import DenseAdagrad, dense_adagrad
from .score_loss import ScoreLoss, loss_covered, score_loss
from .sparse_adagrad import SparseAdagrad, sparse_adagrad, update_covered

__all__ = ["BandCounts", "DenseAdagrad", "ScoreLoss", "SparseAdagrad", "band_counts", "dense_adagrad",
           "loss_covered", "register_backend", "score_loss", "sparse_adagrad", "update_covered"]


def register_backend(backend):
    """Registers the implementation of the Ops for `backend` ('jax' or 'numba'; 'c' runs
    `perform`). `gru4rec.backend.mode_for` calls it after configure(), instead of the import
    of this package: importing PyTensor's JAX dispatch sets JAX's x64 mode from floatX, and
    its Numba dispatch fixes the cache folder, so both must come after configure() has set
    floatX and the cache location. Only the backend asked for is imported: importing the
    Numba dispatch cost every JAX run 0.2-0.4 s of its start (docs/performance.md)."""
    if backend == "jax":
        from . import jax_dispatch  # noqa: F401  (registers on import)
    elif backend == "numba":
        from . import numba_dispatch  # noqa: F401
