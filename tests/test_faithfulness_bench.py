"""Output parsing and parameter translation of bench/faithfulness.py (nothing is trained here)."""
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "faithfulness.py"
_spec = importlib.util.spec_from_file_location("faithfulness", _PATH)
fb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fb)

# Lines in the format of this package's run.py (sample text written for this test).
SELF_OUTPUT = """\
SET   loss                    TO   cross-entropy   (type: <class 'str'>)
Creating GRU4Rec model
Loading training data...
Loading data from TAB separated file: train.tsv.gz
Started training
Created sample store with 4882 batches of samples (type=GPU)
Epoch1 --> loss: 6.500000 \t(5.00s) \t[400.00 mb/s | 12000 e/s]
Epoch2 --> loss: 6.250000 \t(4.00s) \t[410.00 mb/s | 12500 e/s]
Total training time: 9.50s
Loading test data...
Starting evaluation (cut-off=[1, 5, 10, 20], using standard mode for tiebreaking)
Evaluation took 0.50s
Recall@1: 0.210000 MRR@1: 0.210000
Recall@5: 0.480000 MRR@5: 0.310000
Recall@10: 0.570000 MRR@10: 0.320000
Recall@20: 0.650000 MRR@20: 0.330000
"""

# Lines in the format of the PyTorch port's run.py (sample text written for this test).
PEER_OUTPUT = """\
SET   layers                  TO   [224]           (type: <class 'list'>)
Creating GRU4Rec model on device "cpu"
Loading training data...
Started training
The dataframe is not sorted by SessionId, sorting now
Data is sorted in 0.03
Created sample store with 4882 batches of samples (type=GPU)
/some/path.py:454: FutureWarning: Series.__getitem__ treating keys as positions is deprecated.
  self.P0 = torch.tensor(...)
Epoch1 --> loss: 0.480000 \t(50.00s) \t[30.00 mb/s | 1000 e/s]
Epoch2 --> loss: 0.380000 \t(51.00s) \t[29.00 mb/s | 990 e/s]
Total training time: 105.25s
Loading test data...
Using existing item ID map
Evaluation took 0.11s
Recall@1: 0.070000 MRR@1: 0.070000
Recall@5: 0.230000 MRR@5: 0.120000
Recall@10: 0.350000 MRR@10: 0.140000
Recall@20: 0.500000 MRR@20: 0.150000
"""


@pytest.mark.parametrize("text,losses,r20,m5,t", [
    (SELF_OUTPUT, [6.5, 6.25], 0.65, 0.31, 9.5),
    (PEER_OUTPUT, [0.48, 0.38], 0.5, 0.12, 105.25),
])
def test_parse_output(text, losses, r20, m5, t):
    res = fb.parse_output(text)
    assert res["epoch_losses"] == losses
    assert sorted(res["recall"]) == [1, 5, 10, 20] and sorted(res["mrr"]) == [1, 5, 10, 20]
    assert res["recall"][20] == r20 and res["mrr"][5] == m5
    assert res["recall"][1] == res["mrr"][1]
    assert res["train_time_s"] == t
    assert res["nan_error"] is False


@pytest.mark.parametrize("text,speeds,eval_s", [(SELF_OUTPUT, [400.0, 410.0], 0.5), (PEER_OUTPUT, [30.0, 29.0], 0.11)])
def test_parse_speed_and_evaluation_time(text, speeds, eval_s):
    res = fb.parse_output(text)
    assert res["mb_per_s"] == speeds and res["eval_time_s"] == eval_s


@pytest.mark.parametrize("line", ["Epoch2: NaN error!", "1: NaN error!"])
def test_parse_nan(line):
    res = fb.parse_output("Epoch1 --> loss: 6.5 \t(1s)\n" + line + "\n")
    assert res["nan_error"] is True and res["epoch_losses"] == [6.5] and res["recall"] == {}


def test_peer_params_translation():
    params = fb.config_params(fb.CONFIGS["b"])
    assert params["n_epochs"] == 2 and params["final_act"] == "elu-0.5"
    peer = fb.to_param_string(fb.to_peer_params(params))
    assert "elu_param=0.5" in peer and "final_act" not in peer and "layers=224" in peer
    assert "constrained_embedding=True" in peer and "n_epochs=2" in peer
    a = fb.to_peer_params(fb.config_params(fb.CONFIGS["a"]))
    assert "final_act" not in a and "elu_param" not in a and a["logq"] == 1.0
    c = fb.config_params(fb.CONFIGS["c"], n_epochs=1)
    assert c["constrained_embedding"] is False and c["embedding"] == 0 and c["n_epochs"] == 1
    with pytest.raises(fb.BenchError):
        fb.to_peer_params({"loss": "bpr-max", "final_act": "tanh"})


def test_acceptance_and_table():
    ours = fb.parse_output(SELF_OUTPUT)
    theirs = fb.parse_output(SELF_OUTPUT.replace("Recall@20: 0.650000", "Recall@20: 0.660000"))
    acc = fb.acceptance(fb.summarize([ours]), fb.summarize([theirs]), 0.02)
    assert acc["rel_diff"]["Recall@20"] == pytest.approx(-0.01 / 0.66) and acc["passed"]
    assert not fb.acceptance(fb.summarize([ours]), fb.summarize([theirs]), 0.01)["passed"]
    result = dict(title="t", data="d", eval_type="standard", self=dict(runs=[ours]), peer=dict(runs=[theirs]),
                  acceptance=acc)
    table = fb.format_table("a", result)
    assert "Recall@20" in table and "-1.52%" in table and "PASS" in table


def test_saved_peer_round_trip(tmp_path):
    """Port runs saved with --json and read back with --peer-json (JSON turns cut-offs into strings)."""
    params = fb.config_params(fb.CONFIGS["a"])
    runs = [fb.parse_output(PEER_OUTPUT)]
    peer = dict(params=fb.to_param_string(fb.to_peer_params(params)), runs=runs, mean=fb.summarize(runs))
    path = tmp_path / "peer.json"
    path.write_text(fb.json.dumps(dict(configs=dict(a=dict(peer=peer)), versions=dict(peer=dict(torch="x")))))
    got, saved = fb.saved_peer(path, "a", params)
    assert got["mean"]["recall"][20] == 0.5 and got["runs"][0]["mrr"][5] == 0.12
    assert saved["versions"]["peer"]["torch"] == "x"
    assert fb.acceptance(fb.summarize([fb.parse_output(SELF_OUTPUT)]), got["mean"], 0.02)["passed"] is False
    assert fb.saved_peer(path, "b", fb.config_params(fb.CONFIGS["b"]))[0] is None
    with pytest.raises(fb.BenchError):
        fb.saved_peer(path, "a", fb.config_params(fb.CONFIGS["a"], n_epochs=1))


def _runs(r20s, m20s):
    return [fb.parse_output(SELF_OUTPUT.replace("Recall@20: 0.650000", f"Recall@20: {r:.6f}")
                            .replace("MRR@20: 0.330000", f"MRR@20: {m:.6f}")) for r, m in zip(r20s, m20s)]


def test_within_the_original_spread():
    original = _runs([0.64, 0.66, 0.65], [0.32, 0.34, 0.33])
    inside = fb.summarize(_runs([0.645, 0.655], [0.335, 0.335]))
    acc = fb.within_spread(inside, original)
    assert acc["passed"] and acc["range"]["Recall@20"] == [0.64, 0.66]
    assert acc["rel_diff"]["MRR@20"] == pytest.approx(0.335 / 0.33 - 1)
    below = fb.summarize(_runs([0.639], [0.335]))
    assert not fb.within_spread(below, original)["passed"]  # Recall@20 below the lowest run


def test_within_one_percent_without_spread():
    original = _runs([0.65, 0.65], [0.33, 0.33])  # a seed that changes nothing: no spread
    assert fb.within_spread(fb.summarize(_runs([0.656], [0.327])), original)["passed"]
    assert not fb.within_spread(fb.summarize(_runs([0.657], [0.33])), original)["passed"]


def test_three_sided_table():
    ours, port, orig = _runs([0.65], [0.33]), _runs([0.66], [0.33]), _runs([0.64, 0.66], [0.32, 0.34])
    result = dict(title="t", data="d", eval_type="standard", self=dict(runs=ours), peer=dict(runs=port),
                  original=dict(runs=orig), acceptance=fb.acceptance(fb.summarize(ours), fb.summarize(port), 0.02),
                  acceptance_original=fb.within_spread(fb.summarize(ours), orig))
    table = fb.format_table("a", result)
    head, r20 = table.splitlines()[1], next(line for line in table.splitlines() if line.startswith("Recall@20"))
    assert "vs port" in head and "vs original" in head
    assert "-1.52%" in r20 and "+0.00%" in r20 and "0.6400 0.6600" in r20
    assert "vs original: Recall@20 +0.00%, MRR@20 +0.00%" in table and table.count("PASS") == 2


def test_original_command_and_environment(monkeypatch):
    params = fb.config_params(fb.CONFIGS["b"])
    cmd = fb.original_command("py38", "/orig", "tr.tsv", "te.tsv", params, "conservative")
    ps = cmd[cmd.index("-ps") + 1]
    assert "final_act=elu-0.5" in ps and "layers=224" in ps and "seed" not in ps  # the original's own names
    assert cmd[:2] == ["py38", fb.Path("/orig/run.py")] and cmd[-2:] == ["-e", "conservative"]
    monkeypatch.setenv("THEANO_FLAGS", "base_compiledir=/c")
    env = fb.original_env(43)
    assert env["GRU4REC_SEED"] == "43" and env["THEANO_FLAGS"] == "base_compiledir=/c,device=cpu,floatX=float32"
