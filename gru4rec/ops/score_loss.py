"""`ScoreLoss`: the sampled scores, the final activation and the summed loss of one training
step (spec 4.5-4.7, 6), with its gradients w.r.t. h, O and b, as one Op.

Why one Op: the value and the three gradients come from one pass, and the Op's pullback hands
those gradients back (scaled by the incoming gradient), so the step's autodiff graph never
rebuilds the B x (B + S) chain of the scores.

Why its inner graph is `gru4rec.losses`: each loss is written once, there. The Op is a
PyTensor `SymbolicOp` (an OpFromGraph built from its input types, like PyTensor's own
Softmax): its inner graph is that loss on h O^T + b - logq lq, and the gradients are
`pytensor.grad` of it. Every backend compiles that one inner graph with its own rewrites:
JAX and Numba through PyTensor's OpFromGraph dispatch, the C backend through `perform`, which
runs the inner graph compiled by the C VM (elementwise C code and BLAS calls). This replaced a
handwritten gradient (NumPy/JAX) and a Numba kernel that restated every formula: measured by
alternating both in one process on Diginetica with the RetailRocket, RSC15 and Diginetica
best parameters (2 shared CPU cores), training calls ran as fast with the derived graph on JAX
(0.99-1.02x the handwritten code's mb/s), Numba (0.96-1.02x) and C (0.94-1.05x). A
jax.value_and_grad of the same loss written in jax.numpy was no faster, and would have
restated the formulas once more.

Except one: on the CPU, the JAX backend computes BPR-max's loss and its gradient w.r.t. the
scores with the C++ kernel of bpr_max.cc (jax_dispatch.py), as XLA ran that part as some 16
passes over the score matrix, a quarter of a RetailRocket step (docs/performance.md). It
restates the formulas by hand; tests/test_bpr_max.py holds it to the float64 reference.

Covered: cross-entropy with softmax, BPR-max with elu-X or linear, without label smoothing;
the training step keeps every other loss on the unfused graph (see docs/adding_a_loss.md).
"""
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.tensor.symbolic import TensorSymbolicOp

from ..losses import activation, loss_sum


def _act_kind(final_act):
    """('linear', 0.0) or ('elu', alpha) or ('softmax', 0.0); None when not covered."""
    if final_act in ("linear", "softmax"):
        return final_act, 0.0
    kind, *args = final_act.split("-")
    if kind == "elu" and len(args) == 1:
        return "elu", float(args[0])
    return None


def loss_covered(loss, final_act, smoothing=0.0):
    """Whether `ScoreLoss` implements this loss / final activation pair."""
    kind = _act_kind(final_act)
    if kind is None or smoothing:
        return False
    if loss == "cross-entropy":
        return kind[0] == "softmax"
    if loss == "bpr-max":
        return kind[0] in ("linear", "elu")
    return False


class ScoreLoss(TensorSymbolicOp):
    """(loss, dh, dO, db) = ScoreLoss(loss, act, alpha, bpreg, logq)(h, O, b, lq, rowmask, colmask).

    h: (B, H) last-layer output; O: (K, H) gathered output rows, K = B + S, the positive of
    row i at column i; b: (K,) their biases; lq: (K,) log-popularity column term (multiplied
    by the static `logq`); rowmask (B,), colmask (K,): 1 for active rows / columns. loss is
    loss_sum(activation(final_act)(h O^T + b - logq lq, colmask), rowmask, colmask, ...), the
    summed loss of spec 6 over the active rows; dh, dO, db are its gradients. Differentiating
    `loss` returns those (times the incoming gradient); the last three outputs themselves are
    not differentiable.
    """

    __props__ = ("loss", "act", "alpha", "bpreg", "logq")

    def __init__(self, loss, act, alpha=0.0, bpreg=1.0, logq=0.0, **kwargs):
        self.loss, self.act = loss, act
        self.alpha = float(alpha) if act == "elu" else 0.0
        if not loss_covered(loss, self.final_act):
            raise ValueError(f"ScoreLoss does not cover loss={loss!r} with final activation {act!r}")
        self.bpreg = float(bpreg) if loss == "bpr-max" else 0.0
        self.logq = float(logq)
        # what `perform` compiles the inner graph with: only backends without an OpFromGraph
        # dispatch run perform, i.e. the C VM (PyTensor's default linker would be Numba)
        kwargs.setdefault("mode", Mode(linker="cvm", optimizer="fast_run"))
        super().__init__(**kwargs)

    @property
    def final_act(self):
        return f"elu-{self.alpha!r}" if self.act == "elu" else self.act

    @staticmethod
    def filter_inputs(h, O, b, lq, rowmask, colmask):
        h = pt.as_tensor_variable(h)
        rest = [pt.cast(pt.as_tensor_variable(v), h.dtype) for v in (O, b, lq, rowmask, colmask)]
        if (h.ndim, *(v.ndim for v in rest)) != (2, 2, 1, 1, 1, 1):
            raise TypeError("ScoreLoss expects h (B,H), O (K,H), b (K,), lq (K,), rowmask (B,), colmask (K,)")
        return (h, *rest)

    def build_inner_graph(self, h, O, b, lq, rowmask, colmask):
        R = pt.dot(h, O.T) + b[None, :] - self.logq * lq[None, :]
        n_sample = colmask.shape[0] - rowmask.shape[0]
        total = loss_sum(self.loss, activation(self.final_act)(R, colmask), rowmask, colmask, n_sample,
                         self.bpreg)
        return [total, *pytensor.grad(total, [h, O, b])]

    def pullback(self, inputs, outputs, output_grads):
        gz = output_grads[0]
        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            return [grad_not_implemented(self, i, x, "the gradient outputs of ScoreLoss are not differentiable")
                    for i, x in enumerate(inputs)]
        if isinstance(gz.type, DisconnectedType):
            return [DisconnectedType()() for _ in inputs]
        _, dh, dO, db = outputs
        gb = gz * db
        return [gz * dh, gz * dO, gb, -self.logq * gb,
                grad_not_implemented(self, 4, inputs[4], "rowmask"),
                grad_not_implemented(self, 5, inputs[5], "colmask")]


def score_loss(h, O, b, lq, rowmask, colmask, loss, final_act, bpreg=1.0, logq=0.0):
    """The summed loss of spec 6 on the scores h O^T + b through the fused `ScoreLoss` Op.

    lq may be None (no logQ correction)."""
    act, alpha = _act_kind(final_act)
    if lq is None or not logq:
        lq, logq = pt.zeros_like(b), 0.0
    return ScoreLoss(loss, act, alpha, bpreg, logq)(h, O, b, lq, rowmask, colmask)[0]
