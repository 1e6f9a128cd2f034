"""`DenseAdagrad`: Adagrad with optional heavy-ball momentum and L2 on a dense weight (spec
7.1-7.3), as one Op: `Optimizer.dense`'s textbook update, or nothing on an all-padding step.

Why an Op: XLA's CPU backend ran the update as four passes over each weight (the RetailRocket
step's GRU weights: 0.5 of its 5 ms); as one Op, the JAX backend can run it on the CPU as the
one-pass kernel of dense_update.cc (jax_dispatch.py), where that gives XLA's bits. Its inner
graph is `Optimizer.dense` itself (the formula lives there): every other backend and device
compiles that graph, as before.
"""
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.tensor.symbolic import TensorSymbolicOp

from ..optimizers import Optimizer


class DenseAdagrad(TensorSymbolicOp):
    """(P', A'[, V']) = DenseAdagrad(lr, momentum, lmbd)(P, A, [V,] g, valid).

    P: a weight, A: its Adagrad accumulator, V: its velocity (only when momentum > 0), g: its
    gradient, all of one shape; valid: a scalar, the update happens where it is > 0 (else the
    outputs are P, A, V). The update is `Optimizer.dense` with adagrad."""

    __props__ = ("lr", "momentum", "lmbd")

    def __init__(self, input_types=None, *, lr, momentum=0.0, lmbd=0.0, **kwargs):
        # what `perform` compiles the inner graph with (the C VM; see score_loss.py)
        kwargs.setdefault("mode", Mode(linker="cvm", optimizer="fast_run"))
        super().__init__(input_types, lr=float(lr), momentum=float(momentum), lmbd=float(lmbd), **kwargs)

    @property
    def n_state(self):
        return 3 if self.momentum > 0 else 2

    def build_inner_graph(self, *inputs):
        if len(inputs) != self.n_state + 2:
            raise TypeError(f"DenseAdagrad takes {self.n_state + 2} inputs (P, A, [V,] g, valid), got {len(inputs)}")
        P, A, *rest = inputs
        g, valid = rest[-2], rest[-1]
        st = {"acc": A, "vel": rest[0]} if self.momentum > 0 else {"acc": A}
        new, ns = Optimizer("adagrad", [], self.lr, self.momentum, self.lmbd).dense(P, g, st)
        ok = valid > 0
        return [pt.switch(ok, new, P)] + [pt.switch(ok, ns[k], st[k]) for k in ("acc", "vel")[:self.n_state - 1]]

    def infer_shape(self, fgraph, node, shapes):
        """The shapes of P, A[, V]; OpFromGraph's own inference from the inner graph cost the
        training graph's compilation 0.2 s for its four updates."""
        return list(shapes[:self.n_state])


def dense_adagrad(P, g, state, valid, lr, momentum=0.0, lmbd=0.0):
    """(new P, {'acc': new A[, 'vel': new V]}) through `DenseAdagrad`, like `Optimizer.dense`
    with adagrad, or the old values where `valid` is not positive."""
    ins = [P, state["acc"]] + ([state["vel"]] if momentum > 0 else [])
    outs = DenseAdagrad(lr=lr, momentum=momentum, lmbd=lmbd)(*ins, g, valid)
    new = {"acc": outs[1]}
    if momentum > 0:
        new["vel"] = outs[2]
    return outs[0], new
