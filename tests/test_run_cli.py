"""run.py: the original's printed lines (spec 13.2), train -> save -> load -> evaluate, and
every input error ending in one line on stderr with exit status 1."""
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from gru4rec import cli as run
from gru4rec.synthetic import generate

from . import evalhelpers as H
from .conftest import ROOT

TRAIN = TEST = None  # synthetic train.tsv.gz and test.tsv.gz, written by the data_files fixture


@pytest.fixture(scope="module", autouse=True)
def data_files(tmp_path_factory):
    """A synthetic data set (18K training events, 900 items) as the files run.py reads."""
    global TRAIN, TEST
    d = tmp_path_factory.mktemp("synthetic")
    TRAIN, TEST = d / "train.tsv.gz", d / "test.tsv.gz"
    for df, path in zip(generate(n_sessions=5000, n_items=1000, seed=3), (TRAIN, TEST)):
        df.to_csv(path, sep="\t", index=False)


PARAMS = ("loss=cross-entropy,constrained_embedding=True,embedding=0,final_act=softmax,layers=100,"
          "batch_size=32,dropout_p_embed=0.0,dropout_p_hidden=0.4,learning_rate=0.2,momentum=0.2,"
          "n_sample=2048,sample_alpha=0.5,bpreg=0.0,logq=1.0,n_epochs=3")
NUM = r"\d+\.\d+"


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def pop_recall20():
    """Recall@20 of always recommending the 20 most popular training items."""
    train = pd.read_csv(TRAIN, sep="\t", dtype={"ItemId": str})
    test = pd.read_csv(TEST, sep="\t", dtype={"ItemId": str})
    top = set(train.ItemId.value_counts().index[:20])
    test = test[test.ItemId.isin(set(train.ItemId))].sort_values(["SessionId", "Time", "ItemId"])
    nxt = test.groupby("SessionId").ItemId.shift(-1).dropna()
    return nxt.isin(top).mean()


def check_eval_block(lines, cuts, mode):
    i = lines.index("Loading test data...")
    assert re.fullmatch(r"Loading data from TAB separated file: .*test\.tsv\.gz", lines[i + 1])
    assert lines[i + 2] == f"Starting evaluation (cut-off={cuts}, using {mode} mode for tiebreaking)"
    c = ",".join(map(str, cuts))
    assert lines[i + 3] == f"Measuring Recall@{c} and MRR@{c}"
    assert re.fullmatch(rf"Evaluation took {NUM}s", lines[i + 4])
    res = {}
    for k, cut in enumerate(cuts):
        m = re.fullmatch(rf"Recall@{cut}: (\d\.\d{{6}}) MRR@{cut}: (\d\.\d{{6}})", lines[i + 5 + k])
        assert m, lines[i + 5 + k]
        res[cut] = (float(m.group(1)), float(m.group(2)))
    return res, i + 5 + len(cuts)


@pytest.mark.slow
def test_train_save_load_evaluate(tmp_path):
    model = tmp_path / "model"
    r = cli(TRAIN, "-t", TEST, "-m", 1, 5, 10, 20, "-e", "conservative", "-ps", PARAMS, "-s", model, "-lpm")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Creating GRU4Rec model"
    assert lines[1].startswith("SET   loss") and re.fullmatch(r"SET   n_epochs +TO   3 +\(type: <class 'int'>\)", lines[15])
    order = ["Loading training data...", f"Loading data from TAB separated file: {TRAIN}", "Started training"]
    assert lines[16:19] == order
    epochs = [l for l in lines if l.startswith("Epoch")]
    assert len(epochs) == 3 and all(re.fullmatch(rf"Epoch\d --> loss: {NUM} \t\({NUM}s\) \t\[{NUM} mb/s \| \d+ e/s\]", e)
                                    for e in epochs)
    t = next(i for i, l in enumerate(lines) if l.startswith("Total training time"))
    assert re.fullmatch(rf"Total training time: {NUM}s", lines[t])
    assert lines[t + 1] == f"Saving trained model to: {model}" and model.is_file()
    res, end = check_eval_block(lines, [1, 5, 10, 20], "conservative")
    assert re.fullmatch(r"PRIMARY METRIC: 0\.\d+", lines[end]) and len(lines) == end + 1
    assert float(lines[end].split(": ")[1]) == pytest.approx(res[1][0], abs=1e-6)
    assert res[20][0] > 2 * pop_recall20(), (res, pop_recall20())

    r2 = cli(model, "-l", "-t", TEST, "-m", 1, 5, 10, 20, "-e", "conservative", "-pm", "mrr", "-lpm")
    assert r2.returncode == 0, r2.stderr
    lines2 = r2.stdout.splitlines()
    assert lines2[0] == f"Loading trained model from file: {model}"
    res2, end2 = check_eval_block(lines2, [1, 5, 10, 20], "conservative")
    assert res2 == res  # the saved model evaluates the same
    assert float(lines2[end2].split(": ")[1]) == pytest.approx(res[1][1], abs=1e-6)


# errors ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "small.npz"
    H.small_model("softmax").save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("f")
    (d / "garbage.npz").write_bytes(b"this is not a model" * 10)
    np.savez(d / "foreign.npz", a=np.arange(3))
    pd.DataFrame({"SessionId": [1, 1, 2, 2], "ItemId": ["u1", "u2", "u3", "u4"], "Time": [1, 2, 1, 2]}) \
        .to_csv(d / "unknown.tsv", sep="\t", index=False)
    pd.DataFrame({"SessionId": [1, 1, 2, 2, 3, 3], "ItemId": list("abcdab"), "Time": [1, 2, 1, 2, 1, 2]}) \
        .to_csv(d / "tiny.tsv", sep="\t", index=False)
    pd.DataFrame({"Session": [1], "ItemId": ["a"], "Time": [1]}).to_csv(d / "nosession.tsv", sep="\t", index=False)
    return d


def errors_of(capsys, argv):
    code = run.main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("argv, message", [
    (["missing.tsv", "-ps", "layers=10"], r"^ERROR\. File not found: missing\.tsv$"),
    (["{nosession}", "-ps", "layers=10"], r'^ERROR\. The column specified for session IDs "SessionId" is not in the data file'),
    (["{tiny}", "-ps", "layers=10", "-ik", "Item"], r'^ERROR\. The column specified for item IDs "Item"'),
    (["{tiny}", "-ps", "layers10"], r"^ERROR\. Malformed parameter string piece 'layers10'"),
    (["{tiny}", "-ps", "layrs=10"], r"^ERROR\. Unknown parameter: 'layrs'"),
    (["{tiny}", "-ps", "layers=ten"], r"^ERROR\. Invalid value for parameter layers"),
    (["{tiny}", "-ps", "loss=hinge"], r"^ERROR\. Invalid value for parameter loss"),
    (["{tiny}", "-ps", "layers=10", "-l"], r"^ERROR\. Exactly one of the following parameters must be provided: "
                                           r"--parameter_string, --parameter_file, --load_model$"),
    (["{tiny}"], r"^ERROR\. Exactly one of the following parameters must be provided"),
    (["{tiny}", "-ps", "layers=10", "-pf", "x.py"], r"^ERROR\. Exactly one"),
    (["{tiny}", "-pf", "no_such_params.py"], r"^ERROR\. Parameter file not found: no_such_params\.py"),
    (["{garbage}", "-l"], r"^ERROR\. .*garbage\.npz is not a readable GRU4Rec model file"),
    (["{foreign}", "-l"], r"^ERROR\. .*foreign\.npz is not a GRU4Rec model file"),
    (["{model}", "-l", "-t", "{unknown}"], r"^ERROR\. none of the test items occurs in the training data"),
    (["{model}", "-l", "-t", "missing_test.tsv"], r"^ERROR\. File not found: missing_test\.tsv$"),
    (["{tiny}", "-ps", "layers=10,batch_size=32"], r"^ERROR\. the data has 3 sessions, fewer than batch_size=32"),
    (["{tiny}", "-ps", "layers=10", "--test_against_items", "100"],
     r"^ERROR\. You musn't evaluate positive items agains less than 50000 items\.$"),
    (["{tiny}", "-ps", "layers=10", "-e", "optimistic"], r"^error: argument -e/--eval_type: invalid choice"),
    (["{tiny}", "-ps", "layers=10", "-d", "tpu"], r"^ERROR\. unknown device 'tpu'"),
])
def test_input_errors(argv, message, capsys, files, small_model_file):
    names = dict(tiny=files / "tiny.tsv", nosession=files / "nosession.tsv", garbage=files / "garbage.npz",
                 foreign=files / "foreign.npz", unknown=files / "unknown.tsv", model=small_model_file)
    argv = [a.format(**names) for a in argv]
    try:
        code, err = errors_of(capsys, argv)
    except SystemExit as e:  # argparse errors leave through Parser.error
        code, err = e.code, capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(message, err.strip()), err
    assert "Traceback" not in err


def test_error_in_a_real_process_has_no_traceback(files):
    r = cli(files / "garbage.npz", "-l")
    assert r.returncode == 1
    assert r.stderr.strip().startswith("ERROR.") and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    r = cli(files / "tiny.tsv", "-ps", "layers=10", "-e", "optimistic")
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_against_most_popular_items(tmp_path, capsys):
    train, test = H.events()
    train.to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    test.head(2000).to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    code = run.main([str(tmp_path / "train.tsv"), "-ps", "layers=8,n_epochs=1,n_sample=16,batch_size=16",
                     "-t", str(tmp_path / "test.tsv"), "--test_against_items", "50000", "-m", "20"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    n_items = train.ItemId.nunique()
    assert f"WARNING! Targets are ranked against the {n_items} most popular training items only, " \
           "not against every item; the results are not comparable with full evaluation." in out
    assert re.fullmatch(r"Recall@20: \d\.\d{6} MRR@20: \d\.\d{6}", out[-1])
