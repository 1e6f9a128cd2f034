"""The prediction API: recommend (one session) and recommend_next / drop_sessions (live
sessions with kept state), consistent with evaluation and the brute-force scores."""
import numpy as np
import pandas as pd
import pytest

from gru4rec.evaluation import evaluate

from . import evalhelpers as H


@pytest.fixture(scope="module")
def model():
    return H.small_model("softmax")


@pytest.fixture(scope="module")
def session(model):
    """A real test session of known items, as original item ids."""
    test = H.events()[1]
    seqs = H.brute_sessions(model, test)
    seq = next(s for s in seqs if len(s) >= 5)[:5]
    return [model.itemidmap.index[i] for i in seq]


def test_recommend_matches_evaluation_and_brute_force(model, session):
    N = len(model.itemidmap)
    frame = pd.DataFrame({"SessionId": 7, "ItemId": session, "Time": np.arange(len(session))})
    ev = evaluate(model, frame, cut_off=[20], batch_size=4, return_ranks=True)
    brute = H.session_scores(model, [model.itemidmap[i] for i in session[:-1]])
    for t in range(len(session) - 1):
        rec = model.recommend(session[: t + 1], k=N)
        assert len(rec) == N and list(rec.columns) == ["ItemId", "Score"]
        scores = rec.set_index("ItemId").Score
        target = scores[session[t + 1]]
        assert (scores > target).sum() + 1 == ev.ranks[t]  # the evaluator's (standard) rank
        top = model.recommend(session[: t + 1], k=10)
        want = model.itemidmap.index[np.argsort(-brute[t], kind="stable")[:10]]
        assert list(top.ItemId) == list(want)
        np.testing.assert_allclose(top.Score, np.sort(brute[t])[::-1][:10], rtol=1e-4)
        assert top.Score.is_monotonic_decreasing


def test_recommend_next_keeps_state_per_session(model, session):
    other = list(reversed(session))
    model.drop_sessions()
    for t in range(len(session)):
        out = model.recommend_next(["a", "b"], [session[t], other[t]], k=5)
        assert list(out.columns) == ["SessionId", "Rank", "ItemId", "Score"]
        a, b = out[out.SessionId == "a"], out[out.SessionId == "b"]
        assert list(a.Rank) == [1, 2, 3, 4, 5]
        pd.testing.assert_frame_equal(a[["ItemId", "Score"]].reset_index(drop=True),
                                      model.recommend(session[: t + 1], k=5), check_exact=False, rtol=1e-5)
        pd.testing.assert_frame_equal(b[["ItemId", "Score"]].reset_index(drop=True),
                                      model.recommend(other[: t + 1], k=5), check_exact=False, rtol=1e-5)
    # a new session id starts from zero state; dropping a session forgets it
    fresh = model.recommend_next(["c"], [session[-1]], k=5)
    pd.testing.assert_frame_equal(fresh[["ItemId", "Score"]], model.recommend(session[-1:], k=5),
                                  check_exact=False, rtol=1e-5)
    assert model.drop_sessions(["a", "nobody"]) == 1
    again = model.recommend_next(["a"], [session[0]], k=5)
    pd.testing.assert_frame_equal(again[["ItemId", "Score"]], model.recommend(session[:1], k=5),
                                  check_exact=False, rtol=1e-5)
    assert model.drop_sessions() == 3


def test_unknown_items_are_skipped(model, session):
    s = session[:3]
    pd.testing.assert_frame_equal(model.recommend([s[0], "unknown", s[1], s[2], "unknown"], k=8),
                                  model.recommend(s, k=8))
    with pytest.warns(UserWarning, match="none of the 1 session item"):
        empty = model.recommend(["unknown"])
    assert len(empty) == 0 and list(empty.columns) == ["ItemId", "Score"]
    model.drop_sessions()
    first = model.recommend_next(["x", "y"], [s[0], "unknown"], k=3)
    assert set(first.SessionId) == {"x"}  # y has no known item yet: no recommendations
    second = model.recommend_next(["x"], ["unknown"], k=3)  # state unchanged: same as before
    pd.testing.assert_frame_equal(second.reset_index(drop=True), first.reset_index(drop=True))
    model.drop_sessions()


def test_exclude_candidates_and_k(model, session):
    full = model.recommend(session, k=50)
    excl = model.recommend(session, k=10, exclude=list(full.ItemId[:3]))
    assert list(excl.ItemId) == list(full.ItemId[3:13])
    cands = list(full.ItemId[[5, 1, 40]]) + ["unknown"]
    sub = model.recommend(session, k=10, candidates=cands)
    assert list(sub.ItemId) == list(full.ItemId[[1, 5, 40]])
    assert len(model.recommend(session, k=10 ** 6)) == len(model.itemidmap)
    per_session = model.recommend_next(["p", "q"], [session[0], session[1]], k=4,
                                       exclude={"p": list(full.ItemId[:2])})
    assert not set(per_session[per_session.SessionId == "p"].ItemId) & set(full.ItemId[:2])
    model.drop_sessions()


def test_integer_ids_match_string_ids(model, session):
    as_int = [int(i) for i in session[:2]]
    pd.testing.assert_frame_equal(model.recommend(as_int, k=5), model.recommend(session[:2], k=5))


def test_bad_calls(model, session):
    with pytest.raises(ValueError, match="more than once"):
        model.recommend_next(["a", "a"], session[:2])
    with pytest.raises(ValueError, match="session ids"):
        model.recommend_next(["a"], session[:2])
