"""Small trained models and a brute-force NumPy evaluator shared by the evaluation tests.

The models train on a small synthetic data set (gru4rec.synthetic), so these tests run in any
clone, with or without ../shared/data.

The brute force walks every test session on its own from a zero state, computes the GRU
equations (spec 4.3) and the scores of all items in float64 from the model's weights, and
counts ranks with the formulas of spec 10.1. It shares no code with gru4rec.evaluation.
"""
import functools

import numpy as np

from gru4rec.synthetic import generate

SMALL = dict(layers=[24], batch_size=16, n_epochs=1, n_sample=64, learning_rate=0.1, momentum=0.1,
             constrained_embedding=True)
KINDS = {
    "softmax": dict(loss="cross-entropy", final_act="softmax"),
    # relu scores many items exactly 0: plenty of ties for the tie modes
    "relu": dict(loss="bpr-max", final_act="relu", bpreg=0.5),
}


@functools.lru_cache(maxsize=None)
def events():
    """A small synthetic (train, test) pair: about 7K training events in 1.8K sessions over
    400 items, and a last-day test set of about 200 sessions. Do not change the frames."""
    return generate(n_sessions=2000, n_items=400, n_days=10, seed=7)


@functools.lru_cache(maxsize=None)
def small_model(kind="softmax"):
    from gru4rec import GRU4Rec
    train, _ = events()
    model = GRU4Rec(**SMALL, **KINDS[kind])
    model.fit(train.copy(), show_progress=False)
    return model


# brute force -----------------------------------------------------------------------------------
def _act(name, R):
    if name in ("softmax", "softmax_logit"):
        e = np.exp(R - R.max())
        return e / e.sum()
    if name == "linear":
        return R
    if name == "relu":
        return np.maximum(R, 0)
    if name == "tanh":
        return np.tanh(R)
    if name.startswith("elu-"):
        a = float(name[4:])
        return np.where(R >= 0, R, a * (np.exp(np.minimum(R, 0)) - 1))
    raise ValueError(name)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def session_scores(model, idx_seq):
    """Scores of all items (float64, after the final activation) after each item of one session."""
    W = {k: v.astype(np.float64) for k, v in model.net.weights().items()}
    p = model.params
    layers = p["layers"]
    H = [np.zeros(L) for L in layers]
    out = []
    for x in idx_seq:
        if p["constrained_embedding"]:
            a = W["Wy"][x] @ W["Wx0"] + W["Bh0"]
        elif "E" in W:
            a = W["E"][x] @ W["Wx0"] + W["Bh0"]
        else:
            a = W["Wx0"][x] + W["Bh0"]
        for i, L in enumerate(layers):
            if i > 0:
                a = H[i - 1] @ W[f"Wx{i}"] + W[f"Bh{i}"]
            rz = _sigmoid(a[L:] + H[i] @ W[f"Wrz{i}"])
            r, z = rz[:L], rz[L:]
            hc = np.tanh((H[i] * r) @ W[f"Wh{i}"] + a[:L])
            H[i] = (1 - z) * H[i] + z * hc
        out.append(_act(model.net.final_act, H[-1] @ W["Wy"].T + W["By"]))
    return out


def rank(scores, target, mode, candidates=None):
    """Rank of scores[target] by spec 10.1 among all scores or the candidates (+ the target)."""
    s = scores[target]
    others = scores if candidates is None else scores[candidates]
    gt = int((others > s).sum())
    eq = int((others == s).sum())
    if candidates is not None and target not in set(candidates):
        eq += 1
    if mode == "standard":
        return gt + 1
    if mode == "conservative":
        return gt + eq
    if mode == "median":
        return gt + 0.5 * (eq - 1) + 1
    raise ValueError(mode)


def brute_sessions(model, test):
    """Test sessions as lists of item indices: unknown items removed, sorted by session,
    time, item, single-event sessions left out."""
    idx = model.itemidmap.reindex(test.ItemId).to_numpy()
    df = test.assign(idx=idx).dropna(subset=["idx"])
    df = df.sort_values(["SessionId", "Time", "ItemId"], kind="mergesort")
    seqs = [g.idx.astype(int).tolist() for _, g in df.groupby("SessionId", sort=True)]
    return [s for s in seqs if len(s) > 1]


def brute_force_ranks(model, test, modes, candidates=None):
    """{mode: array of ranks} for every (input, target) pair, sessions in id order."""
    ranks = {m: [] for m in modes}
    for seq in brute_sessions(model, test):
        for t, scores in enumerate(session_scores(model, seq[:-1])):
            for m in modes:
                ranks[m].append(rank(scores, seq[t + 1], m, candidates))
    return {m: np.array(r, np.float64) for m, r in ranks.items()}


def metrics(ranks, cut_offs):
    recall = {c: float((ranks <= c).mean()) for c in cut_offs}
    mrr = {c: float(((ranks <= c) / ranks).sum() / len(ranks)) for c in cut_offs}
    return recall, mrr
