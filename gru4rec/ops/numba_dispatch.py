"""Numba implementation of `SparseAdagrad` (compiled loops, no object mode). `ScoreLoss`
needs none: PyTensor's OpFromGraph dispatch compiles its inner graph. Imported by
`register_backend("numba")`, after `gru4rec.backend.configure()` has placed the cache that
PyTensor's Numba dispatch fixes on import."""
import hashlib
import inspect

import numba
import numpy as np
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from ..optimizers import EPS
from .sparse_adagrad import SparseAdagrad


def _sparse_adagrad_kernel(op):
    lr, mom, lmbd, eps = op.lr, op.momentum, op.lmbd, EPS
    has_v = mom > 0

    @numba.njit(cache=False)
    def kernel(P, A, V, idx, g):
        # P, A, V, g as (rows, D) views; reads all rows first, then writes (add / set / add)
        n, D = g.shape
        upd = np.empty((n, D), P.dtype)
        for k in range(n):
            i = idx[k]
            for t in range(D):
                st = g[k, t] / np.sqrt(A[i, t] + g[k, t] * g[k, t] + eps)
                if lmbd > 0:
                    st += lmbd * P[i, t]
                st *= lr
                upd[k, t] = mom * V[i, t] - st if has_v else -st
        for k in range(n):
            i = idx[k]
            for t in range(D):
                A[i, t] += g[k, t] * g[k, t]
                if has_v:
                    V[i, t] = upd[k, t]
                P[i, t] += upd[k, t]

    return kernel


def _numba_sparse_adagrad(op):
    kernel, inplace = _sparse_adagrad_kernel(op), op.inplace

    @numba.njit
    def as2d(x):
        return x.reshape((x.shape[0], -1))

    if op.momentum > 0:
        @numba.njit
        def sparse_adagrad_numba(P, A, V, idx, g):
            if not inplace:
                P, A, V = P.copy(), A.copy(), V.copy()
            kernel(as2d(P), as2d(A), as2d(V), idx, as2d(np.ascontiguousarray(g)))
            return P, A, V
    else:
        @numba.njit
        def sparse_adagrad_numba(P, A, idx, g):
            if not inplace:
                P, A = P.copy(), A.copy()
            kernel(as2d(P), as2d(A), as2d(A), idx, as2d(np.ascontiguousarray(g)))
            return P, A

    return sparse_adagrad_numba


def _source_version(*builders):
    """Part of PyTensor's Numba cache key: a changed kernel is never served from the cache."""
    source = "".join(inspect.getsource(b) for b in builders)
    return int(hashlib.sha256(source.encode()).hexdigest()[:12], 16)


@register_funcify_default_op_cache_key(SparseAdagrad)
def numba_funcify_SparseAdagrad(op, node=None, **kwargs):
    return _numba_sparse_adagrad(op), _source_version(_sparse_adagrad_kernel, _numba_sparse_adagrad)
