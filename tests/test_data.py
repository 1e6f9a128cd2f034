"""Data preparation (spec 2) and the session-parallel schedule (spec 3.1)."""
import logging

import numpy as np
import pandas as pd
import pytest

from gru4rec.data import DataError, load, prepare, session_parallel_schedule

PAD = 99


def example():
    """Spec 3.1a: A=(a1,a2,a3), B=(b1,b2), C=(c1..c4), D=(d1,d2) in this order."""
    items = np.array([0, 1, 2, 10, 11, 20, 21, 22, 23, 30, 31], np.int32)
    offsets = np.array([0, 3, 5, 9, 11])
    return items, offsets


def steps_of(s):
    """[(slot: (x, y, reset)) per step] for the active slots."""
    return [{b: (int(s.x[t, b]), int(s.y[t, b]), bool(s.reset[t, b]))
             for b in range(s.x.shape[1]) if s.active[t, b]} for t in range(s.n_steps)]


def test_worked_example_3_1a():
    items, offsets = example()
    s = session_parallel_schedule(items, offsets, np.arange(4), 2, PAD)
    assert steps_of(s) == [
        {0: (0, 1, False), 1: (10, 11, True)},   # a1->a2, b1->b2; B ends, slot 1 gets C
        {0: (1, 2, True), 1: (20, 21, False)},   # a2->a3, c1->c2; A ends, slot 0 gets D
        {0: (30, 31, True), 1: (21, 22, False)},  # d1->d2, c2->c3; D ends, slot 0 removed
        {1: (22, 23, True)},                      # c3->c4
    ]
    assert s.active.sum() == 7 == len(items) - 4
    assert (s.x[3, 0], s.y[3, 0]) == (PAD, PAD)


def test_worked_example_without_samples_stops_below_two_slots():
    items, offsets = example()
    s = session_parallel_schedule(items, offsets, np.arange(4), 2, PAD, stop_below_two=True)
    assert s.n_steps == 3 and s.active.sum() == 6


def test_single_event_sessions_are_consumed_without_a_step():
    # sessions: A=(0,1,2) B=(5) C=(6,7) D=(8,9); B has no pair, slot 1 goes straight on to C
    items = np.array([0, 1, 2, 5, 6, 7, 8, 9], np.int32)
    offsets = np.array([0, 3, 4, 6, 8])
    s = session_parallel_schedule(items, offsets, np.arange(4), 2, PAD)
    assert steps_of(s) == [{0: (0, 1, False), 1: (6, 7, True)},
                           {0: (1, 2, True), 1: (8, 9, True)}]


def test_order_is_respected_and_every_pair_trained_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 9, 50)
    offsets = np.r_[0, np.cumsum(lengths)]
    items = np.arange(offsets[-1], dtype=np.int32)  # item == position: pairs are (p, p+1)
    order = rng.permutation(50)
    s = session_parallel_schedule(items, offsets, order, 7, -1)
    act = s.active > 0
    pairs = sorted(zip(s.x[act].tolist(), s.y[act].tolist()))
    expected = sorted((p, p + 1) for k in range(50) for p in range(offsets[k], offsets[k + 1] - 1))
    assert pairs == expected
    # first sessions of the order start in slots 0..6 at step 0
    assert [s.x[0, b] for b in range(7)] == [offsets[order[b]] for b in range(7)]
    # a reset exactly where each session's last target is
    assert int(s.reset.sum()) == 50
    assert np.all(s.y[s.reset > 0] + 1 == np.array([offsets[k + 1] for k in range(50)])[
        np.searchsorted(offsets[1:], s.y[s.reset > 0], side="left")])


def test_padding_to_multiple_of_k():
    items, offsets = example()
    s = session_parallel_schedule(items, offsets, np.arange(4), 2, PAD).padded(3, PAD)
    assert s.x.shape == (6, 2) and s.active[4:].sum() == 0 and np.all(s.x[4:] == PAD)


def test_fewer_sessions_than_batch_size_is_a_clear_error():
    items, offsets = example()
    with pytest.raises(DataError, match="fewer than batch_size=5"):
        session_parallel_schedule(items, offsets, np.arange(4), 5, PAD)


def test_prepare_itemmap_first_appearance_sort_and_pop(caplog):
    caplog.set_level(logging.INFO, logger="gru4rec")
    df = pd.DataFrame({"SessionId": [2, 2, 1, 1, 1], "ItemId": ["b", "a", "c", "b", "b"],
                       "Time": [5.0, 6.0, 1.0, 3.0, 2.0]})
    td = prepare(df, "SessionId", "ItemId", "Time")
    assert list(td.itemids) == ["b", "a", "c"]  # first appearance in the unsorted frame
    assert "The dataframe is not sorted by SessionId, sorting now" in caplog.messages
    assert list(df["ItemId"]) == ["b", "a", "c", "b", "b"]  # the caller's frame is left alone
    assert td.items.tolist() == [2, 0, 0, 0, 1]
    assert td.offsets.tolist() == [0, 3, 5]
    assert td.pop.tolist() == [3, 1, 1]
    assert td.base_order.tolist() == [0, 1]  # session 1 starts at t=1, session 2 at t=5


def test_prepare_time_sort_orders_by_session_start(caplog):
    caplog.set_level(logging.INFO, logger="gru4rec")
    df = pd.DataFrame({"SessionId": [1, 1, 2, 2], "ItemId": [1, 2, 3, 4], "Time": [10, 11, 1, 2]})
    td = prepare(df, "SessionId", "ItemId", "Time")
    assert caplog.messages == ["The dataframe is already sorted by SessionId, Time"]
    assert td.base_order.tolist() == [1, 0]
    assert prepare(df, "SessionId", "ItemId", "Time", time_sort=False).base_order.tolist() == [0, 1]


@pytest.mark.parametrize("frame, msg", [
    (pd.DataFrame({"SessionId": [1], "Time": [1]}), "ItemId"),
    (pd.DataFrame({"SessionId": [], "ItemId": [], "Time": []}), "empty"),
    (pd.DataFrame({"SessionId": [1, None], "ItemId": [1, 2], "Time": [1, 2]}), "SessionId.*missing"),
    (pd.DataFrame({"SessionId": [1, 1], "ItemId": [1, np.nan], "Time": [1, 2]}), "ItemId.*missing"),
])
def test_bad_frames(frame, msg):
    with pytest.raises(DataError, match=msg):
        prepare(frame, "SessionId", "ItemId", "Time")


def test_load_formats_and_errors(tmp_path):
    df = pd.DataFrame({"SessionId": [1, 1], "ItemId": [7, 8], "Time": [1.0, 2.0], "Other": [0, 0]})
    df.to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    got = load(tmp_path / "a.tsv")
    assert list(got.columns) == ["SessionId", "ItemId", "Time"] and got["ItemId"].tolist() == ["7", "8"]
    df.to_pickle(tmp_path / "a.pickle")
    assert len(load(tmp_path / "a.pickle")) == 2
    df.to_parquet(tmp_path / "a.parquet")
    assert len(load(tmp_path / "a.parquet")) == 2
    with pytest.raises(DataError, match="not found"):
        load(tmp_path / "missing.tsv")
    with pytest.raises(DataError, match='"Stamp" is not in the data file'):
        load(tmp_path / "a.tsv", time_key="Stamp")
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load(tmp_path / "empty.tsv")
    (tmp_path / "header.tsv").write_text("SessionId\tItemId\tTime\n")
    with pytest.raises(DataError, match="no events"):
        load(tmp_path / "header.tsv")
