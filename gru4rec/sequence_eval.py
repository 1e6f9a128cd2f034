"""Next-item evaluation from the state after each user's history (the sequence-aware setting).

Session-based evaluation (`gru4rec.evaluation`) starts every test session from a zero state.
In the sequence-aware setting a user's whole history is one sequence, so a user's target is
ranked from the hidden state after feeding the user's history items one by one through the
trained network (no dropout), e.g. train.tsv, or train.tsv + valid.tsv, of
`gru4rec.leave_one_out`. This is the evaluation the original's author describes for that
setting; the public original has none.

Two compiled functions, cached per network:
* `HistoryRunner` advances many users session-parallel in `batch_size` slots with the
  schedule of `gru4rec.evaluation` (each user's history with one placeholder event appended,
  so that every history item is an input), `steps` events per call, and hands back the
  states after each user's last history item.
* `Scorer` ranks the targets of `batch_size` users at a time against all items, by their
  score after the final activation as in `gru4rec.evaluation`, counting with its
  `rank_counts`; the items to exclude get the score -inf first.

Rules: history items the model does not know are skipped (the state stays as it was), as in
session evaluation; a user with no known history item is ranked from the zero state; a target
the model does not know cannot be ranked and counts as a miss (rank inf), so that every user
counts, as in the papers that rank against the full catalogue.
"""
import logging
import weakref

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt

from .backend import keep_on_device, mode_for
from .data import DataError, check_frame
from .evaluation import (PaddedOutput, check_request, eval_schedule, item_indices, metrics_from_ranks,
                         rank_counts, ranks_from_counts, scores_and_target)

log = logging.getLogger(__name__)
_CACHE = weakref.WeakKeyDictionary()  # Network -> {settings: compiled function}


class HistoryRunner:
    """Compiled: `steps` events of `batch_size` slots -> per-step states of every layer."""

    def __init__(self, net, batch_size, steps, mode):
        self.B, self.K, self.pad, self.W, self.mode = batch_size, steps, net.pad, net.W, mode
        B, K, W = batch_size, steps, net.W
        self.H = [pytensor.shared(np.zeros((B, L), np.float32), name=f"histH{i}", shape=(B, L))
                  for i, L in enumerate(net.p.layers)]
        nl = len(self.H)
        X = pt.tensor("x", dtype="int32", shape=(K, B))
        KEEP = pt.tensor("keep", dtype="float32", shape=(K, B))

        def step(x, keep, *H):
            _, new_H = net.forward(W, net.input_rows(W, x), list(H))
            return [h * keep[:, None] for h in new_H] + new_H

        res = pytensor.scan(step, sequences=[X, KEEP], outputs_info=self.H + [None] * nl,
                            n_steps=K, return_updates=False, mode=mode)
        updates = [(h, r[-1]) for h, r in zip(self.H, res[:nl])]
        self.fn = pytensor.function([X, KEEP], res[nl:], updates=updates, mode=mode)

    def run(self, x, keep, last_user, n_users):
        """Per-layer states (n_users x L) after each user's last history item; last_user is
        the user whose last history item is the input at (step, slot), -1 elsewhere."""
        keep_on_device(self.W.values(), self.mode)
        for h in self.H:
            h.set_value(np.zeros(h.get_value().shape, np.float32))
        states = [np.zeros((n_users, h.type.shape[1]), np.float32) for h in self.H]
        K = self.K
        extra = -len(x) % K
        x = np.vstack([x, np.full((extra, self.B), self.pad, np.int32)])
        keep = np.vstack([keep, np.zeros((extra, self.B), np.float32)])
        last_user = np.vstack([last_user, np.full((extra, self.B), -1)])
        for c in range(len(x) // K):
            sl = slice(c * K, (c + 1) * K)
            outs = self.fn(x[sl], keep[sl])
            done = last_user[sl] >= 0
            for s, o in zip(states, outs):
                s[last_user[sl][done]] = np.asarray(o)[done]
        return states


class Scorer:
    """Compiled: last layer states of `batch_size` users, their target columns and `n_seen`
    columns each to exclude -> (#items scoring above the target, #items tying with it,
    the target included), over all items.

    The excluded items are counted over all items like the rest and then taken off the
    counts, from their gathered scores: writing -inf into the score matrix instead would
    make XLA store the whole matrix and pass over it twice more. A row's list holds distinct
    items and may be padded with the row's target column, which neither count includes."""

    def __init__(self, net, batch_size, n_seen, mode, tiebreak=False, seed=42):
        self.output = PaddedOutput(net, mode)
        B, L = batch_size, net.p.layers[-1]
        h = pt.tensor("h", dtype="float32", shape=(B, L))
        y = pt.tensor("y", dtype="int32", shape=(B,))
        seen = pt.tensor("seen", dtype="int32", shape=(B, n_seen))
        R = self.output.raw_scores(h)
        updates, noise = [], None
        if tiebreak:
            rng = pt.random.shared_rng(seed=seed, name="tiebreak_rng")
            new_rng, u = rng.uniform(0, 1, size=R.shape, dtype="float32")
            updates, noise = [(rng, new_rng)], np.float32(1e-10) * u
        S, at = scores_and_target(net, R, y, noise)
        t = at(y[:, None])[:, 0]
        gt, eq = rank_counts(S, t, y, net.n_items)
        S_seen, other = at(seen), pt.neq(seen, y[:, None])
        gt = gt - (other & (S_seen > t[:, None])).sum(axis=1, dtype="int32", acc_dtype="int32")
        eq = eq - (other & pt.eq(S_seen, t[:, None])).sum(axis=1, dtype="int32", acc_dtype="int32")
        self.fn = pytensor.function([h, y, seen] + self.output.inputs, [gt, eq + 1], updates=updates, mode=mode)


def _compiled(model, key, build):
    """What build(mode) compiles, cached under `key` while the network is the same."""
    per_net = _CACHE.setdefault(model.net, {})
    key = key + (model.backend, str(model.device), model.precision)
    if key not in per_net:
        per_net[key] = build(mode_for(model.backend, model.device, model.precision))
    return per_net[key]


# data --------------------------------------------------------------------------------------
def _keys(model, session_key, item_key, time_key):
    p = model.params
    return session_key or p.session_key, item_key or p.item_key, time_key or p.time_key


def known_history(model, history, users, session_key, item_key, time_key):
    """(user, item) index pairs of the history events of `users` (a pd.Index) whose item
    the model knows, ordered by user and then by time (stable: equal times keep their order)."""
    check_frame(history, session_key, item_key, time_key)
    if not users.is_unique:
        raise DataError(f"{int(users.duplicated().sum())} users occur more than once; "
                        "targets must hold one event per user")
    user = users.get_indexer(history[session_key])
    item = item_indices(model, history[item_key])
    keep = (user >= 0) & (item >= 0)
    user, item, time = user[keep], item[keep], history[time_key].to_numpy()[keep]
    order = np.lexsort((np.arange(len(user)), time, user))
    return user[order], item[order].astype(np.int32)


def history_schedule(user, item, n_users, batch_size, pad):
    """Session-parallel (x, keep, last_user) of the users' histories, see HistoryRunner.run.

    Each history gets a placeholder event appended, so that the evaluation schedule's
    (input, target) pairs have every history item as an input."""
    lengths = np.bincount(user, minlength=n_users) + 1
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    items = np.full(offsets[-1], pad, np.int32)
    is_history = np.ones(offsets[-1], bool)
    is_history[offsets[1:] - 1] = False
    items[is_history] = item
    last_user = np.full(offsets[-1], -1, np.int64)
    has = lengths > 1
    last_user[offsets[1:][has] - 2] = np.flatnonzero(has)
    x, _, keep, active, pos = eval_schedule(items, offsets, batch_size, pad)
    return x, keep, np.where(active > 0, last_user[np.maximum(pos, 0)], -1)


def seen_lists(user, item, n_users):
    """(items, starts): each user's distinct known history items, user after user; user u's
    are items[starts[u]:starts[u + 1]]."""
    m = int(item.max(initial=0)) + 1
    u, i = np.divmod(np.unique(user.astype(np.int64) * m + item), m)
    return i.astype(np.int32), np.r_[0, np.cumsum(np.bincount(u, minlength=n_users))]


def _write_seen(block, items, starts, lo):
    """Writes the seen lists of users lo, lo + 1, ... into the rows of `block`, left-aligned;
    the rest of each row keeps what it holds (the row's target column)."""
    hi = lo + len(block)
    counts = np.diff(starts[lo:hi + 1])
    rows = np.repeat(np.arange(len(block)), counts)
    cols = np.arange(counts.sum()) - np.repeat(starts[lo:hi] - starts[lo], counts)
    block[rows, cols] = items[starts[lo]:starts[hi]]


def _bucket(n):
    return 1 << max(0, int(n - 1).bit_length())


# public API --------------------------------------------------------------------------------
def user_states(model, history, users, batch_size=512, steps=8, session_key=None, item_key=None,
                time_key=None):
    """Per-layer hidden states (len(users) x layer size, float32) after feeding each user's
    known history items one by one, in time order, from a zero state; row r belongs to
    users[r]. Users without known history items keep the zero state."""
    check_request(model, [1], "standard", batch_size, steps)  # the model, batch_size and steps
    users = pd.Index(users)
    user, item = known_history(model, history, users, *_keys(model, session_key, item_key, time_key))
    return _states(model, user, item, len(users), batch_size, steps)


def _states(model, user, item, n_users, batch_size, steps):
    x, keep, last_user = history_schedule(user, item, n_users, batch_size, model.net.pad)
    runner = _compiled(model, ("history", batch_size, steps),
                       lambda mode: HistoryRunner(model.net, batch_size, steps, mode))
    return runner.run(x, keep, last_user, n_users)


def evaluate_next_item(model, history, targets, cut_off=(10, 20), exclude_seen=True, mode="standard",
                       batch_size=512, steps=8, session_key=None, item_key=None, time_key=None,
                       return_ranks=False):
    """HR@c (the `recall` field), MRR@c and NDCG@c of each user's target, ranked against all
    items from the state after the user's history (see the module docstring).

    `targets` holds one event per user (e.g. valid.tsv or test.tsv of gru4rec.leave_one_out),
    `history` those users' earlier events (train.tsv, or train.tsv + valid.tsv); history
    events of other users are ignored. With exclude_seen, the items in a user's history are
    not ranked (the target itself always is). `mode` handles ties as in gru4rec.evaluation.
    Returns gru4rec.evaluation.Metrics; with return_ranks the ranks in the order of `targets`.
    """
    cut_off = check_request(model, cut_off, mode, batch_size, steps)
    keys = _keys(model, session_key, item_key, time_key)
    check_frame(targets, *keys)
    users = pd.Index(targets[keys[0]])
    y = item_indices(model, targets[keys[1]])
    unknown = y < 0
    if unknown.any():
        log.warning("%d of %d targets are items the model does not know; they count as misses",
                    int(unknown.sum()), len(y))
    user, item = known_history(model, history, users, *keys)
    states = _states(model, user, item, len(users), batch_size, steps)[-1]
    seen = seen_lists(user, item, len(users)) if exclude_seen else None
    gt, eq = _rank_counts(model, states, np.where(unknown, 0, y), seen, batch_size, mode == "tiebreaking")
    ranks = np.where(unknown, np.inf, ranks_from_counts(gt, eq, mode))
    return metrics_from_ranks(ranks, cut_off, return_ranks)


def _rank_counts(model, states, y, seen, batch_size, tiebreak):
    """(gt, eq) of every user's target, `batch_size` users per compiled call; `seen` (from
    seen_lists, or None) the items to exclude."""
    width = 1 if seen is None else _bucket(max(1, int(np.diff(seen[1]).max(initial=0))))
    seed = model.params.seed
    scorer = _compiled(model, ("score", batch_size, width, tiebreak, seed),
                       lambda mode: Scorer(model.net, batch_size, width, mode, tiebreak, seed))
    scorer.output.refresh()
    n, B = len(y), batch_size
    gt, eq = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for lo in range(0, n, B):
        hi = min(lo + B, n)
        h = np.zeros((B, states.shape[1]), np.float32)
        h[:hi - lo] = states[lo:hi]
        yb = np.zeros(B, np.int32)
        yb[:hi - lo] = y[lo:hi]
        seen_b = np.repeat(yb[:, None], width, axis=1)  # the target column: never excluded
        if seen is not None:
            _write_seen(seen_b[:hi - lo], *seen, lo)
        g, e = scorer.fn(h, yb, seen_b, *scorer.output.values)
        gt[lo:hi], eq[lo:hi] = np.asarray(g)[:hi - lo], np.asarray(e)[:hi - lo]
    return gt, eq
