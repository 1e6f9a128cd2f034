"""Synthetic session data with real sequential structure, generated from a seed.

Why this exists: the public data sets GRU4Rec is measured on cannot be shipped with this
repository, yet the quick start and the tests need session data that behaves like the real
thing. This module generates it deterministically, with no download, in under a second:

* item popularity is Zipf-like (a few items get most of the events);
* every item has a few likely successors (drawn popularity-weighted from its own topic),
  so the next item depends on the current one; a session sometimes jumps to a popular item of
  its topic, or goes back to an item it saw earlier (a repeat needs memory, not just the last
  item);
* session lengths are 1 + geometric (mostly 2-10 events, a long tail, at least 2);
* timestamps (unix seconds) increase within a session; sessions start spread over
  ``n_days`` days;
* the split is the original's RSC15 split (spec 15.1): items with support < 5 are dropped
  once and sessions shorter than 2 after that; sessions that end in the last day are the test
  set; test events of items unknown in train are removed, then test sessions shorter than 2.

A model that learns the transitions beats recommending the most popular items by a wide
margin (with the defaults: about 52K training events, 13K sessions, 2.6K items; the 20 most
popular items hit 13 % of the test targets, GRU4Rec with the RSC15 parameters about 70 %), so
the metrics printed on this data mean something.

    python -m gru4rec.synthetic OUTDIR [--seed 42] [--sessions 15000] [--items 3000] [--days 10]

writes ``OUTDIR/train.tsv`` and ``OUTDIR/test.tsv`` (TAB-separated, header
``SessionId	ItemId	Time``, the format ``run.py`` reads; ``--validation`` adds
``train_tr.tsv`` and ``train_valid.tsv``, the same split applied to the training set). From
Python: ``train, test = generate(seed=42)``.
"""
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .cli_args import Parser
from .data import check_output_dir

DAY = 86400
START = 1704067200  # 2024-01-01 00:00 UTC
COLUMNS = ["SessionId", "ItemId", "Time"]
N_SESSIONS, N_ITEMS, N_DAYS, MEAN_LENGTH = 15000, 3000, 10, 4.0


def sessions(n_sessions=N_SESSIONS, n_items=N_ITEMS, n_days=N_DAYS, seed=42, *, mean_length=MEAN_LENGTH,
             max_length=50, zipf=0.7, n_topics=30, n_successors=8, succ_decay=0.7, p_jump=0.3, p_repeat=0.1, mean_gap=60.0):
    """All generated events (before filtering and splitting) as a frame with the columns
    SessionId (int, in order of session start), ItemId (str of an int) and Time (int seconds),
    sorted by session and time. Same arguments, same frame."""
    if n_sessions < 1 or n_items < n_successors + 1 or n_topics < 1 or n_days < 1:
        raise ValueError("need n_sessions >= 1, n_items > n_successors, n_topics >= 1, n_days >= 1")
    if not (mean_length > 2 and max_length >= 2):
        raise ValueError("need mean_length > 2 and max_length >= 2")
    if not (0 <= p_jump and 0 <= p_repeat and p_jump + p_repeat <= 1):
        raise ValueError("need p_jump, p_repeat >= 0 and p_jump + p_repeat <= 1")
    rng = np.random.default_rng(seed)
    cat = _catalog(rng, n_items, zipf, n_topics, n_successors)
    # Sessions: a topic (by its total popularity), a length, then a walk over the successors.
    tw = np.array([cat.pop[m].sum() for m in cat.members])
    s_topic = rng.choice(n_topics, size=n_sessions, p=tw / tw.sum())
    lengths = np.minimum(1 + rng.geometric(1.0 / (mean_length - 1), size=n_sessions), max_length)
    seq = _walks(rng, cat, s_topic, lengths, succ_decay, p_jump, p_repeat)
    times = _times(rng, lengths, n_days, mean_gap)
    mask = np.arange(seq.shape[1])[None, :] < lengths[:, None]
    ids = rng.permutation(n_items) + 1  # item ids say nothing about popularity
    return pd.DataFrame({
        "SessionId": np.repeat(np.arange(1, n_sessions + 1), lengths),
        "ItemId": ids[seq[mask]].astype(str),
        "Time": times[mask],
    })


class _Catalog(NamedTuple):
    """The items: popularity (Zipf-like by rank), topic of each, each topic's members and
    their popularity-weighted draw probabilities, and each item's likely successors."""
    pop: np.ndarray
    topic: np.ndarray
    members: list
    topic_p: list
    succ: np.ndarray


def _catalog(rng, n_items, zipf, n_topics, n_successors):
    """Items with a topic each; the successors of an item are n_successors distinct items of
    its topic (any item if the topic is too small), drawn popularity-weighted."""
    pop = 1.0 / np.arange(1, n_items + 1) ** zipf
    topic = rng.integers(n_topics, size=n_items)
    members = [np.flatnonzero(topic == t) for t in range(n_topics)]
    topic_p = [pop[m] / pop[m].sum() for m in members]
    succ = np.empty((n_items, n_successors), np.int64)
    for i in range(n_items):
        m, p = members[topic[i]], topic_p[topic[i]]
        if len(m) <= n_successors:
            m, p = np.arange(n_items), pop / pop.sum()
        keep = m != i
        m, p = m[keep], p[keep] / p[keep].sum()
        succ[i] = rng.choice(m, size=n_successors, replace=False, p=p)
    return _Catalog(pop, topic, members, topic_p, succ)


def _from_topics(rng, cat, topics):
    """One item of each given topic, drawn popularity-weighted."""
    out = np.empty(len(topics), np.int64)
    for t in np.unique(topics):
        sel = topics == t
        out[sel] = rng.choice(cat.members[t], size=int(sel.sum()), p=cat.topic_p[t])
    return out


def _walks(rng, cat, s_topic, lengths, succ_decay, p_jump, p_repeat):
    """The sessions' items, (n_sessions, max length), -1 past each session's end: a first
    item from the session's topic, then at each step a successor of the current item (the
    k-th with probability ~ succ_decay**k), a jump to an item of the topic (p_jump) or a
    return to an earlier item other than the current one (p_repeat)."""
    succ_cdf = np.cumsum(succ_decay ** np.arange(cat.succ.shape[1]))
    succ_cdf /= succ_cdf[-1]
    T = int(lengths.max())
    seq = np.full((len(lengths), T), -1, np.int64)
    seq[:, 0] = _from_topics(rng, cat, s_topic)
    for t in range(1, T):
        rows = np.flatnonzero(lengths > t)
        u = rng.random(len(rows))
        nxt = cat.succ[seq[rows, t - 1], np.searchsorted(succ_cdf, rng.random(len(rows)), side="right")]
        jump = u < p_jump
        if jump.any():
            nxt[jump] = _from_topics(rng, cat, s_topic[rows[jump]])
        if t >= 2:
            rep = (u >= p_jump) & (u < p_jump + p_repeat)
            if rep.any():
                pos = (rng.random(int(rep.sum())) * (t - 1)).astype(np.int64)
                nxt[rep] = seq[rows[rep], pos]
        seq[rows, t] = nxt
    return seq


def _times(rng, lengths, n_days, mean_gap):
    """Event times (n_sessions, max length): session starts spread over n_days, then gaps of
    1 + exponential(mean_gap) seconds."""
    n, T = len(lengths), int(lengths.max())
    starts = np.sort(rng.integers(0, n_days * DAY, size=n))
    gaps = 1 + rng.exponential(mean_gap, size=(n, T)).astype(np.int64)
    gaps[:, 0] = 0
    return START + starts[:, None] + np.cumsum(gaps, axis=1)


def _drop_short(df, min_length=2):
    n = df.groupby("SessionId")["SessionId"].transform("size")
    return df[n >= min_length]


def split(df, days=1):
    """The RSC15 split (spec 15.1): sessions ending before max(Time) - days*86400 are train,
    the others test; test events of items not in train are dropped, then test sessions
    shorter than 2."""
    end = df.groupby("SessionId")["Time"].transform("max")
    is_train = end < df["Time"].max() - days * DAY
    train, test = df[is_train], df[~is_train]
    test = _drop_short(test[test["ItemId"].isin(set(train["ItemId"]))])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def generate(n_sessions=N_SESSIONS, n_items=N_ITEMS, n_days=N_DAYS, seed=42, *, min_item_support=5, test_days=1,
             **kwargs):
    """(train, test) frames with columns SessionId, ItemId (str), Time (int unix seconds):
    `sessions(...)` filtered like the original (items with support < min_item_support dropped,
    then sessions shorter than 2; one pass) and split with `split(..., days=test_days)`.
    Deterministic: the same arguments give the same frames. Other keywords go to `sessions`."""
    if test_days >= n_days:
        raise ValueError("test_days must be less than n_days")
    df = sessions(n_sessions, n_items, n_days, seed, **kwargs)
    support = df.groupby("ItemId")["ItemId"].transform("size")
    df = _drop_short(df[support >= min_item_support])
    return split(df, test_days)


def counts(df):
    return f'Events: {len(df)}\tSessions: {df["SessionId"].nunique()}\tItems: {df["ItemId"].nunique()}'


def main(argv=None):
    p = Parser(prog="python -m gru4rec.synthetic",
                                description="Write synthetic session data: OUTDIR/train.tsv and OUTDIR/test.tsv.")
    p.add_argument("outdir", metavar="OUTDIR", help="output folder (created if missing)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    p.add_argument("--sessions", type=int, default=N_SESSIONS,
                   help=f"sessions generated before filtering (default: {N_SESSIONS})")
    p.add_argument("--items", type=int, default=N_ITEMS, help=f"number of items (default: {N_ITEMS})")
    p.add_argument("--days", type=int, default=N_DAYS,
                   help=f"days the sessions are spread over; the last one is the test set (default: {N_DAYS})")
    p.add_argument("--mean-length", type=float, default=MEAN_LENGTH,
                   help=f"mean session length before filtering (default: {MEAN_LENGTH})")
    p.add_argument("--validation", action="store_true",
                   help="also write train_tr.tsv and train_valid.tsv (train split again the same way)")
    a = p.parse_args(argv)
    try:
        check_output_dir(a.outdir)
    except ValueError as e:
        print(f"ERROR. {e}", file=sys.stderr)
        return 1
    try:
        train, test = generate(a.sessions, a.items, a.days, a.seed, mean_length=a.mean_length)
    except ValueError as e:
        p.error(str(e))
    if len(train) == 0 or len(test) == 0:
        p.error("the generated train or test set is empty; use more --sessions or --days")
    out = Path(a.outdir)
    parts = {"train": train, "test": test}
    if a.validation:
        parts["train_tr"], parts["train_valid"] = split(train, 1)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, df in parts.items():
            df[COLUMNS].to_csv(out / f"{name}.tsv", sep="\t", index=False)
            print(f"{name}\t{counts(df)}")
    except OSError as e:
        print(f"ERROR. Cannot write to {out}: {e.strerror or type(e).__name__}", file=sys.stderr)
        return 1
    print(f"Output written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
