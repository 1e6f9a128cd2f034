"""Activation functions (spec 4.7) and losses (spec 6) as PyTensor expressions.

Training scores are a static-shape B x (B + S) matrix: rows and in-batch target columns of
inactive slots (the shrinking tail of an epoch) are masked, so every formula below equals
the original's on the M x (M + S) matrix of the active slots. A step with no active slot
(padding, and with n_sample=0 no active column either) must give 0, not 0/0: hence `_ratio`.

These expressions are the only statement of each formula: the unfused training graph uses them
directly, and the fused `gru4rec.ops.ScoreLoss` differentiates them inside its own inner graph.
The row maximum subtracted before an exponent only keeps it from overflowing; the result does
not depend on it, so its gradient is exactly zero and `disconnected_grad` keeps autodiff from
building it (the argmax pass and its cancelling terms).
"""
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad

EPS = 1e-24


def _ratio(a, b):
    """a / b, and 0 where every term of b was masked (b == 0)."""
    return a / pt.switch(pt.eq(b, 0), 1, b)


def _row_max(X, colmask):
    """Each row's maximum over the unmasked columns (0 when every column is masked), a shift
    without gradient."""
    m = pt.max(pt.switch(colmask[None, :] > 0, X, -pt.inf), axis=1, keepdims=True)
    return disconnected_grad(pt.switch(pt.isinf(m), 0, m))


def activation(name):
    """f(X, colmask=None) for an activation name; softmax variants normalise over the
    unmasked columns of each row."""
    if name == "linear":
        return lambda X, colmask=None: X
    if name == "relu":
        return lambda X, colmask=None: pt.maximum(X, 0)
    if name == "tanh":
        return lambda X, colmask=None: pt.tanh(X)
    if name == "softmax":
        def softmax(X, colmask=None):
            if colmask is None:
                return pt.special.softmax(X, axis=-1)
            e = pt.exp(X - _row_max(X, colmask)) * colmask[None, :]
            return _ratio(e, e.sum(axis=1, keepdims=True))
        return softmax
    if name == "softmax_logit":
        def softmax_logit(X, colmask=None):
            if colmask is None:
                return -pt.special.log_softmax(X, axis=-1)
            Xm = X - _row_max(X, colmask)
            Z = (pt.exp(Xm) * colmask[None, :]).sum(axis=1, keepdims=True)
            return pt.log(pt.switch(pt.eq(Z, 0), 1, Z)) - Xm
        return softmax_logit
    kind, *args = name.split("-")
    args = [float(a) for a in args]
    if kind == "leaky" and len(args) == 1:
        return lambda X, colmask=None: pt.switch(X >= 0, X, args[0] * X)
    if kind == "elu" and len(args) == 1:
        return lambda X, colmask=None: pt.switch(X >= 0, X, args[0] * (pt.exp(pt.minimum(X, 0)) - 1))
    if kind == "selu" and len(args) == 2:
        return lambda X, colmask=None: args[0] * pt.switch(X >= 0, X, args[1] * (pt.exp(pt.minimum(X, 0)) - 1))
    raise ValueError(f"unknown activation {name!r}")


def _softmax_neg(Y, negmask):
    """Softmax over each row's negatives (spec 6): zero on the positive and on masked columns."""
    Xn = Y * negmask
    e = pt.exp(Xn - disconnected_grad(Xn.max(axis=1, keepdims=True))) * negmask
    return _ratio(e, e.sum(axis=1, keepdims=True))


def loss_sum(name, Y, rowmask, colmask, n_sample, bpreg=1.0, smoothing=0.0, target=None):
    """Summed loss over the active rows of Y (B x K, after logQ and the final activation).

    rowmask (B,) marks active slots; colmask (K,) active columns (the first B are the
    in-batch targets, the last n_sample the shared samples). The positive of row i is Y[i, i],
    or Y[i, target[i]] when `target` is given (full negatives: the columns are every item,
    and only the cross-entropy losses apply).
    """
    B = Y.shape[0]
    ar = pt.arange(B)
    M = rowmask.sum()
    if target is not None:
        if name not in ("cross-entropy", "xe_logit"):
            raise ValueError(f"loss {name!r} needs in-batch targets; full negatives train cross-entropy")
        d, K = Y[ar, target], colmask.sum()
    else:
        d, K = Y[ar, ar], M + n_sample
    eye = pt.eye(B, Y.shape[1], dtype=Y.dtype)
    negmask = (1 - eye) * colmask[None, :]
    if name in ("cross-entropy", "xe_logit"):
        per_pos = -pt.log(d + EPS) if name == "cross-entropy" else d
        if smoothing:
            all_cols = (-pt.log(Y + EPS) if name == "cross-entropy" else Y) * colmask[None, :]
            row = (1 - smoothing * _ratio(K, K - 1)) * per_pos + smoothing * _ratio(all_cols.sum(axis=1), K - 1)
        else:
            row = per_pos
    elif name == "bpr-max":
        s = _softmax_neg(Y, negmask)
        row = (-pt.log((s * pt.sigmoid(d[:, None] - Y)).sum(axis=1) + EPS)
               + bpreg * (s * Y ** 2).sum(axis=1))
    elif name == "top1-max":
        s = _softmax_neg(Y, negmask)
        row = (s * (pt.sigmoid(Y - d[:, None]) + pt.sigmoid(Y ** 2))).sum(axis=1)
    elif name == "bpr":
        row = -(pt.log(pt.sigmoid(d[:, None] - Y)) * colmask[None, :]).sum(axis=1)
    elif name == "top1":
        # The original broadcasts a column against a row here, which multiplies the value by M.
        terms = (pt.sigmoid(Y - d[:, None]) + pt.sigmoid(Y ** 2)) * colmask[None, :]
        row = M * _ratio(terms.sum(axis=1) - pt.sigmoid(d ** 2), K)
    else:
        raise ValueError(f"unknown loss {name!r}")
    return (row * rowmask).sum()
