"""Next-item evaluation (spec 10.1): Recall@k, MRR@k and NDCG@k for several cut-offs in one pass.

Test sessions run session-parallel in `batch_size` slots with the hidden state reset at
every session switch, like training. One compiled call advances all slots by `steps` events
and counts, per slot, how many scores are above and equal to the target's score; the hidden
state stays on the device between calls and only the two counts per slot come back. Shapes
are static (the JAX backend wants them): idle slots of the shrinking tail, and slots a test
set with fewer sessions than `batch_size` never fills, are masked out. A step's scores form
one matrix (slots x items, `rank_counts`), or for softmax against a large catalogue are
counted in tiles of items that stay in the cache: in one pass where the CPU kernels are
available (`softmax_band_counts`), else in two (`softmax_rank_counts`).

Result-neutral deviations from the original: sessions are handed to slots longest first
(each session starts from a zero state, so the metrics do not depend on the order; this
packing leaves fewer idle slots), and a test set with fewer sessions than `batch_size` works.
"""
import logging
import sys
import weakref
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt

from .backend import keep_on_device, mode_for, on_device
from .data import DataError, check_frame, item_ids, session_parallel_schedule
from .losses import activation
from .ops import band_counts, cpu_kernels
from .params import TIE_MODES as MODES

log = logging.getLogger(__name__)
_CACHE = weakref.WeakKeyDictionary()  # Network -> {settings: compiled evaluator}


@dataclass(frozen=True, kw_only=True)
class Metrics:
    """The result of an evaluation, read by name: recall (= HR), mrr and ndcg map each cut-off
    to its value; n is the number of evaluated events; ranks (with return_ranks=True, else
    None) the rank of every evaluated event, see `evaluate`."""
    recall: dict[int, float]
    mrr: dict[int, float]
    ndcg: dict[int, float]
    n: int
    ranks: np.ndarray | None = None


def score_activation(net):
    """The final activation used for ranking: softmax_logit is ranked as softmax (spec 10.1)."""
    return activation("softmax" if net.final_act == "softmax_logit" else net.final_act)


def ranks_from_counts(gt, eq, mode):
    """Rank of each target from #others > target and #others == target (spec 10.1 step 8).

    `eq` counts the target itself when it is among the competitors. tiebreaking ranks like
    standard (its noise is added to the scores before counting)."""
    gt = np.asarray(gt, np.float64)
    eq = np.asarray(eq, np.float64)
    if mode in ("standard", "tiebreaking"):
        return gt + 1
    if mode == "conservative":
        return gt + eq
    if mode == "median":
        return gt + 0.5 * (eq - 1) + 1
    raise ValueError(f"unknown evaluation mode {mode!r}: choose one of {', '.join(MODES)}")


def metrics_from_ranks(ranks, cut_off, return_ranks=False):
    """Recall@c (= HR@c), MRR@c (reciprocal rank cut at c) and NDCG@c (1 / log2(rank + 1)
    cut at c: one relevant item, so the ideal DCG is 1) for every cut-off c.

    Ranks may be fractional (median ties) or inf (a target that cannot be ranked: a miss)."""
    ranks = np.asarray(ranks, np.float64)
    n = len(ranks)
    recall, mrr, ndcg = {}, {}, {}
    for c in cut_off:
        hit = ranks <= c
        recall[c] = float(hit.sum() / n)
        mrr[c] = float((hit / ranks).sum() / n)
        ndcg[c] = float((hit / np.log2(ranks + 1)).sum() / n)
    return Metrics(recall=recall, mrr=mrr, ndcg=ndcg, n=n, ranks=ranks if return_ranks else None)


def item_indices(model, ids):
    """The model's item index of each id in the Series `ids`, -1 for unknown ones."""
    return model.itemidmap.index.get_indexer(item_ids(ids))  # 5, 5.0 and "5" are one item


def known_sessions(model, test_data, session_key, item_key, time_key):
    """Item indices and session offsets of the test events the model can be evaluated on.

    Events whose item the model has not seen are dropped from their session (spec 10.1
    step 4); events are sorted by session, time, item; sessions left with fewer than two
    events are dropped, as they give no (input, target) pair."""
    check_frame(test_data, session_key, item_key, time_key)
    df = test_data[[session_key, item_key, time_key]]
    ids = item_ids(df[item_key], item_key)  # canonical text: mixed types sort, and match the model's
    if ids is not df[item_key]:
        df = df.assign(**{item_key: ids})
    idx = model.itemidmap.index.get_indexer(ids)
    known = idx >= 0
    if not known.any():
        raise DataError("none of the test items occurs in the training data; nothing to evaluate "
                        f"(check that the item ids and the {item_key!r} column match the training data)")
    df = df[known].assign(_idx=idx[known])
    df = df.sort_values([session_key, time_key, item_key], kind="mergesort")
    sessions = df[session_key].to_numpy()
    starts = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]])
    offsets = np.r_[starts, len(df)].astype(np.int64)
    lengths = np.diff(offsets)
    items = df["_idx"].to_numpy().astype(np.int32)
    keep = lengths > 1
    if not keep.any():
        raise DataError("no test session has two or more events with items known to the model; "
                        "nothing to evaluate")
    new_offsets = np.r_[0, np.cumsum(lengths[keep])].astype(np.int64)
    return items[np.repeat(keep, lengths)], new_offsets


def eval_schedule(items, offsets, batch_size, pad):
    """Session-parallel steps (x, y, keep, active, pos) of shape (steps, batch_size).

    keep is 0 after the step whose target ends its session (the slot's state is zeroed);
    idle slots feed `pad`, target item 0 and are masked by `active`; pos is the input
    event's position in `items` (-1 when idle)."""
    lengths = np.diff(offsets)
    order = np.argsort(-lengths, kind="stable")  # longest first: the fewest idle slots
    slots = min(batch_size, len(order))
    s = session_parallel_schedule(np.arange(len(items), dtype=np.int32), offsets, order, slots, -1)
    extra = batch_size - slots
    pos, active, reset = (np.pad(a, ((0, 0), (0, extra)), constant_values=c)
                          for a, c in ((s.x, -1), (s.active, 0), (s.reset, 0)))
    on = active > 0
    x = np.where(on, items[pos], pad).astype(np.int32)
    y = np.where(on, items[np.where(on, pos + 1, 0)], 0).astype(np.int32)
    return x, y, (1 - reset).astype(np.float32), active, pos


MAX_SCORES = 2 ** 25  # scores per step at most (128 MiB of float32): bounds evaluation's memory


def eval_slots(offsets, batch_size, columns=0):
    """The slots to evaluate sessions in: batch_size, or fewer when the longest session would
    leave most of them idle. A step costs the same however many slots are active, and the
    steps cannot be fewer than the longest session's predictions, so the slots are the
    predictions per step that the longest session allows, rounded down to a power of two (at
    least 8): nearly every slot stays busy, in at most twice the longest session's steps.
    Where a step holds a whole score matrix of `columns` columns (0: scores are counted in
    tiles, `softmax_rank_counts`), large catalogues get fewer slots too: the matrices hold at
    most MAX_SCORES scores, so the memory evaluation needs beside training's stays bounded.
    The metrics do not depend on the slots: each session starts from a zero state."""
    predictions = np.diff(offsets) - 1
    per_step = predictions.sum() / predictions.max()
    if columns:
        per_step = min(per_step, MAX_SCORES / columns)
    return int(min(batch_size, max(8, 2 ** np.floor(np.log2(per_step)))))


CHUNK = 4095  # items per partial count at most: 4096 * #greater + #equal < 2**24 is exact in float32
BAND = 128  # raw scores kept per row near the target's by softmax_band_counts
BAND_WIDTH = 2.0 ** -17  # the band's half-width, relative to the magnitude of the target's raw score's terms
MARGIN = 2.0 ** -20  # how far beyond the target's score the band's edges must activate
TILE_SCORES = 2 ** 19  # scores per tile of the softmax passes (2 MiB of float32): they stay in the cache
_f32, _i32 = np.float32, np.int32


def padded_items(n_items, chunk=CHUNK):
    """(columns, chunk): the fewest columns >= n_items that split into chunks of <= `chunk`."""
    n_chunks = -(-n_items // chunk)
    size = -(-n_items // n_chunks)
    return n_chunks * size, size


def rank_counts(S, t, y, n_items):
    """(#S > t, #S == t) per row over the first n_items columns of S (B x NP, NP from
    padded_items), leaving out each row's own target column y.

    One elementwise pass writes 4096 * [S > t] + [S == t] and a matrix-vector product with
    ones sums `chunk` columns at a time: integer-valued float32 sums below 2**24 are exact in
    any order, and XLA's CPU reductions with fused comparisons are several times slower."""
    B, NP = S.type.shape
    chunk = padded_items(n_items)[1]
    col = pt.arange(NP, dtype="int32")[None, :]
    ok = (col < n_items) & pt.neq(col, y[:, None])
    v = (pt.switch(ok & (S > t[:, None]), _f32(4096), _f32(0))
         + pt.switch(ok & pt.eq(S, t[:, None]), _f32(1), _f32(0)))
    part = pt.dot(v.reshape((B * (NP // chunk), chunk)), pt.ones((chunk,), "float32"))
    part = part.reshape((B, NP // chunk))
    gt = pt.floor(part / _f32(4096))
    eq = part - _f32(4096) * gt
    return gt.sum(axis=1).astype("int32"), eq.sum(axis=1).astype("int32")


def softmax_rank_counts(out, output, y, n_items, mode):
    """(#S > t, #S == t) per row for the softmax scores S of the last layer outputs `out`
    (B x D) against the first n_items items of `output` (a tiled PaddedOutput), leaving out
    each row's own target column y; t is the target's score.

    Softmax scores need the row's maximum and sum before any of them is known, and the whole
    B x items matrix does not stay in the cache (a 200K-item catalogue: 100 MB per 128 rows,
    written once and read three times). So the items are taken in tiles whose scores do stay
    there (T x B: the reductions run along the leading axis), in two passes: the first
    (`_normaliser`) keeps a running maximum m and a sum Z rescaled whenever m grows (the same
    normaliser, summed in another order, as any float32 sum is) and picks the target's raw
    score out of its tile; the second recomputes each tile's raw scores and counts
    S = exp(R - m) * (1 / Z) against the target's score, computed the same way. The second
    product costs less than the memory traffic it saves. `softmax_band_counts` needs only
    the first pass, and falls back on this one.

    Why the product and no division: XLA's CPU code turns a tile divided by each row's Z into
    this product anyway, but divides the vector of target scores exactly, so the target's score
    could differ from an equal item's in the last place and miss a tie (tests/test_evaluation.py
    ::test_rank_counts). pt.reciprocal stays as it is, where PyTensor's rewrites would turn
    x * (1 / Z) back into x / Z."""
    W, b = output.tiles()
    T = b.type.shape[1]
    tile_col = pt.arange(T, dtype="int32")[:, None]
    m, Z, ry = _normaliser(out, output, y, mode)
    act = _activation(m, Z)
    t = act(ry)[None, :]

    def count(w, bias, first, gt, eq):
        S = act(_raw(out, w, bias))
        ok = (tile_col < n_items - first) & pt.neq(tile_col, (y - first)[None, :])
        # one reduction: 65536 * [S > t] + [S == t] sums exactly in int32 over <= CHUNK items
        v = pt.switch(ok & (S > t), _i32(65536), _i32(0)) + pt.switch(ok & pt.eq(S, t), _i32(1), _i32(0))
        part = v.sum(axis=0, dtype="int32", acc_dtype="int32")
        above = part // _i32(65536)
        return first + T, gt + above, eq + part - _i32(65536) * above

    none = pt.zeros(y.shape, "int32")
    _, gt, eq = pytensor.scan(count, sequences=[W, b], outputs_info=[pt.constant(_i32(0)), none, none],
                              n_steps=b.type.shape[0], return_updates=False, mode=mode)
    return gt[-1], eq[-1]


def softmax_band_counts(out, output, y, mode):
    """(#S > t, #S == t, sure) as `softmax_rank_counts` gives them wherever sure is true, in
    one pass over the tiles instead of two.

    The pass of `_normaliser` also counts, per row, the raw scores above a band around an
    estimate e of the target's raw score (its row of Wy times out, summed in another order
    than the tile's product sums it, so it may differ in the last places) and keeps the raw
    scores within the band (`gru4rec.ops.BandCounts`, up to BAND of them). Then only the kept
    scores are activated and compared with t. This is exact when the band's edges activate
    to scores clearly above and below t (by a factor 1 +- MARGIN, far more than the
    activation's rounding: XLA's exponential is accurate to a few units in the last place, so
    a raw score beyond an edge cannot activate to the other side of t) and no band overflowed:
    `sure` says so per row, and the caller counts again with `softmax_rank_counts` where it
    does not. The padding items (raw score -inf) lie below every finite band."""
    K, B = BAND, out.type.shape[0]
    w_t, b_t = output.Wy[y], output.By[y]
    terms = out * w_t
    e = terms.sum(axis=1) + b_t
    half = _f32(BAND_WIDTH) * (_f32(1) + abs(terms).sum(axis=1) + abs(b_t))
    lo, hi = e - half, e + half
    counted = [pt.zeros((B,), "int32"), pt.zeros((K, B), "float32"), pt.zeros((B,), "int32")]
    m, Z, ry, above, kept, n = _normaliser(out, output, y, mode, (lo, hi, counted))
    act = _activation(m, Z)
    t = act(ry)
    S = act(kept)
    valid = pt.arange(K, dtype="int32")[:, None] < n[None, :]
    gt = above + (valid & (S > t[None, :])).sum(axis=0, dtype="int32", acc_dtype="int32")
    eq = (valid & pt.eq(S, t[None, :])).sum(axis=0, dtype="int32", acc_dtype="int32")
    sure = ((n <= K) & pt.isfinite(e) & (act(hi) > t * _f32(1 + MARGIN)) & (act(lo) < t * _f32(1 - MARGIN)))
    return gt, eq, sure


def _raw(out, w, bias):
    """A tile's raw scores, items x rows."""
    return pt.dot(w, out.T) + bias[:, None]


def _activation(m, Z):
    """The softmax of raw scores (items x rows, or a row vector) given each row's maximum m and
    sum Z: exp(R - m) * (1 / Z), the same expression wherever a score is compared."""
    inv = pt.reciprocal(Z)
    return lambda R: pt.exp(R - m) * inv if R.ndim == 1 else pt.exp(R - m[None, :]) * inv[None, :]


def _normaliser(out, output, y, mode, band=None):
    """(m, Z, ry): each row's maximum and sum of exp(R - m) over the tiles of `output`, and the
    target's raw score from its tile; with band = (lo, hi, (above, kept, n)) also the tiles'
    `gru4rec.ops.BandCounts`, appended (m, Z, ry, above, kept, n)."""
    W, b = output.tiles()
    nt, T = b.type.shape
    rows = pt.arange(out.type.shape[0], dtype="int32")

    # The tile's first column is carried from step to step rather than read from a sequence:
    # PyTensor would otherwise compute everything that depends on it (the column masks) for
    # all tiles ahead of the loop, as an items x B array.
    def tile(w, bias, first, m, Z, ry, *counted):
        R = _raw(out, w, bias)
        new_m = pt.maximum(m, R.max(axis=0))
        Z = Z * pt.exp(m - new_m) + pt.exp(R - new_m[None, :]).sum(axis=0, acc_dtype="float32")
        at = y - first
        ry = pt.switch((at >= 0) & (at < T), R[pt.clip(at, 0, T - 1), rows], ry)
        if band is not None:
            counted = band_counts(R, band[0], band[1], at, *counted)
        return [first + T, new_m, Z, ry, *counted]

    zero = pt.zeros(y.shape, "float32")
    start = [pt.constant(_i32(0)), pt.fill(y, _f32(-np.inf)), zero, zero]
    res = pytensor.scan(tile, sequences=[W, b], outputs_info=start + (list(band[2]) if band else []), n_steps=nt,
                        return_updates=False, mode=mode)
    return tuple(r[-1] for r in res[1:])


def _softmax(R):
    E = pt.exp(R - R.max(axis=1, keepdims=True))
    Z = pt.dot(E, pt.ones((E.type.shape[1],), "float32"))
    return E, Z


def scores_and_target(net, R, y, noise=None):
    """(S, at): the scores after the final activation of the raw scores R (B x columns) and
    a function at(cols) of each row's scores at its columns cols (B x k), computed from the
    same values as S, so that they equal S's bit for bit. `noise` (the tiebreaking mode) is
    added to S. The target's score is at(y[:, None])[:, 0].

    `at` does not gather from S: that would make XLA store S, which it otherwise computes
    inside the counting pass."""
    rows = pt.arange(R.type.shape[0], dtype="int32")[:, None]
    act = score_activation(net)
    if noise is not None:
        S = act(R) + noise
        return S, lambda cols: S[rows, cols]
    if net.final_act in ("softmax", "softmax_logit"):
        E, Z = _softmax(R)
        return E / Z[:, None], lambda cols: E[rows, cols] / Z[:, None]
    return act(R), lambda cols: act(R[rows, cols])


class PaddedOutput:
    """The network's Wy/By padded to whole chunks of rows (padding scores -inf and is
    masked), so that counting needs no slicing or padding per step.

    They are inputs of the compiled function (`inputs`), called with `values`, arrays on the
    device of `mode` that `refresh` makes. Why not shared variables: one that a function only
    reads keeps a host array, which JAX copies to the device at every call (80 MB for 200K
    items at 100 units). Wy is stored as D x items for whole score matrices (`raw_scores`):
    XLA's CPU product wants that layout and would otherwise transpose the whole matrix at
    every call (2-3 % of Diginetica's evaluation); as items x D for `tiles`."""

    def __init__(self, net, mode, chunk=CHUNK, tiled=False):
        self.W, self.n_items, self.tiled = net.W, net.n_items, tiled
        NP, self.chunk = padded_items(net.n_items, chunk)
        D = net.W["Wy"].type.shape[1]
        self.Wy = pt.tensor("evalWy", dtype="float32", shape=(NP, D) if tiled else (D, NP))
        self.By = pt.tensor("evalBy", dtype="float32", shape=(NP,))
        self.inputs = [self.Wy, self.By]
        self.mode, self.values = mode, None

    def raw_scores(self, out):
        """Raw scores (B x padded items) of last layer outputs (not `tiled`)."""
        return pt.dot(out, self.Wy) + self.By

    def tiles(self):
        """Wy and By as (chunks x chunk x D) and (chunks x chunk) tiles of items (`tiled`)."""
        NP, D = self.Wy.type.shape
        n = NP // self.chunk
        return self.Wy.reshape((n, self.chunk, D)), self.By.reshape((n, self.chunk))

    def refresh(self):
        """Pads the network's current Wy/By into `values`."""
        N = self.n_items
        Wy = np.asarray(self.W["Wy"].get_value())[:N]  # without the padding row of the network
        By = np.asarray(self.W["By"].get_value())[:N]
        NP, D = self.By.type.shape[0], Wy.shape[1]
        Wy = np.concatenate([Wy, np.zeros((NP - N, D), np.float32)])
        self.values = [on_device(Wy if self.tiled else np.ascontiguousarray(Wy.T), self.mode),
                       on_device(np.concatenate([By, np.full(NP - N, -np.inf, np.float32)]), self.mode)]


def counts_in_tiles(net, tiebreak, candidates):
    """Whether `softmax_rank_counts` counts the scores: softmax scores against a catalogue of
    more than one chunk of items. With noise on every score (tiebreaking) the whole matrix is
    needed, as for the other activations; a catalogue of one chunk is one tile anyway, and its
    whole matrix is quicker to build (no loop over tiles: half a second less for run.py's quick
    start) and no slower to count."""
    return (candidates is None and not tiebreak and net.final_act in ("softmax", "softmax_logit")
            and net.n_items > CHUNK)


class Evaluator:
    """Compiled evaluation of one network: batch_size slots, `steps` events per call.

    Against all items, scores come from a PaddedOutput; the target's own column is left out
    of the counts and added back as one tie, which is what comparing it with itself gives."""

    def __init__(self, net, batch_size, steps, mode, candidates=None, tiebreak=False, seed=42, one_pass=False):
        # No reference to `net` itself: the cache holding evaluators is keyed weakly by it.
        self.W, self.n_items, self.pad = net.W, net.n_items, net.pad
        self.B, self.K = batch_size, steps
        self.H = [pytensor.shared(np.zeros((batch_size, L), np.float32), name=f"evalH{i}", shape=(batch_size, L))
                  for i, L in enumerate(net.p.layers)]
        self.rng = pt.random.shared_rng(seed=seed, name="tiebreak_rng") if tiebreak else None
        self.tiled = counts_in_tiles(net, tiebreak, candidates)
        self.one_pass = self.tiled and one_pass
        tile = min(CHUNK, max(256, TILE_SCORES // batch_size)) if self.tiled else CHUNK
        self.output = PaddedOutput(net, mode, tile, self.tiled) if candidates is None else None
        cand = None if candidates is None else pt.constant(np.asarray(candidates, np.int32), name="candidates")
        self.mode = mode
        self.fn = self._compile(net, cand, self.one_pass)
        # counts again in two passes where the one pass was not sure (compiled when first needed,
        # while an evaluation of the network runs: a weak reference, as for the cache)
        net_ref = weakref.ref(net)
        self._recount, self._compile_recount = None, lambda: self._compile(net_ref(), cand, False, stateless=True)

    def _compile(self, net, cand, one_pass, stateless=False):
        """fn(x, y, keep[, Wy, By]) -> (gt, eq), each (K, B), over K events of every slot; the
        hidden states (and the tie-break generator) carry over from call to call; Wy, By: the
        padded output weights, against all items. With `one_pass` (softmax_band_counts), also
        sure (K, B) and the hidden states the call started from. `stateless`: the hidden states
        are inputs after Wy, By, and nothing is updated."""
        K, B, nl = self.K, self.B, len(self.H)
        X, Y, KEEP = (pt.tensor(n, dtype=d, shape=(K, B))
                      for n, d in (("x", "int32"), ("y", "int32"), ("keep", "float32")))
        carry = [] if self.rng is None else [self.rng]
        H = [h.type() for h in self.H] if stateless else self.H
        n_counts = 3 if one_pass else 2

        def step(x, y, keep, *state):  # state: the hidden states, then the generator if any
            rng = state[nl] if carry else None
            new_H, counts, rng = self._step(net, cand, x, y, keep, list(state[:nl]), rng, one_pass)
            return new_H + counts + ([rng] if carry else [])

        if K == 1:
            outs = step(X[0], Y[0], KEEP[0], *H, *carry)
            new_H, counts = outs[:nl], [c[None] for c in outs[nl:nl + n_counts]]
            new_rng = outs[nl + n_counts:]
        else:
            res = pytensor.scan(step, sequences=[X, Y, KEEP], outputs_info=H + [None] * n_counts + carry,
                                n_steps=K, return_updates=False, mode=self.mode)
            new_H, counts = [r[-1] for r in res[:nl]], list(res[nl:nl + n_counts])
            new_rng = list(res[nl + n_counts:])  # scan hands back only the last generator state
        scoring = [] if self.output is None else self.output.inputs
        if stateless:
            return pytensor.function([X, Y, KEEP] + scoring + H, counts, mode=self.mode)
        updates = list(zip(self.H + carry, new_H + new_rng))
        return pytensor.function([X, Y, KEEP] + scoring, counts + (H if one_pass else []), updates=updates,
                                 mode=self.mode)

    def _step(self, net, cand, x, y, keep, H, rng, one_pass):
        """One event of every slot: the new hidden states (zeroed where keep is 0), the counts
        of items scoring above and equal to the target (and whether they are sure, one_pass),
        and the generator's new state."""
        out, new_H = net.forward(net.W, net.input_rows(net.W, x), H)
        new_H = [h * keep[:, None] for h in new_H]
        if one_pass:
            gt, eq, sure = softmax_band_counts(out, self.output, y, self.mode)
            return new_H, [gt, eq + 1, sure], rng
        if self.tiled:
            gt, eq = softmax_rank_counts(out, self.output, y, net.n_items, self.mode)
            eq = eq + 1
        elif cand is None:
            R = self.output.raw_scores(out)
            rng, noise = _tie_noise(rng, R.shape)
            S, at = scores_and_target(net, R, y, noise)
            gt, eq = rank_counts(S, at(y[:, None])[:, 0], y, net.n_items)
            eq = eq + 1
        else:
            gt, eq, rng = _candidate_counts(net, out, y, cand, rng, self.B)
        return new_H, [gt, eq], rng

    def refresh(self):
        """Puts the network's weights on the device and pads its current Wy/By for scoring."""
        keep_on_device(self.W.values(), self.mode)
        if self.output is not None:
            self.output.refresh()

    def call(self, x, y, keep):
        """fn on K events, with the padded output weights of the last `refresh`."""
        return self.fn(x, y, keep, *([] if self.output is None else self.output.values))

    def reset(self):
        for h in self.H:
            h.set_value(np.zeros(h.get_value().shape, np.float32))

    def run(self, x, y, keep, active, progress=False):
        """Counts (gt, eq) of the active (slot, step) pairs of a schedule, in schedule order."""
        self.reset()
        self.refresh()
        K, T = self.K, len(x)
        extra = -T % K
        if extra:
            x = np.vstack([x, np.full((extra, self.B), self.pad, np.int32)])
            y = np.vstack([y, np.zeros((extra, self.B), np.int32)])
            keep = np.vstack([keep, np.zeros((extra, self.B), np.float32)])
        mask = np.vstack([active, np.zeros((extra, self.B), active.dtype)]) > 0
        bar = _bar(T) if progress else None
        counts, pending = [], None
        for c in range(len(x) // K + 1):
            # one call in flight while the previous one's counts are read: each call queued
            # would hold its own score matrices (gigabytes for a large catalogue)
            launched = self.call(*(a[c * K:(c + 1) * K] for a in (x, y, keep))) if c < len(x) // K else None
            if pending is not None:
                part = slice((c - 1) * K, c * K)
                counts.append(self._sure_counts(pending, x[part], y[part], keep[part], mask[part]))
                if bar is not None:
                    bar.update(min(K, T - (c - 1) * K))
            pending = launched
        if bar is not None:
            bar.close()
        gt, eq = (np.concatenate(a)[:T][mask[:T]] for a in zip(*counts))
        return gt, eq

    def _sure_counts(self, outputs, x, y, keep, active):
        """(gt, eq) of one call's outputs; where the one pass was not sure of an active slot's
        counts, the call's counts again in two passes, from the hidden states it started from."""
        gt, eq = np.asarray(outputs[0]), np.asarray(outputs[1])
        if self.one_pass and not np.asarray(outputs[2])[active].all():
            if self._recount is None:
                self._recount = self._compile_recount()
            gt, eq = (np.asarray(a) for a in self._recount(x, y, keep, *self.output.values, *outputs[3:]))
            log.debug("softmax ranking counted again in two passes")
        return gt, eq


def _tie_noise(rng, shape):
    """(new generator state, noise): uniform noise below 1e-10 that breaks ties (the
    tiebreaking mode); (None, None) without a generator."""
    if rng is None:
        return None, None
    rng, u = rng.uniform(0, 1, size=shape, dtype="float32")
    return rng, _f32(1e-10) * u


def _candidate_counts(net, out, y, cand, rng, B):
    """(gt, eq, new generator state) against an item list: the columns are the targets, then
    the candidates, as the original lays them out (spec 10.1 step 7); only the candidates
    are counted."""
    ar = pt.arange(B, dtype="int32")
    cols = pt.concatenate([y, cand])
    S = score_activation(net)(pt.dot(out, net.W["Wy"][cols].T) + net.W["By"][cols])
    rng, noise = _tie_noise(rng, S.shape)
    if noise is not None:
        S = S + noise
    target, others = S[ar, ar], S[:, B:]
    gt = (others > target[:, None]).sum(axis=1, dtype="int32", acc_dtype="int32")
    eq = pt.eq(others, target[:, None]).sum(axis=1, dtype="int32", acc_dtype="int32")
    return gt, eq, rng


def _evaluator(model, batch_size, steps, tiebreak, candidates):
    """A compiled evaluator, reused while the network (its weights' variables) and the
    availability of the CPU kernels are the same."""
    net = model.net
    mode = mode_for(model.backend, model.device, model.precision)
    # the one-pass softmax ranking where its counting runs as a compiled loop (on a GPU the
    # kernel's twin in XLA's operations); the kernels are built only for it
    one_pass = (model.backend == "jax" and counts_in_tiles(net, tiebreak, candidates)
                and cpu_kernels.target("gru4rec_band_counts") is not None)
    key = (batch_size, steps, tiebreak, model.backend, str(model.device), model.precision,
           None if candidates is None else tuple(candidates), one_pass)
    per_net = _CACHE.setdefault(net, {})
    if key not in per_net:
        per_net[key] = Evaluator(net, batch_size, steps, mode, candidates, tiebreak, model.params.seed, one_pass)
    return per_net[key]


def check_request(model, cut_off, mode, batch_size, steps):
    """The cut-offs as a list of ints; ValueError for an untrained or failed model, an unknown
    mode, non-positive cut-offs, batch_size or steps."""
    if model.net is None:
        raise ValueError("the model is not trained; call fit() or load a model first")
    if getattr(model, "error_during_train", False):
        raise ValueError("the model ran into a NaN error during training; it cannot be evaluated")
    if mode not in MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}: choose one of {', '.join(MODES)}")
    cut_off = [int(c) for c in (cut_off if np.ndim(cut_off) else [cut_off])]
    if not cut_off or min(cut_off) < 1:
        raise ValueError(f"cut-offs must be positive integers, got {cut_off}")
    if batch_size < 1 or steps < 1:
        raise ValueError("batch_size and steps must be >= 1")
    return cut_off


def evaluate(model, test_data, items=None, cut_off=(20,), batch_size=512, mode="standard",
             session_key=None, item_key=None, time_key=None, steps=8, progress=None, return_ranks=False):
    """Recall@c, MRR@c and NDCG@c of next-item prediction on `test_data` for every c in `cut_off`.

    Targets are ranked against all training items (or only against `items`, a list of item
    ids: spec 10.1 step 7) by their score after the final activation. `mode` handles ties:
    standard, conservative, median or tiebreaking. Returns a `Metrics` (recall, mrr, ndcg, n,
    ranks); ranks (with return_ranks, else None) holds the rank of each evaluated event in
    the order of the kept test events (unknown items dropped) sorted by session, time and
    item, each session's last omitted.
    The sessions run in at most `batch_size` slots (fewer where the longest session would leave
    most of them idle, or the catalogue is large: `eval_slots`), `steps` events per compiled
    call (a scan: fewer calls, buffers reused; see bench/eval_speed.py); `progress` (default:
    stdout is a terminal) shows a bar on stderr.
    """
    cut_off = check_request(model, cut_off, mode, batch_size, steps)
    p = model.params
    keys = (session_key or p.session_key, item_key or p.item_key, time_key or p.time_key)
    c = ",".join(map(str, cut_off))
    log.info("Measuring Recall@%s and MRR@%s", c, c)
    candidates = None
    if items is not None:
        candidates = model.itemidmap.index.get_indexer(item_ids(items))
        if (candidates < 0).any():
            raise ValueError(f"{int((candidates < 0).sum())} of the items to evaluate against are not "
                             "known to the model")
    test_items, offsets = known_sessions(model, test_data, *keys)
    tiled = counts_in_tiles(model.net, mode == "tiebreaking", candidates)
    slots = eval_slots(offsets, batch_size, 0 if tiled else model.net.n_items)
    x, y, keep, active, pos = eval_schedule(test_items, offsets, slots, model.net.pad)
    ev = _evaluator(model, slots, steps, mode == "tiebreaking", candidates)
    if progress is None:
        progress = sys.stdout.isatty()
    gt, eq = ev.run(x, y, keep, active, progress)
    if candidates is not None:
        # The target always competes with itself, so conservative ranks are >= 1 (the
        # original could divide by zero here).
        eq = eq + ~np.isin(y[active > 0], candidates)
    ranks = np.empty(len(test_items))
    ranks[pos[active > 0]] = ranks_from_counts(gt, eq, mode)
    inputs = np.ones(len(test_items), bool)
    inputs[offsets[1:] - 1] = False  # a session's last event is only a target
    return metrics_from_ranks(ranks[inputs], cut_off, return_ranks)


def _bar(total):
    from tqdm import tqdm
    return tqdm(total=total, desc="Evaluation", unit="step", leave=False, file=sys.stderr)
