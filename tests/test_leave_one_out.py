"""gru4rec.leave_one_out: targets are each user's last and second-to-last items, order and
positions are kept, short users train only; pairs and TSV input; the command line; and, when
the data is here, the counts of the Amazon Beauty split."""
import gzip
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from gru4rec import DataError
from gru4rec.data import load
from gru4rec.leave_one_out import histories, read_histories, split

from . import seqhelpers as S
from .conftest import ROOT, SHARED, needs

BEAUTY = SHARED / "beauty" / "beauty.txt.gz"


def by_user(df):
    return {u: list(g.ItemId) for u, g in df.groupby("SessionId", sort=False)}


def test_split_targets_order_counts_and_short_users():
    raw = S.histories()
    parts = split(histories(raw, "SessionId", "ItemId", "Time"))
    seqs = by_user(raw)
    train, valid, test = (by_user(parts[k]) for k in ("train", "valid", "test"))
    short = [u for u, s in seqs.items() if len(s) < 3]
    assert short and any(len(seqs[u]) == 2 for u in short)  # the generated data has them
    for u, seq in seqs.items():
        if len(seq) < 3:
            assert train[u] == seq and u not in valid and u not in test
        else:
            assert train[u] == seq[:-2] and valid[u] == [seq[-2]] and test[u] == [seq[-1]]
    n_eval = len(seqs) - len(short)
    assert len(parts["valid"]) == len(parts["test"]) == n_eval
    assert len(parts["train"]) == len(raw) - 2 * n_eval
    # Time is the position in the whole history: the union sorted by (user, Time) is the data
    whole = pd.concat(parts.values()).sort_values(["SessionId", "Time"], ignore_index=True)
    pd.testing.assert_frame_equal(whole, raw)


def test_pairs_file_keeps_line_order(tmp_path):
    """Line order is time order, even for a user whose lines are not contiguous; users keep
    their order of first appearance."""
    lines = ["7 b", "7 a", "3 z", "7 c", "3 y", "3 x", "7 a", "9 q"]
    for name, opener in (("pairs.txt", open), ("pairs.txt.gz", gzip.open)):
        with opener(tmp_path / name, "wt") as f:
            f.write("\n".join(lines) + "\n")
        h = read_histories(tmp_path / name)
        assert list(h.SessionId) == ["7"] * 4 + ["3"] * 3 + ["9"]
        assert list(h.ItemId) == ["b", "a", "c", "a", "z", "y", "x", "q"]
        assert list(h.Time) == [0, 1, 2, 3, 0, 1, 2, 0]


def test_tsv_with_own_column_names_is_ordered_by_time(tmp_path):
    df = pd.DataFrame({"user": [5, 5, 5, 2, 2, 5], "item": [10, 11, 12, 20, 21, 13],
                       "ts": [3.0, 1.0, 2.0, 9.0, 8.0, 1.0]})
    df.to_csv(tmp_path / "in.tsv", sep="\t", index=False)
    h = read_histories(tmp_path / "in.tsv", "user", "item", "ts")
    assert list(h.SessionId) == [5, 5, 5, 5, 2, 2]
    assert list(h.ItemId) == ["11", "13", "12", "10", "21", "20"]  # equal times keep file order
    assert list(h.Time) == [0, 1, 2, 3, 0, 1]


def test_command_line_writes_package_input_files(tmp_path):
    S.histories().to_csv(tmp_path / "in.tsv", sep="\t", index=False)
    out = tmp_path / "split"
    r = subprocess.run([sys.executable, "-m", "gru4rec.leave_one_out", str(tmp_path / "in.tsv"), str(out)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    want = S.parts()
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{len(S.histories())} interactions, 240 users")
    assert lines[2].startswith(f"valid: {len(want['valid'])} interactions, {len(want['valid'])} users")
    for name in ("train", "valid", "test"):
        assert (out / f"{name}.tsv").read_text().splitlines()[0] == "SessionId\tItemId\tTime"
        got = load(out / f"{name}.tsv")
        pd.testing.assert_frame_equal(got, want[name].astype({"SessionId": got.SessionId.dtype}))


def test_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gru4rec.leave_one_out", str(tmp_path / "none.txt"),
                        str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.strip().startswith("ERROR. File not found")
    (tmp_path / "bad.txt").write_text("1 2 3\n1 4 5\n")
    with pytest.raises(DataError, match="user item"):
        read_histories(tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        read_histories(tmp_path / "empty.txt")


@needs(BEAUTY)
def test_beauty_counts():
    h = read_histories(BEAUTY)
    assert (len(h), h.SessionId.nunique(), h.ItemId.nunique()) == (353962, 40226, 54542)
    parts = split(h)
    assert len(parts["valid"]) == len(parts["test"]) == 40226  # every user has >= 5 items
    assert len(parts["train"]) == 353962 - 2 * 40226
    first = h[h.SessionId == h.SessionId.iloc[0]]
    assert parts["test"].ItemId.iloc[0] == first.ItemId.iloc[-1]
    assert parts["valid"].ItemId.iloc[0] == first.ItemId.iloc[-2]
    assert np.all(parts["test"].Time.to_numpy() == h.groupby("SessionId", sort=False).size().to_numpy() - 1)
