"""Fused PyTensor Ops for the two hot spots of a training step.

`ScoreLoss`: the sampled scores R = h O^T + b, the logQ correction, the final activation and
the summed loss (spec 4.5-4.7, 6) in one Op that also returns the gradients w.r.t. h, O and b
from the same pass. Its `pullback` (the L_op) hands those back, scaled by the incoming
gradient, so the autodiff graph never rebuilds the B x K chain. Covered: cross-entropy with
softmax, BPR-max with elu-X or linear, without label smoothing; anything else stays on the
unfused graph.

`SparseAdagrad`: the row-sparse Adagrad update of an item matrix with optional heavy-ball
momentum and L2 (spec 7.4-7.5), with the original's handling of repeated rows as it runs:
every occurrence is scaled by the old A[idx_k] plus its own g_k^2, the accumulator receives
every occurrence's g_k^2, the stored velocity row is one of the per-occurrence writes, the
parameter receives the sum of the per-occurrence steps.

Each Op has a NumPy `perform` (the reference; it is what the C backend runs), a JAX
implementation (CPU and GPU) and a Numba implementation (compiled loops, no object mode).
The semantics equal `gru4rec.losses` / `gru4rec.optimizers` on the same masked B x (B + S)
problem, including the masks of inactive rows and columns.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from .losses import EPS as LOSS_EPS
from .optimizers import EPS as ADAGRAD_EPS

# coverage --------------------------------------------------------------------------------------


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


def update_covered(adapt):
    """Whether `SparseAdagrad` implements the sparse update of this optimizer."""
    return adapt == "adagrad"


# (a) scores + loss + its gradient ---------------------------------------------------------------


def _score_loss_xp(xp, sigmoid, h, O, b, lq, r, c, loss, act, alpha, bpreg, logq):
    """Loss sum and (dh, dO, db) for array module xp (numpy or jax.numpy); see ScoreLoss."""
    B, K = h.shape[0], O.shape[0]
    dt = h.dtype
    X = h @ O.T + b[None, :]
    if logq:
        X = X - logq * lq[None, :]
    ar = xp.arange(B)
    eye = ar[:, None] == xp.arange(K)[None, :]
    cm = c[None, :] > 0
    if loss == "cross-entropy":
        m = xp.max(xp.where(cm, X, -xp.inf), axis=1, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        e = xp.where(cm, xp.exp(X - m), 0)
        Z = e.sum(axis=1, keepdims=True)
        Y = e / xp.where(Z > 0, Z, 1)
        d = Y[ar, ar]
        total = (r * -xp.log(d + LOSS_EPS)).sum()
        w = r * d / (d + LOSS_EPS)
        G = w[:, None] * (Y - eye.astype(dt))
    else:
        if act == "elu":
            neg = alpha * xp.exp(xp.minimum(X, 0))
            Y = xp.where(X >= 0, X, neg - alpha)
            fp = xp.where(X >= 0, 1, neg).astype(dt)
        else:
            Y, fp = X, None
        N = xp.where(eye, 0, c[None, :]).astype(dt)
        Xn = Y * N
        e = xp.exp(Xn - Xn.max(axis=1, keepdims=True)) * N
        Z = e.sum(axis=1, keepdims=True)
        s = e / xp.where(Z > 0, Z, 1)
        d = Y[ar, ar]
        sig = sigmoid(d[:, None] - Y)
        T = (s * sig).sum(axis=1) + LOSS_EPS
        Y2 = Y * Y
        total = (r * (-xp.log(T) + bpreg * (s * Y2).sum(axis=1))).sum()
        a = bpreg * Y2 - sig / T[:, None]
        sp = s * sig * (1 - sig)
        gY = s * (a - (s * a).sum(axis=1, keepdims=True)) + sp / T[:, None] + (2 * bpreg) * s * Y
        gY = gY - eye.astype(dt) * (sp.sum(axis=1) / T)[:, None]
        G = r[:, None] * gY
        if fp is not None:
            G = G * fp
    G = G.astype(dt)
    return total.astype(dt), G @ O, G.T @ h, G.sum(axis=0)


class ScoreLoss(Op):
    """(loss, dh, dO, db) = ScoreLoss(...)(h, O, b, lq, rowmask, colmask).

    h: (B, H) last-layer output; O: (K, H) gathered output rows, K = B + S, the positive of
    row i at column i; b: (K,) their biases; lq: (K,) log-popularity column term (multiplied
    by the static `logq`; pass zeros when logq is 0); rowmask (B,), colmask (K,): 1 for
    active rows / columns. loss is the summed loss of spec 6 over the active rows, equal to
    loss_sum(activation(final_act)(h O^T + b - logq lq, colmask), rowmask, colmask, ...);
    dh, dO, db are its gradients. Differentiating `loss` returns those (times the incoming
    gradient); the last three outputs themselves are not differentiable.
    """

    __props__ = ("loss", "act", "alpha", "bpreg", "logq")

    def __init__(self, loss, act, alpha=0.0, bpreg=1.0, logq=0.0):
        if loss not in ("cross-entropy", "bpr-max") or act not in ("softmax", "elu", "linear") \
                or (loss == "cross-entropy") != (act == "softmax"):
            raise ValueError(f"ScoreLoss does not cover loss={loss!r} with final activation {act!r}")
        self.loss, self.act = loss, act
        self.alpha = float(alpha) if act == "elu" else 0.0
        self.bpreg = float(bpreg) if loss == "bpr-max" else 0.0
        self.logq = float(logq)

    def make_node(self, h, O, b, lq, rowmask, colmask):
        h, O, b = (pt.as_tensor_variable(v) for v in (h, O, b))
        dt = h.dtype
        lq, rowmask, colmask = (pt.cast(pt.as_tensor_variable(v), dt) for v in (lq, rowmask, colmask))
        O, b = pt.cast(O, dt), pt.cast(b, dt)
        if (h.ndim, O.ndim, b.ndim, lq.ndim, rowmask.ndim, colmask.ndim) != (2, 2, 1, 1, 1, 1):
            raise TypeError("ScoreLoss expects h (B,H), O (K,H), b (K,), lq (K,), rowmask (B,), colmask (K,)")
        outs = [pt.tensor(dtype=dt, shape=()), h.type(), O.type(), b.type()]
        return Apply(self, [h, O, b, lq, rowmask, colmask], outs)

    def perform(self, node, inputs, output_storage):
        with np.errstate(over="ignore", under="ignore"):
            res = _score_loss_xp(np, _np_sigmoid, *inputs, self.loss, self.act, self.alpha, self.bpreg, self.logq)
        for store, v, out in zip(output_storage, res, node.outputs):
            store[0] = np.asarray(v, dtype=out.dtype)

    def infer_shape(self, fgraph, node, shapes):
        return [(), shapes[0], shapes[1], shapes[2]]

    def pullback(self, inputs, outputs, output_grads):  # PyTensor 3's name for L_op
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


def _np_sigmoid(x):
    from scipy.special import expit
    return expit(x)


def score_loss(h, O, b, lq, rowmask, colmask, loss, final_act, bpreg=1.0, logq=0.0):
    """The summed loss of spec 6 on the scores h O^T + b through the fused `ScoreLoss` Op.

    lq may be None (no logQ correction)."""
    act, alpha = _act_kind(final_act)
    if lq is None or not logq:
        lq, logq = pt.zeros_like(b), 0.0
    return ScoreLoss(loss, act, alpha, bpreg, logq)(h, O, b, lq, rowmask, colmask)[0]


# (b) row-sparse Adagrad (+ momentum, L2) ---------------------------------------------------------


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
        step = g / np.sqrt(acc + np.asarray(ADAGRAD_EPS, P.dtype))
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


# in-place rewrite (C and Numba backends) --------------------------------------------------------


def _register_inplace():
    from pytensor.compile import optdb
    from pytensor.graph.rewriting.basic import WalkingGraphRewriter, node_rewriter

    @node_rewriter([SparseAdagrad], inplace=True)
    def local_inplace_sparse_adagrad(fgraph, node):
        op = node.op
        if op.inplace:
            return None
        if fgraph.has_destroyers(node.inputs[:op.n_state]):
            return None
        return SparseAdagrad(op.lr, op.momentum, op.lmbd, inplace=True)(*node.inputs)

    optdb.register("gru4rec_inplace_sparse_adagrad",
                   WalkingGraphRewriter(local_inplace_sparse_adagrad,
                                        failure_callback=WalkingGraphRewriter.warn_inplace),
                   "fast_run", "inplace", position=70.7)


_register_inplace()


# JAX --------------------------------------------------------------------------------------------


def _register_jax():
    import inspect

    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    @jax_funcify.register(ScoreLoss)
    def jax_funcify_ScoreLoss(op, **kwargs):
        params = (op.loss, op.act, op.alpha, op.bpreg, op.logq)

        def score_loss_jax(h, O, b, lq, rowmask, colmask):
            return _score_loss_xp(jnp, jax.nn.sigmoid, h, O, b, lq, rowmask, colmask, *params)

        return score_loss_jax

    @jax_funcify.register(SparseAdagrad)
    def jax_funcify_SparseAdagrad(op, **kwargs):
        lr, mom, lmbd = op.lr, op.momentum, op.lmbd
        # the indices are valid rows (inactive slots point at the padding row): no clamping,
        # no wrapping of negative indices (about a quarter of the update's time on the CPU)
        kw = dict(mode="promise_in_bounds")
        if "wrap_negative_indices" in inspect.signature(type(jnp.zeros(1).at[0]).get).parameters:
            kw["wrap_negative_indices"] = False

        def sparse_adagrad_jax(P, A, *rest):
            V = rest[0] if mom > 0 else None
            idx, g = rest[-2], rest[-1]
            acc = A.at[idx].get(**kw) + g * g
            step = g / jnp.sqrt(acc + ADAGRAD_EPS)
            if lmbd > 0:
                step = step + lmbd * P.at[idx].get(**kw)
            step = (lr * step).astype(P.dtype)
            A = A.at[idx].add(g * g, **kw)
            if mom > 0:
                v = (mom * V.at[idx].get(**kw) - step).astype(P.dtype)
                return P.at[idx].add(v, **kw), A, V.at[idx].set(v, **kw)
            return P.at[idx].add(-step, **kw), A

        return sparse_adagrad_jax


# Numba ------------------------------------------------------------------------------------------


def _numba_score_loss(op):
    import numba
    from math import exp, log

    is_xe = op.loss == "cross-entropy"
    is_elu = op.act == "elu"
    alpha, bpreg, logq, eps = op.alpha, op.bpreg, op.logq, LOSS_EPS

    @numba.njit(cache=False, fastmath=False)
    def score_loss_numba(h, O, b, lq, r, c):
        B, K = h.shape[0], O.shape[0]
        h = np.ascontiguousarray(h)
        O = np.ascontiguousarray(O)
        G = np.dot(h, O.T)  # the scores, overwritten row by row with their gradient
        Y = np.empty(K, np.float64)
        fp = np.ones(K, np.float64)
        s = np.empty(K, np.float64)
        sig = np.empty(K, np.float64)
        total = 0.0
        for i in range(B):
            for j in range(K):
                x = G[i, j] + b[j] - logq * lq[j]
                if is_xe:
                    Y[j] = x
                elif is_elu and x < 0:
                    fp[j] = alpha * exp(x)
                    Y[j] = fp[j] - alpha
                else:
                    fp[j] = 1.0
                    Y[j] = x
            ri = r[i]
            if is_xe:
                m = -np.inf
                for j in range(K):
                    if c[j] > 0 and Y[j] > m:
                        m = Y[j]
                if not np.isfinite(m):
                    m = 0.0
                Z = 0.0
                for j in range(K):
                    s[j] = exp(Y[j] - m) if c[j] > 0 else 0.0
                    Z += s[j]
                if Z <= 0:
                    Z = 1.0
                d = s[i] / Z
                total += ri * -log(d + eps)
                w = ri * d / (d + eps)
                for j in range(K):
                    G[i, j] = w * (s[j] / Z)
                G[i, i] -= w
            else:
                mx = -np.inf
                for j in range(K):
                    xn = Y[j] * c[j] if j != i else 0.0
                    if xn > mx:
                        mx = xn
                Z = 0.0
                for j in range(K):
                    if j != i and c[j] > 0:
                        s[j] = exp(Y[j] * c[j] - mx) * c[j]
                    else:
                        s[j] = 0.0
                    Z += s[j]
                if Z <= 0:
                    Z = 1.0
                d = Y[i]
                P = 0.0
                reg = 0.0
                for j in range(K):
                    s[j] /= Z
                    sig[j] = 1.0 / (1.0 + exp(Y[j] - d))
                    P += s[j] * sig[j]
                    reg += s[j] * Y[j] * Y[j]
                T = P + eps
                total += ri * (-log(T) + bpreg * reg)
                abar = 0.0
                spsum = 0.0
                for j in range(K):
                    abar += s[j] * (bpreg * Y[j] * Y[j] - sig[j] / T)
                    spsum += s[j] * sig[j] * (1.0 - sig[j])
                for j in range(K):
                    a = bpreg * Y[j] * Y[j] - sig[j] / T
                    sp = s[j] * sig[j] * (1.0 - sig[j])
                    gy = s[j] * (a - abar) + sp / T + 2.0 * bpreg * s[j] * Y[j]
                    if j == i:
                        gy -= spsum / T
                    G[i, j] = ri * gy * fp[j]
        dh = np.dot(G, O)
        dO = np.dot(G.T, h)
        db = G.sum(axis=0)
        return np.asarray(total, dtype=h.dtype), dh, dO, db

    return score_loss_numba


def _numba_sparse_adagrad(op):
    import numba

    lr, mom, lmbd, inplace, eps = op.lr, op.momentum, op.lmbd, op.inplace, ADAGRAD_EPS
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

    def as2d(x):
        return x.reshape((x.shape[0], -1))

    as2d = numba.njit(as2d)

    if has_v:
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


def _register_numba():
    try:
        from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
    except ImportError:  # numba is optional
        return

    def version(builder):
        # part of PyTensor's numba cache key: a changed kernel is never served from the cache
        import hashlib
        import inspect
        return int(hashlib.sha256(inspect.getsource(builder).encode()).hexdigest()[:12], 16)

    @register_funcify_default_op_cache_key(ScoreLoss)
    def numba_funcify_ScoreLoss(op, node=None, **kwargs):
        return _numba_score_loss(op), version(_numba_score_loss)

    @register_funcify_default_op_cache_key(SparseAdagrad)
    def numba_funcify_SparseAdagrad(op, node=None, **kwargs):
        return _numba_sparse_adagrad(op), version(_numba_sparse_adagrad)


def register_backends():
    """Registers the JAX and Numba implementations of the Ops. gru4rec.backend.configure()
    calls it once, before the first compile, instead of the import of this module: importing
    PyTensor's JAX dispatch sets JAX's x64 mode from floatX, and its Numba dispatch fixes the
    cache folder, so both must come after configure() has set floatX and the cache location."""
    _register_jax()
    _register_numba()
