"""Recommendations for live sessions: one session at a time, or many in step with their state.

Scores are the ones evaluation ranks by (after the final activation, softmax_logit as
softmax), so a session gets the same ranking here as in `evaluate`. Items the model has not
seen are skipped, as evaluation drops them: the session's state is left as it was and the
recommendations come from the last known item. A session with no known item yet has no
recommendations (an empty result), not a guess from the zero state.

Empty results: `recommend` returns an empty frame (columns ItemId, Score) for an empty
session, a session whose items are all unknown (with a UserWarning naming one of them), k=0,
or when `candidates`/`exclude` leave no item; `recommend_next` returns no rows for sessions
that have no known item yet.

Two compiled functions serve every call: `advance` (one event per row -> new hidden
states) and `score` (last layer state -> item scores). Row counts are padded to powers of
two so that a handful of shapes is compiled, whatever the number of sessions per call.
"""
import warnings
import weakref

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt

from .backend import mode_for
from .data import item_ids as canonical_ids
from .evaluation import score_activation

_LIVE = weakref.WeakKeyDictionary()  # GRU4Rec -> LiveSessions


def live(model):
    """The LiveSessions of a model; rebuilt (dropping all states) when the network changed."""
    if model.net is None:
        raise ValueError("the model is not trained; call fit() or load a model first")
    ls = _LIVE.get(model)
    if ls is None or ls.net is not model.net:
        ls = _LIVE[model] = LiveSessions(model)
    return ls


def _bucket(n):
    return 1 << max(0, int(n - 1).bit_length())


def top_k(scores, k, allowed=None):
    """Indices of the k best scores, best first; equal scores in item index order.
    `allowed` (bool mask) restricts the choice."""
    s = np.asarray(scores, np.float64)
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
        k = min(k, int(allowed.sum()))
    k = min(k, len(s))
    if k <= 0:
        return np.zeros(0, np.int64)
    thr = np.partition(s, len(s) - k)[len(s) - k]
    above = np.flatnonzero(s > thr)
    idx = np.r_[above, np.flatnonzero(s == thr)[:k - len(above)]]
    return idx[np.lexsort((idx, -s[idx]))]


class LiveSessions:
    """Hidden states of named sessions and the compiled functions that advance and score them."""

    def __init__(self, model):
        # No reference to `model`: the registry of live sessions is keyed weakly by it.
        self.net, self.itemids = model.net, model.itemidmap.index
        net, W, N = model.net, model.net.W, model.net.n_items
        self.layers = list(net.p.layers)
        mode = mode_for(model.backend, model.device, model.precision)
        x = pt.tensor("x", dtype="int32", shape=(None,))
        H = [pt.tensor(f"h{i}", dtype="float32", shape=(None, L)) for i, L in enumerate(self.layers)]
        _, new_H = net.forward(W, net.input_rows(W, x), H)
        self._advance = pytensor.function([x] + H, new_H, mode=mode)
        h = pt.tensor("h", dtype="float32", shape=(None, self.layers[-1]))
        scores = score_activation(net)(pt.dot(h, W["Wy"][:N].T) + W["By"][:N])
        self._score = pytensor.function([h], scores, mode=mode)
        self.states = {}  # session id -> per-layer state vectors

    # compiled pieces, padded to bucketed row counts ------------------------------------
    def advance(self, idx, states):
        """New per-layer states (lists of (n, L) arrays) after feeding item indices idx."""
        n = len(idx)
        b = _bucket(n)
        x = np.full(b, self.net.pad, np.int32)
        x[:n] = idx
        H = [np.zeros((b, L), np.float32) for L in self.layers]
        for h, s in zip(H, states):
            h[:n] = s
        return [np.asarray(o)[:n] for o in self._advance(x, *H)]

    def score(self, last):
        """Scores of all items for last-layer states (n, L)."""
        n = len(last)
        h = np.zeros((_bucket(n), self.layers[-1]), np.float32)
        h[:n] = last
        return np.asarray(self._score(h))[:n]

    # item ids <-> indices -----------------------------------------------------------------
    def _indices(self, ids):
        """Item indices of ids, -1 for unknown ones; ids are compared in their canonical
        text form (gru4rec.data.item_ids: 5, 5.0 and "5" are one item)."""
        ids = list(ids)
        if not ids:
            return np.zeros(0, np.int64)
        return self.itemids.get_indexer(canonical_ids(ids))

    def _allowed(self, exclude, candidates):
        N = self.net.n_items
        if exclude is None and candidates is None:
            return None
        allowed = np.ones(N, bool)
        if candidates is not None:
            allowed[:] = False
            c = self._indices(candidates)
            allowed[c[c >= 0]] = True
        if exclude is not None:
            e = self._indices(exclude)
            allowed[e[e >= 0]] = False
        return allowed

    def _frame(self, scores, k, allowed):
        idx = top_k(scores, k, allowed)
        return pd.DataFrame({"ItemId": self.itemids[idx], "Score": scores[idx]})

    # public -------------------------------------------------------------------------------
    def recommend(self, session_items, k=20, exclude=None, candidates=None):
        """Top-k (ItemId, Score) after the session's items, best first; unknown items are skipped.
        The frame is empty for an empty session, for k=0, when `candidates`/`exclude` leave no
        item, and when every item is unknown (then with a UserWarning)."""
        session_items = list(session_items)
        idx = self._indices(session_items)
        idx = idx[idx >= 0]
        if len(idx) == 0 and session_items:
            warnings.warn(f"none of the {len(session_items)} session item(s) is known to the model "
                          f"(e.g. {session_items[0]!r}); no recommendations", UserWarning, stacklevel=3)
        if len(idx) == 0:
            return pd.DataFrame({"ItemId": self.itemids[:0],
                                 "Score": np.zeros(0, np.float32)})
        states = [np.zeros((1, L), np.float32) for L in self.layers]
        for i in idx:
            states = self.advance(np.array([i]), states)
        return self._frame(self.score(states[-1])[0], k, self._allowed(exclude, candidates))

    def recommend_next(self, session_ids, item_ids, k=20, exclude=None, candidates=None):
        session_ids, item_ids = list(session_ids), list(item_ids)
        if len(session_ids) != len(item_ids):
            raise ValueError(f"got {len(session_ids)} session ids but {len(item_ids)} item ids")
        if len(set(session_ids)) != len(session_ids):
            raise ValueError("a session id occurs more than once in one call; "
                             "feed a session's events in consecutive calls")
        idx = self._indices(item_ids)
        known = [j for j in range(len(idx)) if idx[j] >= 0]
        if known:
            old = [[self.states.get(session_ids[j], [None] * len(self.layers))[i] for j in known]
                   for i in range(len(self.layers))]
            old = [np.stack([s if s is not None else np.zeros(L, np.float32) for s in col])
                   for col, L in zip(old, self.layers)]
            new = self.advance(idx[known], old)
            for r, j in enumerate(known):
                self.states[session_ids[j]] = [h[r] for h in new]
        ready = [s for s in session_ids if s in self.states]
        cols = {"SessionId": [], "Rank": [], "ItemId": [], "Score": []}
        if ready:
            scores = self.score(np.stack([self.states[s][-1] for s in ready]))
            shared = None if isinstance(exclude, dict) else self._allowed(exclude, candidates)
            for s, row in zip(ready, scores):
                allowed = self._allowed(exclude.get(s), candidates) if isinstance(exclude, dict) else shared
                top = top_k(row, k, allowed)
                cols["SessionId"] += [s] * len(top)
                cols["Rank"] += list(range(1, len(top) + 1))
                cols["ItemId"] += list(self.itemids[top])
                cols["Score"] += list(row[top])
        return pd.DataFrame(cols).astype({"Rank": np.int64, "Score": np.float32})

    def drop(self, session_ids=None):
        if session_ids is None:
            n = len(self.states)
            self.states.clear()
            return n
        if isinstance(session_ids, (str, bytes)) or not np.iterable(session_ids):
            session_ids = [session_ids]
        return sum(self.states.pop(s, None) is not None for s in session_ids)
