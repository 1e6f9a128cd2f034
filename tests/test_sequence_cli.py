"""gru4rec-run --history (the sequence-aware evaluation from the command line) and paropt
tuning on the validation target with it: on generated user histories split leave-one-out."""
import contextlib
import io
import re
import subprocess
import sys

import pandas as pd
import pytest

from gru4rec import GRU4Rec, cli
from gru4rec.leave_one_out import write
from gru4rec.sequence_eval import evaluate_next_item

from . import seqhelpers as S
from .conftest import ROOT

PARAMS = ("loss=cross-entropy,final_act=softmax,constrained_embedding=True,layers=16,batch_size=16,"
          "n_sample=16,learning_rate=0.1,momentum=0.1,n_epochs=2")
CUTS = [5, 10]
RESULT = re.compile(r"HR@(\d+): (\S+) NDCG@\d+: (\S+) MRR@\d+: (\S+)")


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    """train.tsv, valid.tsv and test.tsv of gru4rec.leave_one_out on generated histories."""
    d = tmp_path_factory.mktemp("loo")
    write(S.parts(), d)
    return d


@pytest.fixture(scope="module")
def trained(split_dir, tmp_path_factory):
    """One training run with --history (validation target) and -s; (stdout, model path)."""
    model = tmp_path_factory.mktemp("model") / "m.pickle"
    out = run_cli([split_dir / "train.tsv", "-ps", PARAMS, "-t", split_dir / "valid.tsv",
                                     "--history", "-m", *CUTS, "-pm", "ndcg", "-lpm", "-s", model])
    return out, model


def run_cli(argv):
    """cli.main in this process; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def read(path):
    return pd.read_csv(path, sep="\t", dtype={"ItemId": str})


def printed(stdout):
    """{cut-off: (HR, NDCG, MRR)} of the result lines."""
    return {int(m[1]): tuple(map(float, m.groups()[1:])) for m in map(RESULT.fullmatch, stdout.splitlines()) if m}


def assert_matches(stdout, metrics):
    got = printed(stdout)
    assert sorted(got) == CUTS
    for c in CUTS:
        assert got[c] == pytest.approx((metrics.recall[c], metrics.ndcg[c], metrics.mrr[c]), abs=1e-6)


def test_validation_lines_equal_evaluate_next_item(trained, split_dir):
    (rc, out, err), model_path = trained
    assert rc == 0, err
    lines = out.splitlines()
    i = lines.index("Measuring HR@5,10, NDCG@5,10 and MRR@5,10 from each user's history (seen items excluded)")
    assert lines[i - 1] == "Starting evaluation (cut-off=[5, 10], using standard mode for tiebreaking)"
    model = GRU4Rec.load(str(model_path))
    m = evaluate_next_item(model, read(split_dir / "train.tsv"), read(split_dir / "valid.tsv"), cut_off=CUTS)
    assert_matches(out, m)
    assert 0 < m.ndcg[5] < 1
    assert lines[-1] == f"PRIMARY METRIC: {m.ndcg[5]}"


@pytest.mark.parametrize("keep_seen", [False, True])
def test_loaded_model_on_test_target(trained, split_dir, keep_seen):
    """-l with the history train.tsv + valid.tsv; --keep-seen excludes nothing."""
    _, model_path = trained
    rc, out, err = run_cli([model_path, "-l", "-t", split_dir / "test.tsv", "--history",
                                  split_dir / "train.tsv", split_dir / "valid.tsv", "-m", *CUTS, "-pm", "hr", "-lpm"]
                           + (["--keep-seen"] if keep_seen else []))
    assert rc == 0, err
    model = GRU4Rec.load(str(model_path))
    history = pd.concat([read(split_dir / "train.tsv"), read(split_dir / "valid.tsv")], ignore_index=True)
    m = evaluate_next_item(model, history, read(split_dir / "test.tsv"), cut_off=CUTS, exclude_seen=not keep_seen)
    assert_matches(out, m)
    assert out.splitlines()[-1] == f"PRIMARY METRIC: {m.recall[5]}"
    other = evaluate_next_item(model, history, read(split_dir / "test.tsv"), cut_off=CUTS, exclude_seen=keep_seen)
    assert other.mrr[10] != m.mrr[10]


@pytest.mark.parametrize("extra, message", [
    (["--history", "missing.tsv"], "File not found"),
    (["--keep-seen"], "--keep-seen needs --history"),
    (["--history", "--test_against_items", "60000"], "--test_against_items cannot be used with --history"),
])
def test_bad_input_before_training(split_dir, extra, message):
    rc, out, err = run_cli([split_dir / "train.tsv", "-ps", PARAMS, "-t", split_dir / "valid.tsv", *extra])
    assert rc == 1
    assert len(err.splitlines()) == 1 and message in err
    assert "Started training" not in out


def test_loaded_model_needs_named_history(trained, split_dir):
    rc, _, err = run_cli([trained[1], "-l", "-t", split_dir / "test.tsv", "--history"])
    assert rc == 1 and "--load_model" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_paropt_tunes_on_validation_target(split_dir, tmp_path):
    """Two one-epoch trials ranking valid.tsv from train.tsv, by NDCG@10; the best is reported
    and the final run evaluates the same way."""
    space = tmp_path / "space.json"
    space.write_text('{"name": "layers", "dtype": "int", "values": [8, 16], "step": 8}\n'
                     '{"name": "learning_rate", "dtype": "float", "values": [0.05, 0.2], "step": 0.05}\n')
    fixed = "loss=cross-entropy,final_act=softmax,constrained_embedding=True,batch_size=16,n_sample=16,n_epochs=1"
    r = subprocess.run([sys.executable, str(ROOT / "paropt.py"), split_dir / "train.tsv", split_dir / "valid.tsv",
                        "-opf", space, "-fp", fixed, "-pm", "ndcg", "-m", "10", "-nt", "2", "-fm", "10",
                        "--history", "--seed", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Measuring HR@10, NDCG@10 and MRR@10 from each user's history") == 3
    assert "SUMMARY of study" in r.stdout and "2 trials (2 complete)" in r.stdout
    assert "Best 2 trials by NDCG@10:" in r.stdout


def test_paropt_refuses_missing_history(split_dir, tmp_path):
    from gru4rec.tuning import cli as paropt
    space = tmp_path / "space.json"
    space.write_text('{"name": "layers", "dtype": "int", "values": [8, 16], "step": 8}\n')
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = paropt.main([str(split_dir / "train.tsv"), str(split_dir / "valid.tsv"), "-opf", str(space),
                          "--history", str(tmp_path / "nope.tsv")])
    assert rc == 1 and "The history" in err.getvalue()
