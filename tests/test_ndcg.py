"""NDCG@k in gru4rec.evaluation: the formula in metrics_from_ranks, and session evaluation that
gains ndcg while recall and mrr stay what the brute force of tests/evalhelpers.py gives."""
import numpy as np
import pytest

from gru4rec.evaluation import Metrics, evaluate, metrics_from_ranks

from . import evalhelpers as H
from . import seqhelpers as S

CUTS = [1, 5, 10, 20]


def test_ndcg_formula():
    ranks = np.array([1, 2, 3.5, 11, np.inf])
    m = metrics_from_ranks(ranks, [1, 3, 4, 20])
    assert m.ndcg[1] == pytest.approx(1 / 5)
    assert m.ndcg[3] == pytest.approx((1 + 1 / np.log2(3)) / 5)
    assert m.ndcg[4] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(4.5)) / 5)
    assert m.ndcg[20] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(4.5) + 1 / np.log2(12)) / 5)
    assert m.recall[20] == pytest.approx(4 / 5) and m.mrr[1] == pytest.approx(1 / 5)
    assert m.n == 5 and m.ranks is None


def test_metrics_is_read_by_name():
    m = metrics_from_ranks([1.0, 2.0], [1], return_ranks=True)
    assert (m.recall, m.mrr, m.ndcg, m.n) == ({1: 0.5}, {1: 0.5}, {1: 0.5}, 2) and list(m.ranks) == [1, 2]
    with pytest.raises(TypeError):  # no positional construction, no unpacking
        Metrics({1: 1.0}, {1: 1.0}, {1: 1.0}, 1)
    with pytest.raises(TypeError):
        recall, mrr, ndcg, n, ranks = m
    with pytest.raises(AttributeError):  # frozen
        m.n = 3


@pytest.mark.parametrize("mode", ["standard", "conservative", "median"])
def test_session_evaluation_gains_ndcg(mode):
    """Every user's whole history as one test session, ranked as spec 10.1 says."""
    model = S.small_model("relu")
    sessions = S.histories()
    res = evaluate(model, sessions, cut_off=CUTS, batch_size=16, mode=mode, return_ranks=True)
    want = H.brute_force_ranks(model, sessions, [mode])[mode]
    np.testing.assert_array_equal(res.ranks, want)
    recall, mrr = H.metrics(want, CUTS)
    assert res.recall == pytest.approx(recall, abs=1e-12) and res.mrr == pytest.approx(mrr, abs=1e-12)
    for c in CUTS:
        assert res.ndcg[c] == pytest.approx(np.mean(np.where(want <= c, 1 / np.log2(want + 1), 0)), abs=1e-12)
