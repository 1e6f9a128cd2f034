"""gru4rec.synthetic: deterministic generation, the RSC15-style split, data that looks like
session data (lengths, popularity skew, transitions) and that GRU4Rec learns better than
recommending the most popular items; the command line."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from gru4rec import GRU4Rec
from gru4rec.data import load
from gru4rec.evaluation import evaluate
from gru4rec.synthetic import DAY, generate, main, sessions, split

from .conftest import ROOT


def pairs(test):
    """(input item, target item) of every consecutive pair of the test sessions."""
    test = test.sort_values(["SessionId", "Time"], kind="mergesort")
    prev = test.groupby("SessionId").ItemId.shift(1)
    return pd.DataFrame({"prev": prev, "target": test.ItemId})[prev.notna()]


def pop_recall(train, test, k=20):
    """Recall@k of always recommending the k most popular training items."""
    top = set(train.ItemId.value_counts().index[:k])
    return pairs(test).target.isin(top).mean()


def transition_recall(train, test, k=20):
    """Recall@k of recommending the k most frequent successors (in train) of the current item."""
    tr = pairs(train)
    counts = tr.groupby(["prev", "target"]).size().rename("n").reset_index()
    counts = counts.sort_values(["prev", "n"], ascending=[True, False], kind="mergesort")
    top = counts.groupby("prev").head(k).groupby("prev").target.agg(set).to_dict()
    p = pairs(test)
    return np.mean([t in top.get(i, ()) for i, t in zip(p.prev, p.target)])


def test_same_seed_same_data_other_seed_other_data():
    a = generate(n_sessions=800, n_items=150, seed=1)
    b = generate(n_sessions=800, n_items=150, seed=1)
    c = generate(n_sessions=800, n_items=150, seed=2)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    assert not a[0].equals(c[0])


def test_columns_order_and_times():
    df = sessions(n_sessions=500, n_items=100, seed=3)
    assert list(df.columns) == ["SessionId", "ItemId", "Time"]
    assert df.ItemId.map(type).eq(str).all() and df.ItemId.str.fullmatch(r"\d+").all()
    assert df.SessionId.is_monotonic_increasing
    dt = df.groupby("SessionId").Time.diff().dropna()
    assert (dt > 0).all()  # times increase within a session
    starts = df.groupby("SessionId").Time.min()
    assert starts.is_monotonic_increasing  # session ids in order of session start


def test_split_by_session_end_by_hand():
    # tmax = 200000, boundary = tmax - DAY = 113600
    df = pd.DataFrame({
        "SessionId": [1, 1, 5, 5, 2, 2, 3, 3, 3, 4, 4],
        "ItemId": ["a", "b", "c", "d", "a", "c", "a", "z", "b", "z", "a"],
        "Time": [0, 100, 1000, 113599, 100000, 120000, 150000, 150001, 200000, 190000, 195000],
    })
    assert 200000 - DAY == 113600
    train, test = split(df, days=1)
    # 1 and 5 end before the boundary (5 by one second); 2 starts before it but ends after: test
    assert sorted(train.SessionId.unique()) == [1, 5]
    # z is unknown in train: removed from 3 (a, b stay) and from 4 (one event left: dropped)
    assert test.values.tolist() == [[2, "a", 100000], [2, "c", 120000], [3, "a", 150000], [3, "b", 200000]]


def test_generated_split_follows_the_rsc15_rules():
    """generate() = sessions() -> items with support < 5 dropped, then sessions shorter than 2
    (one pass) -> sessions ending in the last day are test, with unknown items and then
    sessions shorter than 2 removed (spec 15.1)."""
    full = sessions(n_sessions=3000, n_items=400, n_days=10, seed=4)
    train, test = generate(n_sessions=3000, n_items=400, n_days=10, seed=4)
    kept = full[full.ItemId.map(full.ItemId.value_counts()) >= 5]
    kept = kept[kept.SessionId.map(kept.SessionId.value_counts()) >= 2]
    end = kept.groupby("SessionId").Time.max()
    boundary = kept.Time.max() - DAY
    assert train.SessionId.unique().tolist() == end.index[end < boundary].tolist()
    pd.testing.assert_frame_equal(train, kept[kept.SessionId.isin(end.index[end < boundary])].reset_index(drop=True))
    assert set(test.SessionId) <= set(end.index[end >= boundary])
    assert set(test.ItemId) <= set(train.ItemId)
    assert test.groupby("SessionId").size().min() >= 2
    expected = kept[kept.SessionId.isin(end.index[end >= boundary]) & kept.ItemId.isin(set(train.ItemId))]
    expected = expected[expected.SessionId.map(expected.SessionId.value_counts()) >= 2]
    pd.testing.assert_frame_equal(test, expected.reset_index(drop=True))
    assert 0.03 < test.SessionId.nunique() / kept.SessionId.nunique() < 0.2  # about one day in ten


def test_support_filter():
    full = sessions(n_sessions=3000, n_items=400, seed=4)
    train, test = generate(n_sessions=3000, n_items=400, seed=4)
    rare = set(full.ItemId.value_counts().loc[lambda s: s < 5].index)
    assert rare, "the setting should have rare items to filter"
    assert not rare & (set(train.ItemId) | set(test.ItemId))


def test_session_lengths_and_popularity_look_like_session_data(synthetic_data):
    train, test = synthetic_data
    lengths = train.groupby("SessionId").size()
    assert lengths.min() == 2
    assert ((lengths >= 2) & (lengths <= 10)).mean() > 0.9
    assert 2 <= lengths.median() <= 6 and lengths.max() > 15  # a long tail
    counts = train.ItemId.value_counts()
    top10 = counts.iloc[: len(counts) // 10].sum() / counts.sum()
    assert top10 > 0.3  # Zipf-like: the top 10 % of the items get far more than 10 % of the events


def test_next_item_depends_on_the_current_item(synthetic_data):
    """The item-to-item transitions carry information popularity does not."""
    train, test = synthetic_data
    pop, trans = pop_recall(train, test), transition_recall(train, test)
    assert trans > 3 * pop, (trans, pop)


@pytest.mark.slow
def test_gru4rec_beats_popularity():
    train, test = generate(n_sessions=5000, n_items=1000, seed=11)
    model = GRU4Rec(loss="cross-entropy", final_act="softmax", constrained_embedding=True, layers=[64],
                    batch_size=32, n_sample=512, logq=1.0, learning_rate=0.2, momentum=0.2,
                    dropout_p_hidden=0.2, n_epochs=3)
    model.fit(train, show_progress=False)
    res = evaluate(model, test, cut_off=[20], mode="conservative", progress=False)
    assert res.n == len(pairs(test))
    pop = pop_recall(train, test)
    assert res.recall[20] > 2 * pop, (res.recall[20], pop)
    assert res.recall[20] > transition_recall(train, test)  # it learns more than the last item's successors


def test_command_line_writes_what_run_py_reads(tmp_path, capsys):
    assert main([str(tmp_path / "out"), "--seed", "5", "--sessions", "600", "--items", "120", "--validation"]) == 0
    out = capsys.readouterr().out
    train, test = generate(600, 120, seed=5)
    files = {}
    for name in ("train", "test", "train_tr", "train_valid"):
        path = tmp_path / "out" / f"{name}.tsv"
        assert path.read_text().splitlines()[0] == "SessionId\tItemId\tTime"
        files[name] = load(path)  # what run.py does
        assert f"{name}\tEvents: {len(files[name])}\tSessions: {files[name].SessionId.nunique()}" in out
    pd.testing.assert_frame_equal(files["train"], train)
    pd.testing.assert_frame_equal(files["test"], test)
    tr, va = split(train, 1)
    pd.testing.assert_frame_equal(files["train_tr"], tr)
    pd.testing.assert_frame_equal(files["train_valid"], va)
    assert set(tr.SessionId) | set(files["train_valid"].SessionId) <= set(train.SessionId)


def test_command_line_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--days", "1"])
    assert e.value.code == 1 and "test_days must be less than n_days" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--sessions", "3", "--items", "50"])
    assert "empty" in capsys.readouterr().err


def test_python_dash_m(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gru4rec.synthetic", str(tmp_path), "--sessions", "400",
                        "--items", "100"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "train.tsv").is_file() and (tmp_path / "test.tsv").is_file()
    assert r.stdout.splitlines()[-1] == f"Output written to {tmp_path}"
