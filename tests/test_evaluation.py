"""gru4rec.evaluation against a brute-force NumPy evaluator (tests/evalhelpers.py) and the
rules of spec 10.1: tie modes, unknown items, cut-offs, batch masking, save/load."""
import contextlib
import logging

import numpy as np
import pandas as pd
import pytest

from gru4rec import DataError, GRU4Rec
from gru4rec.evaluation import eval_schedule, eval_slots, evaluate, metrics_from_ranks, ranks_from_counts

from . import evalhelpers as H
from .xlahelpers import program_text, whole_copies

CUTS = [1, 5, 10, 20]


def run_eval(model, test, **kw):
    return evaluate(model, test, **kw)


@pytest.fixture(scope="module")
def test_df():
    return H.events()[1]


@pytest.fixture(scope="module")
def brute(test_df):
    """Brute-force ranks per model kind and tie mode."""
    return {kind: H.brute_force_ranks(H.small_model(kind), test_df, ["standard", "conservative", "median"])
            for kind in H.KINDS}


def assert_same(res, ranks, cuts=CUTS):
    recall, mrr = H.metrics(ranks, cuts)
    assert res.n == len(ranks)
    for c in cuts:
        assert res.recall[c] == pytest.approx(recall[c], abs=1e-6), c
        assert res.mrr[c] == pytest.approx(mrr[c], abs=1e-6), c


def test_spec21_tie_example():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.5])
    t = scores[0]
    gt, eq = (scores > t).sum(), (scores == t).sum()
    assert ranks_from_counts([gt], [eq], "standard")[0] == 2
    assert ranks_from_counts([gt], [eq], "conservative")[0] == 4
    assert ranks_from_counts([gt], [eq], "median")[0] == 3.0
    for mode, want in (("standard", 2), ("conservative", 4), ("median", 3.0)):  # the brute force agrees
        assert H.rank(scores, 0, mode) == want
    m = metrics_from_ranks(np.array([2.0, 4.0, 3.0]), [1, 3])
    assert m.recall == {1: 0.0, 3: pytest.approx(2 / 3)}
    assert m.mrr[3] == pytest.approx((1 / 2 + 1 / 3) / 3)


@pytest.mark.parametrize("kind", sorted(H.KINDS))
@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
def test_matches_brute_force(kind, mode, test_df, brute):
    res = run_eval(H.small_model(kind), test_df, cut_off=CUTS, batch_size=64, mode=mode, return_ranks=True)
    np.testing.assert_array_equal(res.ranks, brute[kind][mode])
    assert_same(res, brute[kind][mode])


def test_ties_matter_for_relu(brute):
    """The relu model scores many items exactly 0, so the modes must differ (or the test above
    proves nothing about ties)."""
    b = brute["relu"]
    assert (b["conservative"] > b["standard"]).mean() > 0.1
    assert np.all(b["standard"] <= b["median"]) and np.all(b["median"] <= b["conservative"])


def test_tiebreaking_lies_between(test_df):
    model = H.small_model("relu")
    r = {m: run_eval(model, test_df, cut_off=[20], batch_size=64, mode=m)
         for m in ("standard", "conservative", "tiebreaking")}
    assert r["conservative"].recall[20] <= r["tiebreaking"].recall[20] <= r["standard"].recall[20]
    assert r["conservative"].recall[20] < r["standard"].recall[20]


def test_unknown_item_in_the_middle_is_removed():
    model = H.small_model("softmax")
    ids = list(model.itemidmap.index[:4])
    a, b, c, d = ids
    with_unknown = pd.DataFrame({"SessionId": [1, 1, 1, 1, 1, 2, 2],
                                 "ItemId": [a, b, "no-such-item", c, d, a, "no-such-item"],
                                 "Time": [1, 2, 3, 4, 5, 1, 2]})
    clean = pd.DataFrame({"SessionId": [1, 1, 1, 1], "ItemId": [a, b, c, d], "Time": [1, 2, 4, 5]})
    r1 = run_eval(model, with_unknown, cut_off=CUTS, batch_size=4, return_ranks=True)
    r2 = run_eval(model, clean, cut_off=CUTS, batch_size=4, return_ranks=True)
    assert r1.n == r2.n == 3  # a->b, b->c (c predicted from b), c->d; session 2 has one known event
    np.testing.assert_array_equal(r1.ranks, r2.ranks)
    seq = [model.itemidmap[i] for i in (a, b, c, d)]
    want = [H.rank(s, seq[t + 1], "standard") for t, s in enumerate(H.session_scores(model, seq[:-1]))]
    np.testing.assert_array_equal(r1.ranks, want)


def test_cutoffs_from_one_pass_and_multiple_test_files(test_df, brute):
    model = H.small_model("softmax")
    sessions = test_df.SessionId.unique()
    part1 = test_df[test_df.SessionId.isin(sessions[: len(sessions) // 2])]
    part2 = test_df[test_df.SessionId.isin(sessions[len(sessions) // 2:])]
    all_cuts = run_eval(model, test_df, cut_off=CUTS, batch_size=64)
    for c in CUTS:
        one = run_eval(model, test_df, cut_off=c, batch_size=64)
        assert one.recall == {c: all_cuts.recall[c]} and one.mrr == {c: all_cuts.mrr[c]}
    r1 = run_eval(model, part1, cut_off=CUTS, batch_size=64)
    r2 = run_eval(model, part2, cut_off=CUTS, batch_size=64)
    assert r1.n + r2.n == all_cuts.n
    for c in CUTS:  # the two halves are evaluated independently and add up to the whole
        assert (r1.recall[c] * r1.n + r2.recall[c] * r2.n) / all_cuts.n == pytest.approx(all_cuts.recall[c], abs=1e-9)
        assert (r1.mrr[c] * r1.n + r2.mrr[c] * r2.n) / all_cuts.n == pytest.approx(all_cuts.mrr[c], abs=1e-9)


@pytest.mark.parametrize("batch_size, steps", [(512, 1), (512, 3), (7, 1), (7, 8)])
def test_batch_larger_than_sessions_and_batch_independence(batch_size, steps, test_df):
    model = H.small_model("softmax")
    few = test_df[test_df.SessionId.isin(test_df.SessionId.unique()[:25])]
    want = H.brute_force_ranks(model, few, ["conservative"])["conservative"]
    res = run_eval(model, few, cut_off=CUTS, batch_size=batch_size, mode="conservative", steps=steps,
                   return_ranks=True)
    np.testing.assert_array_equal(res.ranks, want)
    assert_same(res, want)


@pytest.mark.parametrize("lengths, batch_size, n_items, slots", [
    ([3] * 1000 + [11], 512, 1000, 128),   # 2010 predictions, the longest 10: 201 per step -> 128
    ([3] * 1000 + [11], 64, 1000, 64),     # never more than batch_size
    ([3] * 100 + [41], 512, 1000, 8),      # 240 predictions, the longest 40: 6 per step -> at least 8
    ([2] * 5000, 512, 1000, 512),          # every session one prediction: all slots
    ([2] * 5000, 512, 200_000, 128),       # 2**25 scores per step at most: 167 slots -> 128
    ([2] * 5000, 512, 10_000_000, 8),      # at least 8 slots
])
def test_eval_slots_keep_the_slots_busy(lengths, batch_size, n_items, slots):
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    assert eval_slots(offsets, batch_size, n_items) == slots
    x, _, _, active, _ = eval_schedule(np.zeros(offsets[-1], np.int32), offsets, slots, 0)
    predictions = sum(lengths) - len(lengths)
    assert len(x) <= 2 * max(lengths) or slots in (8, batch_size) or slots * n_items * 2 > 2 ** 25
    assert active.sum() == predictions


def test_save_load_evaluate_identical(tmp_path, test_df):
    model = H.small_model("relu")
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = GRU4Rec.load(path)
    for mode in ("standard", "conservative"):
        a = run_eval(model, test_df, cut_off=CUTS, batch_size=64, mode=mode)
        b = run_eval(loaded, test_df, cut_off=CUTS, batch_size=64, mode=mode)
        assert a == b


def test_against_item_subset(test_df):
    model = H.small_model("softmax")
    items = list(model.itemidmap.index[::3])
    cand = model.itemidmap[items].to_numpy()
    want = H.brute_force_ranks(model, test_df, ["standard", "conservative"], candidates=cand)
    for mode in ("standard", "conservative"):
        res = run_eval(model, test_df, items=items, cut_off=CUTS, batch_size=64, mode=mode)
        assert_same(res, want[mode])
    full = run_eval(model, test_df, cut_off=[20], batch_size=64)
    assert res.recall[20] > full.recall[20]  # fewer competitors, better ranks


def test_logs_measuring_line(caplog, test_df):
    caplog.set_level(logging.INFO, logger="gru4rec")
    evaluate(H.small_model("softmax"), test_df.head(50), cut_off=[5, 20], batch_size=8, progress=False)
    assert caplog.messages == ["Measuring Recall@5,20 and MRR@5,20"]


def test_errors(test_df):
    model = H.small_model("softmax")
    unknown = pd.DataFrame({"SessionId": [1, 1], "ItemId": ["x", "y"], "Time": [1, 2]})
    with pytest.raises(DataError, match="none of the test items"):
        run_eval(model, unknown)
    single = pd.DataFrame({"SessionId": [1, 2], "ItemId": list(model.itemidmap.index[:2]), "Time": [1, 2]})
    with pytest.raises(DataError, match="two or more events"):
        run_eval(model, single)
    with pytest.raises(ValueError, match="mode"):
        run_eval(model, test_df, mode="optimistic")
    with pytest.raises(DataError, match="Foo"):
        run_eval(model, test_df, item_key="Foo")
    with pytest.raises(ValueError, match="not trained"):
        run_eval(GRU4Rec(), test_df)


@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
def test_item_list_holding_the_target_ranks_like_the_original(mode, test_df):
    """Ranking against an item list (spec 10.1 step 7, `--test_against_items`): where the list
    holds the target, the rank is the original's count over the list items alone, in every
    tie mode (the relu model scores many items exactly alike)."""
    model = H.small_model("relu")
    items = list(model.itemidmap.index[::2])
    cand = model.itemidmap[items].to_numpy()
    res = run_eval(model, test_df, items=items, cut_off=CUTS, batch_size=64, mode=mode, return_ranks=True)
    want, got, ties = [], [], 0
    pos = 0
    for seq in H.brute_sessions(model, test_df):
        for t, scores in enumerate(H.session_scores(model, seq[:-1])):
            target = seq[t + 1]
            if target in set(cand):
                s, others = scores[target], scores[cand]
                gt, eq = int((others > s).sum()), int((others == s).sum())
                ties += eq > 1
                want.append({"standard": gt + 1, "conservative": gt + eq, "median": gt + 0.5 * (eq - 1) + 1}[mode])
                got.append(res.ranks[pos])
            pos += 1
    assert pos == res.n and 0 < len(want) < pos and ties > 0
    np.testing.assert_array_equal(got, want)


def _counts_f32(act, out, Wy, By, y):
    """(#S > t, #S == t, S, t) of float32 scores after the activation `act`, the target's own
    column left out."""
    R = out @ Wy.T + By
    if act == "softmax":
        E = np.exp(R - R.max(axis=1, keepdims=True))
        S = E / E.sum(axis=1, keepdims=True, dtype=np.float32)
    elif act == "elu-0.5":
        S = np.where(R >= 0, R, np.float32(0.5) * (np.exp(np.minimum(R, 0)) - 1))
    else:
        S = np.maximum(R, 0)  # relu
    rows = np.arange(len(y))
    t = S[rows, y][:, None]
    other = np.ones(S.shape, bool)
    other[rows, y] = False
    return ((S > t) & other).sum(1), ((S == t) & other).sum(1), S, t


@pytest.mark.parametrize("backend", ["jax", "c", "numba"])
@pytest.mark.parametrize("act, counting", [("softmax", "tiles"), ("softmax", "band"), ("softmax", "no band"),
                                           ("softmax", "matrix"), ("elu-0.5", "matrix"), ("relu", "matrix")])
def test_rank_counts(act, counting, backend, monkeypatch):
    """Counts against NumPy float32 scores: softmax in tiles (softmax_rank_counts over several
    tiles, the last one padded, and the one pass of softmax_band_counts, sure of the rows whose
    target's score does not underflow, and with a band of width 0 sure of none: its edges
    cannot activate apart from the target's score),
    and softmax, elu-0.5 and relu on the whole matrix (rank_counts,
    what the other activations, the tiebreaking mode, the sequence-aware evaluation and
    catalogues of one chunk use): targets in every tile, ties among 300 items scored 300 below the rest
    (softmax underflows to 0, elu to -0.5, relu gives 0) and with items whose weights equal
    the target's, which tie only where the target's score is computed exactly as theirs."""
    import pytensor
    import pytensor.tensor as pt
    from types import SimpleNamespace
    from gru4rec.backend import mode_for
    from gru4rec import evaluation as ev
    from gru4rec.evaluation import (PaddedOutput, rank_counts, scores_and_target, softmax_band_counts,
                                    softmax_rank_counts)

    rng = np.random.default_rng(3)
    B, N, D = 16, 997, 8
    Wy = rng.standard_normal((N + 1, D)).astype(np.float32)  # the network's padding row last
    By = rng.standard_normal(N + 1).astype(np.float32)
    low = rng.choice(np.setdiff1d(np.arange(N), [5, 17, 18, 700, 996]), 300, replace=False)
    By[low] = -300  # ties: softmax underflows to 0, elu to -0.5, relu gives 0
    live = np.setdiff1d(np.arange(N), low)
    y = np.r_[live[np.searchsorted(live, np.arange(8) * (N // 8))], rng.choice(low, 4), [5, 5, 700, 996]]
    Wy[[17, 18]], By[[17, 18]] = Wy[5], By[5]  # two items tie with target 5 in every row
    out = rng.standard_normal((B, D)).astype(np.float32)
    gt_want, eq_want, S, t = _counts_f32(act, out, Wy[:N], By[:N], y)
    assert (eq_want[8:12] >= 290).all() and (eq_want[12:14] >= 2).all()  # (relu ties at 0 elsewhere too)
    distinct = (S != t)
    tol = 1e-5 if act == "softmax" else 1e-6  # a few float32 ulps: NumPy sums and exps differ as much
    assert (np.abs(S - t)[distinct] > tol * np.abs(t).repeat(N, 1)[distinct]).all()  # no near-ties to round

    mode = mode_for(backend)
    net = SimpleNamespace(n_items=N, final_act=act,
                          W={"Wy": pytensor.shared(Wy, shape=Wy.shape), "By": pytensor.shared(By)})
    h = pt.tensor("h", dtype="float32", shape=(B, D))
    target = pt.tensor("y", dtype="int32", shape=(B,))
    if counting == "no band":
        monkeypatch.setattr(ev, "BAND_WIDTH", 0.0)
    if counting != "matrix":
        output = PaddedOutput(net, mode, chunk=300, tiled=True)  # 4 tiles of 250 columns, 3 of them padding
        assert output.tiles()[1].type.shape == (4, 250)
        if counting == "tiles":
            counts = softmax_rank_counts(h, output, target, N, mode)
        else:
            counts = softmax_band_counts(h, output, target, mode)
    else:
        output = PaddedOutput(net, mode)
        S, at = scores_and_target(net, output.raw_scores(h), target)
        counts = rank_counts(S, at(target[:, None])[:, 0], target, N)
    output.refresh()
    fn = pytensor.function([h, target] + output.inputs, counts, mode=mode)
    gt, eq, *sure = (np.asarray(a) for a in fn(out, y.astype(np.int32), *output.values))
    if sure:  # of every row but those whose target's score underflows to 0 (items beside it too)
        np.testing.assert_array_equal(sure[0], (t[:, 0] > 0) & (counting == "band"))
        gt, eq, gt_want, eq_want = (a[sure[0]] for a in (gt, eq, gt_want, eq_want))
    np.testing.assert_array_equal(gt, gt_want)
    np.testing.assert_array_equal(eq, eq_want)


@pytest.mark.parametrize("kind", ["softmax", "relu"])
def test_evaluation_calls_get_no_host_arrays(tmp_path, test_df, kind):
    """A loaded model's weights (shared variables no function updates) and the padded output
    weights go to the device once per evaluation: JAX copied every host array at every call
    (38 MB per call for the RetailRocket model of Diginetica)."""
    import jax
    from gru4rec.evaluation import _CACHE
    path = tmp_path / "m.pt"
    H.small_model(kind).save(path)
    loaded = GRU4Rec.load(path)
    first = run_eval(loaded, test_df, cut_off=[20], batch_size=16)
    ev, = _CACHE[loaded.net].values()
    stored = [c.storage[0] for c in ev.fn.input_storage]
    assert [v for v in stored if isinstance(v, np.ndarray) and v.size > 64] == []
    assert all(isinstance(v, jax.Array) for v in ev.output.values)
    assert run_eval(loaded, test_df, cut_off=[20], batch_size=16) == first


def test_evaluation_call_never_copies_the_item_weights():
    """The compiled evaluation call multiplies by the padded item weights as they are passed:
    given as items x D, XLA transposed the whole matrix at every call (2-3 % of Diginetica's
    evaluation)."""
    from gru4rec.evaluation import _evaluator
    ev = _evaluator(H.small_model("relu"), batch_size=16, steps=8, tiebreak=False, candidates=None)
    text = program_text(ev.fn)
    D, NP = ev.output.Wy.type.shape
    copies = whole_copies(text, [(D, NP), (NP, D)])
    assert "dot(" in text and not copies, copies


@pytest.mark.parametrize("passes", ["one", "two", "one, unsure"])
@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
def test_softmax_evaluation_in_tiles_matches_brute_force(mode, passes, test_df, brute, monkeypatch):
    """A catalogue of more than one chunk is counted in tiles (here: chunks of 150 of the 400
    items), with the same ranks as the brute force: in one pass where the CPU kernels are
    available, in two where they are not, and in two again after a pass unsure of its counts
    (here: never sure), from the hidden states its call started from."""
    from gru4rec import evaluation as ev
    from gru4rec.ops import cpu_kernels
    if passes != "two" and cpu_kernels.compiler() is None:
        pytest.skip("needs a C++ compiler to build the kernel")
    monkeypatch.setattr(ev, "CHUNK", 150)
    if passes == "one, unsure":
        monkeypatch.setattr(ev, "MARGIN", 1.0)
    model = H.small_model("softmax")
    ev._CACHE.pop(model.net, None)
    with cpu_kernels.turned_off() if passes == "two" else contextlib.nullcontext():
        res = run_eval(model, test_df, cut_off=CUTS, batch_size=64, mode=mode, return_ranks=True)
    evaluator, = ev._CACHE[model.net].values()
    assert evaluator.tiled and evaluator.output.tiles()[1].type.shape[0] == 3
    assert evaluator.one_pass == (passes != "two")
    assert (evaluator._recount is not None) == (passes == "one, unsure")  # compiled once needed
    np.testing.assert_array_equal(res.ranks, brute["softmax"][mode])
    ev._CACHE.pop(model.net)


def test_evaluators_keep_no_network_alive(test_df, monkeypatch):
    """The cache of compiled evaluators is keyed weakly by the network: nothing an evaluator holds
    (the one pass's recount, compiled when first needed, included) may refer back to it, or no
    evaluated model would ever be freed."""
    import gc
    import weakref
    from gru4rec import evaluation as ev
    from gru4rec.ops import cpu_kernels
    monkeypatch.setattr(ev, "CHUNK", 150)
    model = H.small_model.__wrapped__("softmax")  # a model of its own: small_model keeps its models
    run_eval(model, test_df, cut_off=[20], batch_size=64)
    evaluator, = ev._CACHE[model.net].values()
    assert evaluator.tiled and evaluator.one_pass == (cpu_kernels.compiler() is not None)
    net = weakref.ref(model.net)
    del model, evaluator
    gc.collect()
    assert net() is None
