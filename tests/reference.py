"""Independent pure-NumPy float64 reference of one GRU4Rec training step.

Written directly from the algorithm's description in docs/algorithm.md of the repository
("spec X.Y" below is its section X.Y): sections 4 (network), 5.3 (output item set),
6 (losses), 7 (optimiser) and 8 (init).
It is the yardstick the PyTensor implementation is tested against, so every
function favours a literal, readable transcription of the formulas over speed.
Nothing here imports pytensor or the ``gru4rec`` package.

Conventions
-----------
* ``M`` active slots, ``S`` extra samples, ``K = M + S`` score columns.
* Score matrix column ``j < M`` is the target of slot ``j``; the positive of row
  ``i`` is at column ``i``.
* All arrays are float64 (the original runs in float32; compare with a tolerance).
* ``By`` is a vector of shape ``(N,)`` here (``N x 1`` in the original).

Points where the spec is not fully explicit, and the choice made here
----------------------------------------------------------------------
* Duplicate indices (spec 7.4 as the original runs): the sparse Adagrad
  accumulator and the sparse Adam step counter are scatter-ADDED per occurrence
  (Theano's ``local_set_to_inc_subtensor`` rewrite turned the literal scatter set
  into an add); each occurrence is scaled from the OLD accumulator row plus its own
  ``g_k**2``.  The sparse momentum velocity stays a scatter SET: the original leaves
  unspecified which write survives, this reference lets the LAST occurrence win
  (explicit Python loop, so it does not depend on NumPy's fancy-assignment
  behaviour).  Tests that compare against an implementation should either use
  duplicates that all write the same velocity, or accept any one of them.
* ``cfg['sparse_updates'] == 'summed'`` (the official ports): the gradient rows of
  each index are summed first (``np.unique``), then one update per distinct row.
* Sparse rmsprop / adadelta / adam ("accurate" variants of spec 7.4): every
  touched row is multiplied by rho (beta) exactly ONCE, however often its index
  occurs, then ``(1 - rho) * g_k**2`` is scatter-ADDED per occurrence, then the
  post-update rows are read back for every occurrence.
  Adadelta: the scaling ``s_k`` uses the accumulator ``U`` gathered BEFORE this
  step and the already updated ``A``; ``U`` is then updated the same way
  (rows scaled by rho once, ``(1 - rho) * s_k * g_k**2`` scatter-added).
  Adam: the per-element step counter ``t`` grows by the number of occurrences
  of the row, each occurrence's bias correction uses ``t_old + 1``, and the first
  moment accumulates ``g**2`` (the quirks of spec 7.4).
* Adadelta forces ``learning_rate = 1.0`` (spec 7.3); the update functions here
  apply that rule themselves, whatever ``cfg['learning_rate']`` says.
* A missing ``cfg['adapt']`` means the model default ``'adagrad'``; ``None`` or
  any unknown string means plain SGD.
* Embedding dropout has no effect in no-embedding mode (spec 4.2), so
  ``masks['embed']`` is ignored there.
* ``init_as_normal``: normal draws with std sigma, ``np.random.normal(0, sigma)``
  (bit-identical to ``np.random.randn() * sigma`` on the legacy global RNG).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

EPS_LOSS = 1e-24  # inside the log of cross-entropy and bpr-max (spec 6)
EPS_ADAPT = 1e-6  # adaptive optimisers (spec 7.3)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------
def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax_rows(x):
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def _neg_log_softmax_rows(x):
    m = np.max(x, axis=-1, keepdims=True)
    return np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)) - (x - m)


# ---------------------------------------------------------------------------
# activations (spec 4.7)
# ---------------------------------------------------------------------------
def activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Return the activation function called ``name`` (spec 4.7)."""
    if name == "linear":
        return lambda x: np.asarray(x, dtype=np.float64)
    if name == "relu":
        return lambda x: np.maximum(x, 0.0)
    if name == "tanh":
        return np.tanh
    if name == "softmax":
        return _softmax_rows
    if name == "softmax_logit":
        return _neg_log_softmax_rows

    parts = name.split("-")
    kind, params = parts[0], [float(p) for p in parts[1:]]
    if kind == "leaky" and len(params) == 1:
        (alpha,) = params
        return lambda x: np.where(x >= 0, x, alpha * x)
    if kind == "elu" and len(params) == 1:
        (alpha,) = params
        # min(x, 0) only keeps exp() from overflowing in the unused branch
        return lambda x: np.where(x >= 0, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0))
    if kind == "selu" and len(params) == 2:
        scale, alpha = params
        return lambda x: scale * np.where(x >= 0, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0))
    raise NotImplementedError(name)


# ---------------------------------------------------------------------------
# logQ correction (spec 4.6)
# ---------------------------------------------------------------------------
def logq_correction(R: np.ndarray, pop_of_columns: np.ndarray, M: int,
                    logq: float, sample_alpha: float) -> np.ndarray:
    """R[:, j] - logq * log(Q_j); Q_j = count for j < M, count**sample_alpha for j >= M.

    ``pop_of_columns`` are the raw support counts of the K column items (pop[Y_all]).
    """
    pop_of_columns = np.asarray(pop_of_columns, dtype=np.float64)
    Q = pop_of_columns.copy()
    Q[M:] = pop_of_columns[M:] ** sample_alpha
    return R - logq * np.log(Q)[None, :]


# ---------------------------------------------------------------------------
# losses (spec 6)
# ---------------------------------------------------------------------------
def _softmax_over_negatives(Yhat: np.ndarray, M: int) -> np.ndarray:
    """s_ij = exp(Yhat_ij) / sum_{k != i} exp(Yhat_ik) for j != i, s_ii = 0."""
    K = Yhat.shape[1]
    mask = 1.0 - np.eye(M, K)
    Xp = Yhat * mask
    e = np.exp(Xp - np.max(Xp, axis=1, keepdims=True)) * mask
    return e / np.sum(e, axis=1, keepdims=True)


def loss_sum(name: str, Yhat: np.ndarray, M: int, bpreg: float = 1.0,
             smoothing: float = 0.0) -> float:
    """Summed (over the M rows) loss of spec 6, before the division by B."""
    Yhat = np.asarray(Yhat, dtype=np.float64)
    K = Yhat.shape[1]
    rows = np.arange(M)
    d = Yhat[rows, rows]  # positive score of each row (diagonal of the left M x M block)

    if name == "cross-entropy":
        per_row = -np.log(d + EPS_LOSS)
        if smoothing > 0:
            n = K
            all_cols = np.sum(-np.log(Yhat + EPS_LOSS), axis=1)
            per_row = (1.0 - smoothing * n / (n - 1)) * per_row + (smoothing / (n - 1)) * all_cols
        return float(np.sum(per_row))

    if name == "xe_logit":
        # Yhat already is -log softmax; no epsilon
        per_row = d
        if smoothing > 0:
            n = K
            per_row = (1.0 - smoothing * n / (n - 1)) * per_row + (smoothing / (n - 1)) * np.sum(Yhat, axis=1)
        return float(np.sum(per_row))

    if name == "bpr-max":
        s = _softmax_over_negatives(Yhat, M)
        ranking = -np.log(np.sum(s * sigmoid(d[:, None] - Yhat), axis=1) + EPS_LOSS)
        regulariser = bpreg * np.sum(s * Yhat ** 2, axis=1)
        return float(np.sum(ranking + regulariser))

    if name == "top1-max":
        s = _softmax_over_negatives(Yhat, M)
        return float(np.sum(s * (sigmoid(Yhat - d[:, None]) + sigmoid(Yhat ** 2))))

    if name == "bpr":
        # -log sigmoid(x) written as log(1 + exp(-x)); the j = i term is log 2
        return float(np.sum(np.logaddexp(0.0, -(d[:, None] - Yhat))))

    if name == "top1":
        # The original subtracts a length-M vector from an M x 1 column, which
        # broadcasts to an M x M matrix before the final sum: the value is
        # M * sum_i(mean_j(...) - sigmoid(d_i^2) / K).  Reproduced literally.
        column = np.mean(sigmoid(Yhat - d[:, None]) + sigmoid(Yhat ** 2), axis=1)[:, None]  # M x 1
        row = sigmoid(d ** 2) / K  # (M,)
        return float(np.sum(column - row))  # M x M after broadcasting

    raise NotImplementedError(name)


def full_loss_sum(name: str, Yhat: np.ndarray, y, smoothing: float = 0.0) -> float:
    """Cross-entropy summed over the rows with every item as a column (negatives='full'):
    the positive of row i is column y[i]; label smoothing spreads over all N columns."""
    assert name == "cross-entropy", name
    Yhat = np.asarray(Yhat, dtype=np.float64)
    n = Yhat.shape[1]
    per_row = -np.log(Yhat[np.arange(len(y)), y] + EPS_LOSS)
    if smoothing > 0:
        per_row = ((1.0 - smoothing * n / (n - 1)) * per_row
                   + (smoothing / (n - 1)) * np.sum(-np.log(Yhat + EPS_LOSS), axis=1))
    return float(np.sum(per_row))


# ---------------------------------------------------------------------------
# network (spec 4)
# ---------------------------------------------------------------------------
def embedding_mode(cfg: dict) -> str:
    """'shared', 'separate' or 'none' (spec 4.2)."""
    if cfg.get("constrained_embedding", False):
        return "shared"
    if cfg.get("embedding", 0):
        return "separate"
    return "none"


def gru_layer(a: np.ndarray, Hp: np.ndarray, Wh: np.ndarray, Wrz: np.ndarray,
              hidden_act: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """GRU equations of spec 4.3, given ``a = u . Wx + Bh`` (M x 3L) and Hp (M x L).

    Column layout of ``a``: [candidate | reset | update]; of Wrz: [reset | update].
    Returns h before dropout.
    """
    L = Hp.shape[1]
    a_h = a[:, 0:L]
    rz = sigmoid(a[:, L:3 * L] + Hp @ Wrz)
    r = rz[:, 0:L]
    z = rz[:, L:2 * L]
    h_cand = hidden_act((Hp * r) @ Wh + a_h)  # reset applied to the state BEFORE the matmul
    return (1.0 - z) * Hp + z * h_cand  # z weights the new candidate


def forward(params: dict, x, y, samples, H: list, cfg: dict, masks: dict | None = None):
    """One training-mode forward pass for M active slots.

    params: 'Wy' (N x L_last), 'By' (N,), 'Wx' [list per layer], 'Wh' [list],
    'Wrz' [list], 'Bh' [list of (3L,)], and 'E' (N x emb) only in separate-embedding mode.
    x, y: int arrays (M,); samples: int array (S,) (may be empty) of extra negatives.
    H: list of (M x L_i) previous hidden states.
    cfg keys: loss, final_act, hidden_act, constrained_embedding, embedding, bpreg,
    logq, smoothing, sample_alpha, pop (raw support counts, needed when logq != 0).
    masks: {'embed': (M x d_in) or None, 'hidden': [(M x L_i) or None per layer]},
    already scaled by 1/p_keep; None = no dropout.

    Returns (loss_sum, newH, Yhat): the loss summed over the M rows (before /B),
    the list of dropped-out layer outputs (before any reset), and the M x K matrix
    after logQ and the final activation.
    """
    x = np.asarray(x, dtype=np.int64).ravel()
    y = np.asarray(y, dtype=np.int64).ravel()
    samples = np.asarray(samples if samples is not None else [], dtype=np.int64).ravel()
    M = len(x)
    Y_all = np.concatenate([y, samples])  # spec 5.3: K = M + S output items

    masks = masks or {}
    embed_mask = masks.get("embed")
    hidden_masks = masks.get("hidden") or [None] * len(H)
    g = activation(cfg.get("hidden_act", "tanh"))
    mode = embedding_mode(cfg)

    Wx, Wh, Wrz, Bh = params["Wx"], params["Wh"], params["Wrz"], params["Bh"]
    newH = []
    u = None  # input of the current layer
    for i in range(len(H)):
        Hp = np.asarray(H[i], dtype=np.float64)
        if i == 0:
            if mode == "none":
                a = Wx[0][x] + Bh[0]  # row lookup = one-hot input times Wx[0]
            else:
                u = params["E"][x] if mode == "separate" else params["Wy"][x]
                if embed_mask is not None:
                    u = u * embed_mask
                a = u @ Wx[0] + Bh[0]
        else:
            a = u @ Wx[i] + Bh[i]
        h = gru_layer(a, Hp, Wh[i], Wrz[i], g)
        if hidden_masks[i] is not None:
            h = h * hidden_masks[i]
        newH.append(h)
        u = h  # the dropped-out output feeds the next layer

    if cfg.get("negatives") == "full":  # every item is a column; logQ does not apply
        Yhat = activation(cfg.get("final_act", "linear"))(u @ params["Wy"].T + params["By"][None, :])
        return full_loss_sum(cfg["loss"], Yhat, y, cfg.get("smoothing", 0.0)), newH, Yhat

    # output scoring (spec 4.5)
    O = params["Wy"][Y_all]  # K x L_last
    b = np.asarray(params["By"]).reshape(-1)[Y_all]  # (K,)
    R = u @ O.T + b[None, :]  # M x K

    logq = cfg.get("logq", 0.0)
    if logq != 0:
        pop = np.asarray(cfg["pop"], dtype=np.float64)
        R = logq_correction(R, pop[Y_all], M, logq, cfg.get("sample_alpha", 0.75))

    Yhat = activation(cfg.get("final_act", "linear"))(R)
    loss = loss_sum(cfg["loss"], Yhat, M, bpreg=cfg.get("bpreg", 1.0),
                    smoothing=cfg.get("smoothing", 0.0))
    return loss, newH, Yhat


# ---------------------------------------------------------------------------
# numerical gradient
# ---------------------------------------------------------------------------
def numerical_grad(f: Callable[[], float], arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of f() w.r.t. every element of ``arr``.

    ``arr`` is modified in place while probing and restored afterwards; f must read it.
    """
    grad = np.zeros(arr.shape, dtype=np.float64)
    for index in np.ndindex(arr.shape):
        original = arr[index]
        arr[index] = original + eps
        f_plus = f()
        arr[index] = original - eps
        f_minus = f()
        arr[index] = original
        grad[index] = (f_plus - f_minus) / (2.0 * eps)
    return grad


# ---------------------------------------------------------------------------
# initialisation (spec 8)
# ---------------------------------------------------------------------------
def _draw(shape, cfg: dict) -> np.ndarray:
    """One independently drawn block from the legacy global numpy RNG."""
    r, c = shape
    sigma = cfg.get("sigma", 0.0)
    if sigma == 0:
        sigma = np.sqrt(6.0 / (r + c))
    if cfg.get("init_as_normal", False):
        return np.random.normal(0.0, sigma, size=(r, c))
    return np.random.rand(r, c) * 2 * sigma - sigma


def init_weights(n_items: int, cfg: dict, seed: int = 42) -> dict:
    """Weights of spec 8, drawn in the original order; float64; biases zero."""
    layers = list(cfg["layers"])
    mode = embedding_mode(cfg)
    N = n_items
    np.random.seed(seed)
    params = {"Wx": [], "Wh": [], "Wrz": [], "Bh": []}

    if mode == "separate":
        emb = cfg["embedding"]
        if emb == "layersize":
            emb = layers[0]
        params["E"] = _draw((N, emb), cfg)
        d_in = emb
    elif mode == "shared":
        d_in = layers[-1]
    else:
        d_in = N

    for L in layers:
        Wx_blocks = [_draw((d_in, L), cfg) for _ in range(3)]  # candidate, reset, update
        params["Wx"].append(np.hstack(Wx_blocks))
        params["Wh"].append(_draw((L, L), cfg))
        Wrz_blocks = [_draw((L, L), cfg) for _ in range(2)]  # reset, update
        params["Wrz"].append(np.hstack(Wrz_blocks))
        params["Bh"].append(np.zeros(3 * L))
        d_in = L

    params["Wy"] = _draw((N, layers[-1]), cfg)
    params["By"] = np.zeros(N)
    return params


# ---------------------------------------------------------------------------
# optimiser (spec 7)
# ---------------------------------------------------------------------------
def grad_cap(grads: list, cap: float) -> list:
    """Global-norm capping (spec 7.2): scale every gradient by cap/norm when norm >= cap."""
    grads = [np.asarray(gr, dtype=np.float64) for gr in grads]
    if cap <= 0:
        return grads
    norm = np.sqrt(sum(np.sum(gr ** 2) for gr in grads))
    if norm >= cap:
        return [gr * (cap / norm) for gr in grads]
    return grads


def _state_array(state: dict, key: str, like: np.ndarray) -> np.ndarray:
    if key not in state:
        state[key] = np.zeros(like.shape, dtype=np.float64)
    return state[key]


def _learning_rate(cfg: dict) -> float:
    if cfg.get("adapt", "adagrad") == "adadelta":
        return 1.0  # spec 7.3: adadelta forces learning_rate = 1.0
    return cfg.get("learning_rate", 0.1)


def dense_update(p, state: dict, g, cfg) -> None:
    """In-place update of a dense parameter: spec 7.3 (adaptive scaling) + 7.5."""
    g = np.asarray(g, dtype=np.float64)
    adapt = cfg.get("adapt", "adagrad")
    adapt_params = cfg.get("adapt_params", [])
    lr = _learning_rate(cfg)
    momentum = cfg.get("momentum", 0.0)
    lmbd = cfg.get("lmbd", 0.0)

    if adapt == "adagrad":
        A = _state_array(state, "acc", p)
        A += g ** 2
        g_hat = g / np.sqrt(A + EPS_ADAPT)
    elif adapt == "rmsprop":
        rho = adapt_params[0]
        A = _state_array(state, "acc", p)
        A[...] = rho * A + (1 - rho) * g ** 2
        g_hat = g / np.sqrt(A + EPS_ADAPT)
    elif adapt == "adadelta":
        rho = adapt_params[0]
        A = _state_array(state, "acc", p)
        U = _state_array(state, "upd", p)
        A[...] = rho * A + (1 - rho) * g ** 2
        s = (U + EPS_ADAPT) / (A + EPS_ADAPT)  # uses U before its update
        U[...] = rho * U + (1 - rho) * s * g ** 2
        g_hat = g * np.sqrt(s)
    elif adapt == "adam":
        beta1, beta2 = adapt_params[0], adapt_params[1]
        V = _state_array(state, "acc", p)
        Mo = _state_array(state, "mom", p)
        t = _state_array(state, "t", p)
        V[...] = beta2 * V + (1 - beta2) * g ** 2
        Mo[...] = beta1 * Mo + (1 - beta1) * g
        t += 1
        correction = 1 - beta1 ** t  # beta1 in BOTH corrections (quirk)
        g_hat = (Mo / correction) / (np.sqrt(V / correction) + EPS_ADAPT)
    else:
        g_hat = g  # plain SGD

    if momentum > 0:
        v = _state_array(state, "vel", p)
        v[...] = momentum * v - lr * (g_hat + lmbd * p)
        p += v
    else:
        p[...] = p * (1 - lr * lmbd) - lr * g_hat


def _scatter_set_last_wins(target: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """target[idx_k] = values_k for k = 0, 1, ...: with duplicates the LAST write wins."""
    for k in range(len(idx)):
        target[idx[k]] = values[k]


def _scale_touched_rows(target: np.ndarray, idx: np.ndarray, factor: float) -> None:
    """Multiply every touched row by ``factor`` once, however often it occurs in idx."""
    for row in np.unique(idx):
        target[row] = target[row] * factor


def sparse_update(P, state: dict, idx, g, cfg) -> None:
    """In-place per-occurrence sparse update of spec 7.4 + 7.5 for one matrix P.

    ``g`` holds one row-gradient per OCCURRENCE in ``idx`` (duplicates allowed).
    Accumulators are scatter-added, the velocity scatter-set with the last occurrence
    winning (see module docstring); the parameter receives the SUM of the
    per-occurrence updates (scatter add). With ``sparse_updates='summed'`` the
    occurrences of a row are summed first and the row is updated once.
    """
    idx = np.asarray(idx, dtype=np.int64).ravel()
    g = np.asarray(g, dtype=np.float64).reshape((len(idx),) + P.shape[1:])
    if cfg.get("sparse_updates", "per-occurrence") == "summed":
        idx, where = np.unique(idx, return_inverse=True)
        summed = np.zeros((len(idx),) + g.shape[1:])
        np.add.at(summed, where, g)
        g = summed
    adapt = cfg.get("adapt", "adagrad")
    adapt_params = cfg.get("adapt_params", [])
    lr = _learning_rate(cfg)
    momentum = cfg.get("momentum", 0.0)
    lmbd = cfg.get("lmbd", 0.0)

    P_rows = P[idx].copy()  # current value of every gathered row (for L2)

    if adapt == "adagrad":
        A = _state_array(state, "acc", P)
        A_new = A[idx] + g ** 2  # every occurrence starts from the OLD row
        np.add.at(A, idx, g ** 2)  # the accumulator gets every occurrence's g**2
        g_hat = g / np.sqrt(A_new + EPS_ADAPT)  # each occurrence with its own A_new
    elif adapt == "rmsprop":
        rho = adapt_params[0]
        A = _state_array(state, "acc", P)
        _scale_touched_rows(A, idx, rho)
        np.add.at(A, idx, (1 - rho) * g ** 2)
        g_hat = g / np.sqrt(A[idx] + EPS_ADAPT)
    elif adapt == "adadelta":
        rho = adapt_params[0]
        A = _state_array(state, "acc", P)
        U = _state_array(state, "upd", P)
        _scale_touched_rows(A, idx, rho)
        np.add.at(A, idx, (1 - rho) * g ** 2)
        s = (U[idx] + EPS_ADAPT) / (A[idx] + EPS_ADAPT)  # U before its update, A after
        _scale_touched_rows(U, idx, rho)
        np.add.at(U, idx, (1 - rho) * s * g ** 2)
        g_hat = g * np.sqrt(s)
    elif adapt == "adam":
        beta1, beta2 = adapt_params[0], adapt_params[1]
        V = _state_array(state, "acc", P)
        Mo = _state_array(state, "mom", P)
        t = _state_array(state, "t", P)
        _scale_touched_rows(V, idx, beta2)
        np.add.at(V, idx, (1 - beta2) * g ** 2)
        _scale_touched_rows(Mo, idx, beta1)
        np.add.at(Mo, idx, (1 - beta1) * g ** 2)  # quirk: squared gradient in the first moment
        t_new = t[idx] + 1  # each occurrence's correction: old counter + 1
        np.add.at(t, idx, 1.0)  # the stored counter grows by the number of occurrences
        correction = 1 - beta1 ** t_new
        g_hat = (Mo[idx] / correction) / (np.sqrt(V[idx] / correction) + EPS_ADAPT)
    else:
        g_hat = g  # plain SGD

    if lmbd > 0:
        delta = lr * (g_hat + lmbd * P_rows)
    else:
        delta = lr * g_hat

    if momentum > 0:
        vel = _state_array(state, "vel", P)
        v = momentum * vel[idx] - delta
        _scatter_set_last_wins(vel, idx, v)
        np.add.at(P, idx, v)
    else:
        np.add.at(P, idx, -delta)


# ---------------------------------------------------------------------------
# truncated BPTT over a window of consecutive minibatches
# ---------------------------------------------------------------------------
def forward_window(steps: list, H: list):
    """Losses of consecutive minibatches whose hidden state is carried from one step to
    the next, so that the loss depends on the earlier steps' inputs (truncated BPTT).

    Every element of ``steps`` is a dict with the ``forward`` arguments of that step:
    'params', 'x', 'y', 'samples', 'cfg', optionally 'masks', and 'reset' (M,): 1 where the
    target ends the slot's session, so that the slot's state is zero for the next step and
    nothing of the earlier steps reaches it. All M slots are active in every step.

    Returns (the summed loss of every step, before /B; the state after the last step).
    """
    losses = []
    for s in steps:
        loss, newH, _ = forward(s["params"], s["x"], s["y"], s["samples"], H, s["cfg"], s.get("masks"))
        losses.append(loss)
        keep = 1.0 - np.asarray(s["reset"], dtype=np.float64)
        H = [h * keep[:, None] for h in newH]
    return losses, H
