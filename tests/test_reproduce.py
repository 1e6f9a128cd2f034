"""examples/reproduce.py: trains with a paramfile, evaluates, and tabulates against the paper."""
import re
import subprocess
import sys

import pytest

from .conftest import ROOT, YOOCHOOSE as DATA, needs


@pytest.mark.slow
@needs(DATA)
def test_reproduce_table(tmp_path):
    out = tmp_path / "r.md"
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "reproduce.py"), "rsc15", "--data", str(DATA),
                        "--epochs", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = re.findall(r"^\| (Recall|MRR)@(\d+) \| (\d\.\d{4}) \| (\d\.\d{4}) \| ([+-]\d+\.\d)% \|$", out.read_text(), re.M)
    assert [(m, int(c)) for m, c, *_ in rows] == [(m, c) for c in (1, 5, 10, 20) for m in ("Recall", "MRR")]
    published = {("Recall", 20): 0.7283, ("MRR", 20): 0.3205, ("Recall", 1): 0.1845}
    for m, c, ours, pub, diff in rows:
        ours, pub, diff = float(ours), float(pub), float(diff)
        if (m, int(c)) in published:
            assert pub == published[(m, int(c))]
        assert diff == pytest.approx(100 * (ours - pub) / pub, abs=0.1)
    recall = {int(c): float(o) for m, c, o, _, _ in rows if m == "Recall"}
    assert 0 < recall[1] <= recall[5] <= recall[10] <= recall[20] < 1
    assert "Trained 1 epochs" in out.read_text()


def test_reproduce_missing_data_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "reproduce.py"), "diginetica", "--data", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: no train_full split for diginetica")
