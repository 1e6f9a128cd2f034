"""gru4rec.sequence_eval: the state carried over a user's history, and HR/MRR/NDCG of the
leave-one-out targets against a float64 brute force (tests/seqhelpers.py, tests/reference.py),
with and without excluding seen items, in every tie mode."""
import numpy as np
import pandas as pd
import pytest

from gru4rec import DataError, GRU4Rec
from gru4rec.sequence_eval import evaluate_next_item, user_states

from . import reference as R
from . import seqhelpers as S

CUTS = [1, 5, 10, 20]
MODES = ["standard", "conservative", "median"]


def full_history():
    p = S.parts()
    return pd.concat([p["train"], p["valid"]], ignore_index=True)


# the state carried over the history ------------------------------------------------------------
@pytest.mark.parametrize("batch_size, steps", [(8, 3), (512, 8), (1, 1)])
def test_state_after_training_and_validation_items(batch_size, steps):
    """The state a test target is ranked from is the one after feeding the user's training
    and validation items one by one (two layers: every layer's state carries over)."""
    model = S.small_model("softmax", layers=(12, 8))
    targets = S.parts()["test"]
    users = list(targets.SessionId)
    states = user_states(model, full_history(), users, batch_size=batch_size, steps=steps)
    seqs = S.known(model, full_history())
    assert [s.shape for s in states] == [(len(users), 12), (len(users), 8)]
    for r, u in enumerate(users):
        want = S.reference_states(model, seqs[u])
        for layer, h in zip(want, states):
            np.testing.assert_allclose(h[r], layer, atol=2e-5, err_msg=f"user {u}")


def test_states_follow_the_users_order_and_ignore_other_users():
    model = S.small_model("softmax")
    hist = full_history()
    users = [1003, "nobody", 1000]
    states = user_states(model, hist, users)[-1]
    seqs = S.known(model, hist)
    np.testing.assert_allclose(states[0], S.reference_states(model, seqs[1003])[-1], atol=2e-5)
    np.testing.assert_array_equal(states[1], 0)  # no history: the zero state
    np.testing.assert_allclose(states[2], S.reference_states(model, seqs[1000])[-1], atol=2e-5)
    shuffled = hist.sample(frac=1, random_state=1)  # order comes from Time, not from the rows
    np.testing.assert_array_equal(user_states(model, shuffled, users)[-1], states)


# ranks and metrics against the brute force ---------------------------------------------------
def brute_ranks(model, history, targets, mode, exclude_seen):
    """Rank of each target from the float64 state after the user's known history items,
    among all items except (with exclude_seen) the user's history items other than the target."""
    W = {k: v.astype(np.float64) for k, v in model.net.weights().items()}
    fa = model.net.final_act
    act = R.activation("softmax" if fa.startswith("softmax") else fa)
    seqs = S.known(model, history)
    N = len(model.itemidmap)
    ranks = []
    for u, item in zip(targets.SessionId, targets.ItemId):
        if item not in model.itemidmap.index:
            ranks.append(np.inf)
            continue
        y = int(model.itemidmap[item])
        seq = seqs.get(u, [])
        h = S.reference_states(model, seq)[-1]
        scores = act(h[None, :] @ W["Wy"].T + W["By"])[0]
        allowed = np.ones(N, bool)
        if exclude_seen:
            allowed[seq] = False
            allowed[y] = True
        gt = (scores[allowed] > scores[y]).sum()
        eq = (scores[allowed] == scores[y]).sum()  # the target included
        ranks.append({"standard": gt + 1, "conservative": gt + eq, "median": gt + 0.5 * (eq - 1) + 1}[mode])
    return np.array(ranks, np.float64)


def brute_metrics(ranks, cuts):
    hr = {c: float(np.mean(ranks <= c)) for c in cuts}
    mrr = {c: float(np.mean(np.where(ranks <= c, 1 / ranks, 0))) for c in cuts}
    ndcg = {c: float(np.mean(np.where(ranks <= c, 1 / np.log2(ranks + 1), 0))) for c in cuts}
    return hr, mrr, ndcg


@pytest.mark.parametrize("kind", sorted(S.KINDS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_matches_brute_force(kind, mode, exclude_seen, split):
    model = S.small_model(kind)
    p = S.parts()
    history = p["train"] if split == "valid" else full_history()
    targets = p[split]
    res = evaluate_next_item(model, history, targets, cut_off=CUTS, exclude_seen=exclude_seen,
                mode=mode, batch_size=32, return_ranks=True)
    want = brute_ranks(model, history, targets, mode, exclude_seen)
    np.testing.assert_array_equal(res.ranks, want)
    assert res.n == len(targets)
    hr, mrr, ndcg = brute_metrics(want, CUTS)
    for c in CUTS:
        assert res.recall[c] == pytest.approx(hr[c], abs=1e-12)
        assert res.mrr[c] == pytest.approx(mrr[c], abs=1e-12)
        assert res.ndcg[c] == pytest.approx(ndcg[c], abs=1e-12)


def test_the_brute_force_sees_ties_exclusions_and_skill():
    """Without ties, exclusions that change ranks and a model better than chance, the test
    above would prove less than it claims."""
    p = S.parts()
    relu, soft = S.small_model("relu"), S.small_model("softmax")
    t = full_history()
    cons = brute_ranks(relu, t, p["test"], "conservative", True)
    std = brute_ranks(relu, t, p["test"], "standard", True)
    assert (cons > std).mean() > 0.1
    keep = brute_ranks(soft, t, p["test"], "standard", False)
    excl = brute_ranks(soft, t, p["test"], "standard", True)
    assert np.all(excl <= keep) and (excl < keep).mean() > 0.3
    assert np.mean(excl <= 10) > 2 * 10 / S.N_ITEMS


def test_target_in_history_is_still_ranked():
    """A user who had the target before: it is excluded as history, but ranked as target."""
    model = S.small_model("softmax")
    a, b, c = (model.itemidmap.index[i] for i in (3, 4, 5))
    history = pd.DataFrame({"SessionId": [1, 1, 1], "ItemId": [a, b, c], "Time": [0, 1, 2]})
    target = pd.DataFrame({"SessionId": [1], "ItemId": [b], "Time": [3]})
    res = evaluate_next_item(model, history, target, cut_off=[5], return_ranks=True)
    want = brute_ranks(model, history, target, "standard", True)
    assert np.isfinite(res.ranks[0]) and res.ranks[0] == want[0]


@pytest.mark.parametrize("batch_size, steps", [(1, 1), (7, 2), (1024, 16)])
def test_batching_does_not_change_ranks(batch_size, steps):
    model = S.small_model("relu")
    p = S.parts()
    kw = dict(cut_off=CUTS, mode="conservative", return_ranks=True)
    ref = evaluate_next_item(model, full_history(), p["test"], batch_size=32, **kw)
    res = evaluate_next_item(model, full_history(), p["test"], batch_size=batch_size, steps=steps, **kw)
    np.testing.assert_array_equal(res.ranks, ref.ranks)


def test_tiebreaking_lies_between():
    model = S.small_model("relu")
    p = S.parts()
    r = {m: evaluate_next_item(model, full_history(), p["test"], cut_off=[10], mode=m, return_ranks=True)
         for m in ("standard", "conservative", "tiebreaking")}
    assert np.all(r["standard"].ranks <= r["tiebreaking"].ranks)
    assert np.all(r["tiebreaking"].ranks <= r["conservative"].ranks)


def test_unknown_target_is_a_miss(caplog):
    model = S.small_model("softmax")
    p = S.parts()
    targets = p["test"].head(6).copy()
    targets.loc[targets.index[2], "ItemId"] = "never-seen"
    res = evaluate_next_item(model, full_history(), targets, cut_off=CUTS, return_ranks=True)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == \
        [("WARNING", "1 of 6 targets are items the model does not know; they count as misses")]
    assert res.n == 6 and res.ranks[2] == np.inf
    np.testing.assert_array_equal(np.delete(res.ranks, 2),
                                  np.delete(brute_ranks(model, full_history(), targets, "standard", True), 2))
    assert res.recall[20] == pytest.approx(np.mean(res.ranks <= 20))


def test_errors():
    model = S.small_model("softmax")
    p = S.parts()
    with pytest.raises(DataError, match="more than once"):
        evaluate_next_item(model, p["train"], pd.concat([p["test"], p["test"].head(2)]))
    with pytest.raises(ValueError, match="mode"):
        evaluate_next_item(model, p["train"], p["valid"], mode="optimistic")
    with pytest.raises(ValueError, match="cut-offs"):
        evaluate_next_item(model, p["train"], p["valid"], cut_off=[0])
    with pytest.raises(DataError, match="Foo"):
        evaluate_next_item(model, p["train"], p["valid"], item_key="Foo")
    with pytest.raises(ValueError, match="not trained"):
        evaluate_next_item(GRU4Rec(), p["train"], p["valid"])
