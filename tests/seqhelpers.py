"""Generated user histories, small models trained on their leave-one-out split, and a float64
reference of the hidden state after a history, shared by the sequence-aware tests.

The histories drift through the item space (each user starts somewhere and moves a few items
per step), so a trained GRU ranks targets well above chance and the metrics are not trivial.
The reference state comes from tests/reference.py's network forward pass, which shares no
code with the package.
"""
import functools

import numpy as np
import pandas as pd

from . import reference as R

N_ITEMS = 80


@functools.lru_cache(maxsize=None)
def histories(n_users=240, seed=0):
    """SessionId (user), ItemId (str), Time (position): 1 to 14 items per user, some users
    with fewer than 3 items, repeated items within a user."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(1, 15))
        item = int(rng.integers(0, N_ITEMS))
        for t in range(n):
            rows.append((1000 + u, str(item), t))
            item = (item + int(rng.integers(-1, 4))) % N_ITEMS
    return pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])


@functools.lru_cache(maxsize=None)
def parts():
    from gru4rec.leave_one_out import histories as order, split
    h = histories()
    return split(order(h, "SessionId", "ItemId", "Time"))


KINDS = {
    "softmax": dict(loss="cross-entropy", final_act="softmax"),
    # relu scores many items exactly 0: plenty of ties for the tie modes
    "relu": dict(loss="bpr-max", final_act="relu", bpreg=0.5),
}


@functools.lru_cache(maxsize=None)
def small_model(kind="softmax", layers=(16,)):
    from gru4rec import GRU4Rec
    model = GRU4Rec(layers=list(layers), batch_size=16, n_epochs=3, n_sample=16, learning_rate=0.1,
                    momentum=0.1, constrained_embedding=True, **KINDS[kind])
    model.fit(parts()["train"].copy(), show_progress=False)
    return model


def reference_states(model, idx_seq):
    """Per-layer float64 states (L,) after feeding item indices idx_seq one by one from zero."""
    W = {k: v.astype(np.float64) for k, v in model.net.weights().items()}
    p = model.params
    nl = len(p["layers"])
    params = {"Wy": W["Wy"], "By": W["By"], **({"E": W["E"]} if "E" in W else {})}
    for name in ("Wx", "Wh", "Wrz", "Bh"):
        params[name] = [W[f"{name}{i}"] for i in range(nl)]
    cfg = {"loss": "cross-entropy", "final_act": "softmax", "hidden_act": p["hidden_act"],
           "constrained_embedding": p["constrained_embedding"], "embedding": p["embedding"]}
    H = [np.zeros((1, L)) for L in p["layers"]]
    for x in idx_seq:
        _, H, _ = R.forward(params, [x], [x], [], H, cfg)
    return [h[0] for h in H]


def known(model, frame):
    """{user: item indices of the frame's events the model knows, in time order}."""
    idx = model.itemidmap.reindex(frame.ItemId).to_numpy()
    df = frame.assign(idx=idx).dropna(subset=["idx"]).sort_values(["SessionId", "Time"], kind="mergesort")
    out = {u: g.idx.astype(int).tolist() for u, g in df.groupby("SessionId", sort=False)}
    return out
