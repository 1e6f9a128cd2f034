"""`SparseAdagrad`: the row-sparse Adagrad update of an item matrix with optional heavy-ball
momentum and L2 (spec 7.4-7.5), with the original's handling of repeated rows as it runs:
every occurrence is scaled by the old A[idx_k] plus its own g_k^2, the accumulator receives
every occurrence's g_k^2 (scatter add), the stored velocity row is one of the per-occurrence
writes (scatter set), the parameter receives the sum of the per-occurrence steps.

Why an Op of its own rather than `Optimizer.sparse`'s graph: it updates P, A and V in place
(the C and Numba backends, through the rewrite below) and reads every gathered row once.
Its `perform` is the NumPy reference, and what the C backend runs (there is no C code);
the JAX and Numba implementations are in jax_dispatch.py and numba_dispatch.py (the JAX one is
the C++ kernel of sparse_update.cc on the CPU).
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import WalkingGraphRewriter, node_rewriter

from ..optimizers import EPS


def update_covered(adapt):
    """Whether `SparseAdagrad` implements the sparse update of this optimizer."""
    return adapt == "adagrad"


class SparseAdagrad(Op):
    """(P', A'[, V']) = SparseAdagrad(lr, momentum, lmbd)(P, A, [V,] idx, g).

    P: (N, D) or (N,) parameter, A: its Adagrad accumulator, V: its velocity (only when
    momentum > 0), idx: (n,) row indices in [0, N) (may repeat; no negative indices),
    g: (n, D) or (n,) one gradient row per occurrence. Per occurrence k, from the old rows:
    A_k = A[idx_k] + g_k^2, step_k = lr (g_k / sqrt(A_k + 1e-6) + lmbd P[idx_k]); with
    momentum v_k = momentum V[idx_k] - step_k. A[idx] is incremented by every g_k^2, V[idx]
    is set (one write per row survives), P[idx] is incremented by every v_k (or -step_k).
    With inplace=True the Op overwrites P, A and V (the C and Numba backends; JAX updates
    functionally, in place after donation).
    """

    __props__ = ("lr", "momentum", "lmbd", "inplace")

    def __init__(self, lr, momentum=0.0, lmbd=0.0, inplace=False):
        self.lr, self.momentum, self.lmbd = float(lr), float(momentum), float(lmbd)
        self.inplace = bool(inplace)
        if self.inplace:
            self.destroy_map = {i: [i] for i in range(self.n_state)}

    @property
    def n_state(self):
        return 3 if self.momentum > 0 else 2

    def make_node(self, *args):
        if len(args) != self.n_state + 2:
            raise TypeError(f"SparseAdagrad takes {self.n_state + 2} inputs (P, A, [V,] idx, g), got {len(args)}")
        arrays = [pt.as_tensor_variable(v) for v in args[:self.n_state]]
        idx, g = pt.as_tensor_variable(args[-2]), pt.as_tensor_variable(args[-1])
        P = arrays[0]
        if idx.ndim != 1 or not idx.dtype.startswith(("int", "uint")):
            raise TypeError("idx must be a vector of integers")
        if any(a.ndim != P.ndim or a.dtype != P.dtype for a in arrays) or g.ndim != P.ndim:
            raise TypeError("P, A, V and g must agree in rank and dtype")
        g = pt.cast(g, P.dtype)
        return Apply(self, arrays + [idx, g], [a.type() for a in arrays])

    def perform(self, node, inputs, output_storage):
        arrays, idx, g = inputs[:self.n_state], inputs[-2], inputs[-1]
        if not self.inplace:
            arrays = [a.copy() for a in arrays]
        P, A = arrays[0], arrays[1]
        acc = A[idx] + g * g
        step = g / np.sqrt(acc + np.asarray(EPS, P.dtype))
        if self.lmbd > 0:
            step = step + np.asarray(self.lmbd, P.dtype) * P[idx]
        step = np.asarray(self.lr, P.dtype) * step
        np.add.at(A, idx, g * g)  # repeated rows: every occurrence's g^2
        if self.momentum > 0:
            V = arrays[2]
            v = np.asarray(self.momentum, P.dtype) * V[idx] - step
            V[idx] = v
            np.add.at(P, idx, v)
        else:
            np.add.at(P, idx, -step)
        for store, a in zip(output_storage, arrays):
            store[0] = a

    def infer_shape(self, fgraph, node, shapes):
        return list(shapes[:self.n_state])


def sparse_adagrad(P, idx, g, state, lr, momentum=0.0, lmbd=0.0):
    """(new P, {'acc': new A[, 'vel': new V]}) through `SparseAdagrad`; state holds 'acc'
    (and 'vel' when momentum > 0), like `Optimizer.sparse`."""
    op = SparseAdagrad(lr, momentum, lmbd)
    ins = [P, state["acc"]] + ([state["vel"]] if momentum > 0 else [])
    outs = op(*ins, idx, g)
    new = {"acc": outs[1]}
    if momentum > 0:
        new["vel"] = outs[2]
    return outs[0], new


@node_rewriter([SparseAdagrad], inplace=True)
def local_inplace_sparse_adagrad(fgraph, node):
    """The in-place variant where nothing else needs the old P, A, V (C and Numba backends)."""
    op = node.op
    if op.inplace or fgraph.has_destroyers(node.inputs[:op.n_state]):
        return None
    return SparseAdagrad(op.lr, op.momentum, op.lmbd, inplace=True)(*node.inputs)


optdb.register("gru4rec_inplace_sparse_adagrad",
               WalkingGraphRewriter(local_inplace_sparse_adagrad, failure_callback=WalkingGraphRewriter.warn_inplace),
               "fast_run", "inplace", position=70.7)
