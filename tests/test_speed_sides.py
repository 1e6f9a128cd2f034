"""The summary and table of bench/speed_sides.py from run.py output (nothing is trained here)."""
import importlib.util
import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(_BENCH))  # speed_sides imports faithfulness from beside it
_spec = importlib.util.spec_from_file_location("speed_sides", _BENCH / "speed_sides.py")
ss = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ss)
sys.path.remove(str(_BENCH))

OUTPUT = """\
Epoch1 --> loss: 6.500000 \t(5.00s) \t[{a:.2f} mb/s | 12000 e/s]
Epoch2 --> loss: 6.250000 \t(4.00s) \t[{b:.2f} mb/s | 12500 e/s]
Evaluation took {e:.2f}s
Recall@20: 0.650000 MRR@20: 0.330000
"""


def _runs(*triples):
    return [ss.fb.parse_output(OUTPUT.format(a=a, b=b, e=e)) for a, b, e in triples]


def test_summary_means_the_epochs_and_takes_the_fastest_evaluation():
    s = ss.summary(_runs((400, 420, 0.9), (410, 430, 0.5)))
    assert s["mb_per_s"] == 415 and s["mb_per_s_range"] == [400, 430] and s["eval_s"] == 0.5


def test_table_gives_this_package_as_a_multiple_of_each_side():
    sides = {name: dict(summary=ss.summary(_runs(t))) for name, t in
             (("self", (600, 600, 0.5)), ("peer", (300, 300, 1.0)), ("original", (150, 150, 0.25)))}
    rows = ss.format_table("rsc15", sides).splitlines()
    assert rows[3].startswith("| this package | 600.0 (600.0-600.0) | 0.50 | 1.00 | 1.00 |")
    assert rows[4] == "| port | 300.0 (300.0-300.0) | 1.00 | 2.00 | 2.00 |"
    assert rows[5] == "| original | 150.0 (150.0-150.0) | 0.25 | 4.00 | 0.50 |"


def test_configurations_resolve_to_parameters():
    rsc15 = ss.fb.config_params(ss.CONFIGS["rsc15"])
    rr = ss.fb.config_params(ss.CONFIGS["retailrocket"])
    assert rsc15["n_epochs"] == 2 and rsc15["layers"] == [100] and rsc15["batch_size"] == 32
    assert rr["n_epochs"] == 1 and rr["layers"] == [224] and rr["loss"] == "bpr-max"


def test_a_synthetic_configuration_generates_its_files(tmp_path):
    """The files are gru4rec.synthetic's split of the configuration's arguments, train then test."""
    import pandas as pd
    from gru4rec.synthetic import generate
    cfg = dict(synthetic=["--sessions", "400", "--items", "120", "--days", "3"])
    train, test = ss.input_files(None, cfg, tmp_path, "tiny")
    want = generate(n_sessions=400, n_items=120, n_days=3)
    for path, frame in zip((train, test), want):
        got = pd.read_csv(path, sep="\t", dtype={"ItemId": str})
        assert list(got.columns) == ["SessionId", "ItemId", "Time"] and len(got) == len(frame) > 0
        assert got["ItemId"].tolist() == frame["ItemId"].tolist()
    assert ss.CONFIGS["synthetic-200k"]["synthetic"][:4] == ["--sessions", "2000000", "--items", "200000"]
    assert "synthetic-200k" not in ss.DEFAULT_CONFIGS  # a quarter of an hour a side on two cores
