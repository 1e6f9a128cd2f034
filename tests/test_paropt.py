"""paropt.py: parameter spaces, the PARAMETER SPACE block, sweeps, failed trials and shared studies
(SQLite, journal file, PostgreSQL) with run.py trials on a small synthetic data set."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from glob import glob
from pathlib import Path

import numpy as np
import pytest

from gru4rec import tuning as paropt
from gru4rec.synthetic import generate, split

from .conftest import ROOT

optuna = pytest.importorskip("optuna")

PAROPT = ROOT / "paropt.py"
FIXED = "loss=cross-entropy,final_act=softmax,constrained_embedding=True,n_epochs=1,n_sample=128,batch_size=32,logq=1.0"
TINY_SPACE = [
    {"name": "layers", "dtype": "int", "values": [16, 32], "step": 16},
    {"name": "learning_rate", "dtype": "float", "values": [0.05, 0.1], "step": 0.05},
]

def write_space(path, lines):
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return path


def run_paropt(args, cwd, env=None, timeout=300):
    return subprocess.run([sys.executable, str(PAROPT)] + [str(a) for a in args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def trials_of(storage, name):
    if isinstance(storage, str):
        storage = paropt.open_storage(storage)  # also picks the installed PostgreSQL driver
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_sequence_space_ends_make_valid_models():
    """Every end of every range and every option of the Beauty sweep's space, with the fixed
    parameters docs/sequence.md gives it, is a valid model (a sweep wastes no trial on it)."""
    from gru4rec import GRU4Rec
    space = paropt.load_space(ROOT / "paramspaces" / "gru4rec_sequence_xe_parspace.json")
    fixed = dict(loss="cross-entropy", final_act="softmax", constrained_embedding=True, adapt_params=[0.9, 0.999])
    assert {p.name for p in space} >= {"layers", "batch_size", "dropout_p_embed", "dropout_p_hidden",
                                       "learning_rate", "momentum", "adapt", "bptt", "n_sample", "sample_alpha",
                                       "logq", "n_epochs"}
    for p in space:
        for v in p.values:
            m = GRU4Rec(**fixed, **{p.name: [v] if p.name == "layers" else v})
            assert getattr(m.params, p.name) == ([v] if p.name == "layers" else v)


# ----------------------------------------------------------------------------------------------
# Parameter space files and the printed block

def test_standard_space_block_matches_readme(capsys):
    space = paropt.load_space(ROOT / "paramspaces" / "gru4rec_xe_standard_parspace.json")
    block = paropt.format_space(space).splitlines()
    # The original README's output, TABs expanded by the terminal.
    assert [l.expandtabs(8) for l in block] == [
        "-" * 80,
        "PARAMETER SPACE",
        "        PARAMETER layers         type=int        range=[64..512] (step=32)       UNIFORM scale",
        "        PARAMETER batch_size     type=int        range=[32..256] (step=16)       UNIFORM scale",
        "        PARAMETER learning_rate          type=float      range=[0.01..0.25] (step=0.005)         UNIFORM scale",
        "        PARAMETER dropout_p_embed        type=float      range=[0.0..0.5] (step=0.05)    UNIFORM scale",
        "        PARAMETER dropout_p_hidden       type=float      range=[0.0..0.7] (step=0.05)    UNIFORM scale",
        "        PARAMETER momentum       type=float      range=[0.0..0.9] (step=0.05)    UNIFORM scale",
        "        PARAMETER sample_alpha   type=float      range=[0.0..1.0] (step=0.1)     UNIFORM scale",
        "-" * 80,
    ]
    assert block[2] == "\tPARAMETER layers \t type=int \t range=[64..512] (step=32) \t UNIFORM scale"


def test_space_formats_categorical_log_and_no_step(tmp_path):
    f = write_space(tmp_path / "s.json", [
        {"name": "final_act", "dtype": "categorical", "values": ["elu-0.5", "elu-1", "linear"]},
        {"name": "learning_rate", "dtype": "float", "values": [0.001, 0.3], "log": True},
        {"name": "layers", "dtype": "int", "values": [64, 512]},
    ])
    lines = paropt.format_space(paropt.load_space(f)).splitlines()
    assert lines[2] == "\tPARAMETER final_act \t type=categorical \t options: [elu-0.5,elu-1,linear]"
    assert lines[3] == "\tPARAMETER learning_rate \t type=float \t range=[0.001..0.3] (step=N/A) \t LOG scale"
    assert lines[4] == "\tPARAMETER layers \t type=int \t range=[64..512] (step=N/A) \t UNIFORM scale"


def test_shipped_spaces_have_spec_values():
    xe = paropt.load_space(ROOT / "paramspaces" / "gru4rec_xe_standard_parspace.json")
    bpr = paropt.load_space(ROOT / "paramspaces" / "gru4rec_bprmax_standard_parspace.json")
    expect = [("layers", "int", [64, 512], 32), ("batch_size", "int", [32, 256], 16),
              ("learning_rate", "float", [0.01, 0.25], 0.005), ("dropout_p_embed", "float", [0.0, 0.5], 0.05),
              ("dropout_p_hidden", "float", [0.0, 0.7], 0.05), ("momentum", "float", [0.0, 0.9], 0.05),
              ("sample_alpha", "float", [0.0, 1.0], 0.1)]
    assert [(p.name, p.dtype, p.values, p.step) for p in xe] == expect
    assert all(p.log is False for p in xe + bpr)
    assert [(p.name, p.dtype, p.values, p.step) for p in bpr] == expect + [
        ("bpreg", "float", [0.0, 2.0], 0.05), ("final_act", "categorical", ["elu-0.5", "elu-1", "linear"], None)]


PARAMFILE_KEYS = ["loss", "constrained_embedding", "embedding", "final_act", "layers", "n_epochs", "batch_size",
                  "dropout_p_embed", "dropout_p_hidden", "learning_rate", "momentum", "n_sample", "sample_alpha",
                  "bpreg", "logq"]
PARAMFILES = {  # spec 9.3: loss, final_act, layers, batch_size, p_embed, p_hidden, lr, momentum, alpha, bpreg, logq
    "coveo_bprmax_shared_best.py": ("bpr-max", "elu-1", [512], 144, 0.35, 0.0, 0.05, 0.4, 0.2, 1.85, 0.0),
    "diginetica_bprmax_shared_best.py": ("bpr-max", "elu-1", [512], 128, 0.5, 0.3, 0.05, 0.15, 0.3, 0.9, 0.0),
    "rees46_xe_shared_best.py": ("cross-entropy", "softmax", [512], 240, 0.45, 0.0, 0.065, 0.0, 0.5, 0.0, 1.0),
    "retailrocket_bprmax_shared_best.py": ("bpr-max", "elu-0.5", [224], 80, 0.5, 0.05, 0.05, 0.4, 0.4, 1.95, 0.0),
    "rsc15_xe_shared_100_best.py": ("cross-entropy", "softmax", [100], 32, 0.0, 0.4, 0.2, 0.2, 0.5, 0.0, 1.0),
    "yoochoose_xe_shared_best.py": ("cross-entropy", "softmax", [480], 48, 0.0, 0.2, 0.07, 0.0, 0.2, 0.0, 1.0),
}


def test_beauty_paramfile_is_the_sweeps_output():
    """paramfiles/beauty_xe_best.py, as --save-best wrote it: the sequence space's parameters
    with the sweep's fixed ones, loadable by run.py -pf."""
    from gru4rec import GRU4Rec
    from gru4rec.params import load_param_file
    path = ROOT / "paramfiles" / "beauty_xe_best.py"
    assert "# paropt.py --save-best: trial " in path.read_text()
    space = paropt.load_space(ROOT / "paramspaces" / "gru4rec_sequence_xe_parspace.json")
    got = load_param_file(path)
    assert list(got)[:4] == ["loss", "final_act", "constrained_embedding", "adapt_params"]
    assert list(got)[4:] == [p.name for p in space]
    m = GRU4Rec.from_param_file(str(path))
    assert (m.params.loss, m.params.final_act, m.params.constrained_embedding) == ("cross-entropy", "softmax", True)


@pytest.mark.parametrize("name", sorted(PARAMFILES))
def test_paramfiles_of_the_spec(name):
    from gru4rec import GRU4Rec
    from gru4rec.params import load_param_file
    path = ROOT / "paramfiles" / name
    text = path.read_text()
    assert text.startswith("from collections import OrderedDict\n") and "gru4rec_params = OrderedDict([" in text
    got = load_param_file(path)
    assert list(got) == PARAMFILE_KEYS
    loss, act, layers, bs, pe, ph, lr, mom, alpha, bpreg, logq = PARAMFILES[name]
    assert got == dict(loss=loss, constrained_embedding=True, embedding=0, final_act=act, layers=layers, n_epochs=10,
                       batch_size=bs, dropout_p_embed=pe, dropout_p_hidden=ph, learning_rate=lr, momentum=mom,
                       n_sample=2048, sample_alpha=alpha, bpreg=bpreg, logq=logq)
    assert all(type(got[k]) is type(v) for k, v in [("constrained_embedding", True), ("embedding", 0),
                                                      ("n_epochs", 0), ("batch_size", 0), ("learning_rate", 0.0),
                                                      ("momentum", 0.0), ("bpreg", 0.0), ("logq", 0.0)])
    m = GRU4Rec.from_param_file(str(path))  # what run.py -pf does
    assert m.params.layers == layers and m.params.final_act == act and m.params.batch_size == bs


def test_suggestions_follow_the_space():
    f = ROOT / "paramspaces" / "gru4rec_bprmax_standard_parspace.json"
    space = paropt.load_space(f)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        t = study.ask()
        vals = {p.name: p.suggest(t) for p in space}
        study.tell(t, 0.0)
        assert vals["layers"] in range(64, 513, 32) and vals["batch_size"] in range(32, 257, 16)
        assert round(vals["learning_rate"] / 0.005, 6).is_integer() and 0.01 <= vals["learning_rate"] <= 0.25
        assert vals["final_act"] in ("elu-0.5", "elu-1", "linear")
        ps = paropt.param_string("loss=bpr-max,n_sample=2048", vals)
        assert ps.startswith("loss=bpr-max,n_sample=2048,layers=")
        assert ps.split(",")[2:] == [f"{k}={v}" for k, v in vals.items()]


@pytest.mark.parametrize("line, msg", [
    ('{"name": "layers", "dtype": "int"}', "missing key 'values'"),
    ('{"name": "layers", "dtype": "integer", "values": [1, 2]}', "must be int, float or categorical"),
    ('{"name": "layers", "dtype": "int", "values": [8, 4]}', "low > high"),
    ('{"name": "layers", "dtype": "int", "values": [1.5, 4]}', "whole numbers"),
    ('{"name": "lr", "dtype": "float", "values": [0.1, 1], "step": 0.1, "log": true}', "log scale cannot"),
    ('{"name": "lr", "dtype": "float", "values": [0.0, 1], "log": true}', "positive low end"),
    ('{"name": "lr", "dtype": "float", "values": [0.1, 1], "steps": 0.1}', "unknown key(s) steps"),
    ('{"name": "a", "dtype": "categorical", "values": ["x,y"]}', "cannot be written"),
    ('name=layers', "not valid JSON"),
])
def test_space_errors_name_the_line(tmp_path, line, msg):
    f = tmp_path / "bad.json"
    f.write_text('{"name": "momentum", "dtype": "float", "values": [0.0, 0.9], "step": 0.05}\n\n' + line + "\n")
    with pytest.raises(paropt.SpaceError) as e:
        paropt.load_space(f)
    assert f"{f} line 3:" in str(e.value) and msg in str(e.value)


def test_arguments_of_the_original():
    a = paropt.parse_args(["tr", "va", "-opf", "s.json", "-n", "200", "-fm", "1", "5", "10", "20"])
    assert a.ntrials == 200 and a.final_measure == [1, 5, 10, 20]  # -n is a prefix of -nt, as in the README
    assert (a.measure, a.primary_metric, a.eval_type, a.gru4rec_model) == (20, "recall", "standard", "gru4rec")
    assert (a.device, a.backend, a.storage, a.seed, a.n_jobs) == ("cpu", "jax", None, None, 1)
    assert (a.item_key, a.session_key, a.time_key) == ("ItemId", "SessionId", "Time")
    assert paropt.parse_args(["tr", "va", "-opf", "s", "-fm"]).final_measure == []


def test_cli_errors_are_one_line(tmp_path):
    space = write_space(tmp_path / "s.json", TINY_SPACE)
    r = run_paropt(["tr", "va", "-opf", space, "--storage", "sqlite:///x.db"], tmp_path)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "--study-name" in r.stderr
    (tmp_path / "tr").write_text("x")
    (tmp_path / "va").write_text("x")
    r = run_paropt(["tr", "va", "-opf", space, "-fp", "layers=16"], tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("ERROR.") and "layers" in r.stderr


# ----------------------------------------------------------------------------------------------
# Failed trials, with a stub run.py that misbehaves in a fixed order

STUB = textwrap.dedent("""\
    import os, sys, time
    counter = os.environ["STUB_COUNTER"]
    with open(counter, "a+") as f:
        f.seek(0)
        k = len(f.read())
        f.write(".")
    with open(os.environ["STUB_ARGV"], "a") as f:
        f.write(repr(sys.argv[1:]) + "\\n")
    ps = dict(p.split("=") for p in sys.argv[sys.argv.index("-ps") + 1].split(","))
    if "-lpm" not in sys.argv:
        print("FINAL RUN", ps["x"])
        print("Recall@1: 0.1 MRR@1: 0.1")
        sys.exit(0)
    mode = os.environ["STUB_MODES"].split(",")[k]
    print("stub trial", k, mode)
    if mode == "ok":
        print("PRIMARY METRIC: " + str(int(ps["x"]) / 1000))
        print("PRIMARY METRIC: 99.0")  # only the first one counts
    elif mode == "crash":
        sys.stdout.flush()
        os.kill(os.getpid(), 9)
    elif mode == "exit":
        print("ERROR. Invalid value for parameter x", file=sys.stderr)
        sys.exit(1)
    elif mode == "nometric":
        print("Recall@20: 0.1 MRR@20: 0.1")
    elif mode == "nan":
        print("PRIMARY METRIC: nan")
    elif mode == "hang":
        time.sleep(60)
""")


PRUNE_STUB = textwrap.dedent("""\
    import os, sys, time
    ps = dict(p.split("=") for p in sys.argv[sys.argv.index("-ps") + 1].split(","))
    x = int(ps["x"])
    if "-lpm" not in sys.argv:
        print("FINAL RUN", x)
        sys.exit(0)
    for epoch in (1, 2, 3):
        print(f"Validation ndcg@10 after epoch {epoch}: {x / 1000:.6f} (best: epoch 1)", flush=True)
        time.sleep(0.5)
    print(f"Best epoch by validation ndcg@10: 1 ({x / 1000:.6f}); the model keeps its weights")
    print(f"PRIMARY METRIC: {x / 1000}")
    open(os.path.join(os.environ["STUB_DONE"], str(x)), "w").close()
""")


def test_prune_stops_trials_below_the_median(tmp_path):
    """--prune: from the 6th trial on, a trial whose first validation value is below the
    median of the completed trials' is killed then, recorded as PRUNED with that value."""
    stub = tmp_path / "stub_run.py"
    stub.write_text(PRUNE_STUB)
    for f in ("tr.tsv", "va.tsv"):
        (tmp_path / f).write_text("SessionId\tItemId\tTime\n")
    (tmp_path / "done").mkdir()
    space = write_space(tmp_path / "s.json", [{"name": "x", "dtype": "int", "values": [1, 999]}])
    storage = f"sqlite:///{tmp_path / 'p.db'}"
    r = run_paropt(["tr.tsv", "va.tsv", "-opf", space, "--run-script", stub, "-nt", 12, "--seed", 3,
                    "--valid-every", 1, "--prune", "-pm", "ndcg", "-m", 10, "-fm", 10,
                    "--storage", storage, "--study-name", "p", "--plot", "plots"], tmp_path,
                   env=dict(os.environ, STUB_DONE=str(tmp_path / "done")))
    assert r.returncode == 0, r.stderr
    trials = sorted(trials_of(storage, "p"), key=lambda t: t.number)
    done = {int(f.name) for f in (tmp_path / "done").iterdir()}
    assert [t.state.name for t in trials[:5]] == ["COMPLETE"] * 5
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, "no trial was pruned"
    for t in trials:
        x = t.params["x"]
        if t.state.name == "PRUNED":
            earlier = [u.params["x"] for u in trials[:t.number] if u.state.name == "COMPLETE"]
            assert x < np.median(earlier) and x not in done
            assert t.user_attrs["pruned_after_epoch"] == 1 and t.value == pytest.approx(x / 1000, abs=1e-6)
        else:
            assert t.state.name == "COMPLETE" and x in done and t.value == x / 1000
    assert f"{len(pruned)} pruned" in r.stdout
    assert all(t.intermediate_values == ({1: x / 1000, 2: x / 1000, 3: x / 1000} if t.state.name == "COMPLETE"
                                         else {1: x / 1000}) for t in trials for x in [t.params["x"]])
    assert (tmp_path / "plots" / "intermediate_values.png").stat().st_size > 0  # the validation curves


def test_save_best_writes_a_param_file_with_the_chosen_epoch(tmp_path):
    """--save-best: -fp and the best trial's drawn parameters as a parameter file, n_epochs the
    epoch its validation chose; run.py -pf reads it back to the same parameters."""
    from gru4rec import GRU4Rec
    from gru4rec.params import load_param_file
    stub = tmp_path / "stub_run.py"
    stub.write_text(PRUNE_STUB.replace("(best: epoch 1)", "(best: epoch 2)")
                    .replace("Best epoch by validation ndcg@10: 1", "Best epoch by validation ndcg@10: 2"))
    for f in ("tr.tsv", "va.tsv"):
        (tmp_path / f).write_text("SessionId\tItemId\tTime\n")
    (tmp_path / "done").mkdir()
    space = write_space(tmp_path / "s.json", [{"name": "x", "dtype": "int", "values": [1, 999]}])
    fixed = "loss=cross-entropy,layers=32/16,adapt_params=0.9/0.999,n_epochs=7"
    r = run_paropt(["tr.tsv", "va.tsv", "-opf", space, "--run-script", stub, "-nt", 3, "--seed", 1, "-g", "other",
                    "-fp", fixed, "--valid-every", 1, "-pm", "ndcg", "-m", 10, "-fm", "--save-best", "best.py"],
                   tmp_path, env=dict(os.environ, STUB_DONE=str(tmp_path / "done")))
    assert r.returncode == 0, r.stderr
    best = max(int(f.name) for f in (tmp_path / "done").iterdir())
    text = (tmp_path / "best.py").read_text()
    assert f"NDCG@10 {best / 1000:.6f} on va.tsv, epoch 2 chosen by it" in text
    assert list(load_param_file(tmp_path / "best.py").items()) == [
        ("loss", "cross-entropy"), ("layers", [32, 16]), ("adapt_params", [0.9, 0.999]), ("x", best),
        ("n_epochs", 2)]
    assert not list(tmp_path.glob(".best.py*"))  # written atomically: no temporary file left


def test_enqueued_trials_run_first(tmp_path):
    stub = tmp_path / "stub_run.py"
    stub.write_text(PRUNE_STUB)
    for f in ("tr.tsv", "va.tsv"):
        (tmp_path / f).write_text("SessionId\tItemId\tTime\n")
    (tmp_path / "done").mkdir()
    space = write_space(tmp_path / "s.json", [{"name": "x", "dtype": "int", "values": [1, 999]},
                                              {"name": "c", "dtype": "categorical", "values": [1, "two"]}])
    storage = f"sqlite:///{tmp_path / 'e.db'}"
    r = run_paropt(["tr.tsv", "va.tsv", "-opf", space, "--run-script", stub, "-nt", 3, "--seed", 1, "-fm",
                    "--enqueue", "x=500,c=two", "--enqueue", "x=7", "--storage", storage, "--study-name", "e"],
                   tmp_path, env=dict(os.environ, STUB_DONE=str(tmp_path / "done")))
    assert r.returncode == 0, r.stderr
    trials = sorted(trials_of(storage, "e"), key=lambda t: t.number)
    assert len(trials) == 3 and trials[0].params == {"x": 500, "c": "two"} and trials[1].params["x"] == 7
    assert trials[0].user_attrs["enqueued"] == "x=500,c=two" and "enqueued" not in trials[2].user_attrs


@pytest.mark.parametrize("text, message", [
    ("x=5000", "x=5000 is outside the range [1..999]"),
    ("y=3", "y is not a parameter of the space (x)"),
    ("x=abc", "x=abc is not a number of type int"),
])
def test_enqueue_refuses_values_outside_the_space(tmp_path, text, message):
    for f in ("tr.tsv", "va.tsv"):
        (tmp_path / f).write_text("SessionId\tItemId\tTime\n")
    space = write_space(tmp_path / "s.json", [{"name": "x", "dtype": "int", "values": [1, 999]}])
    r = run_paropt(["tr.tsv", "va.tsv", "-opf", space, "-g", "other", "--enqueue", text], tmp_path)
    assert r.returncode == 1 and message in r.stderr and len(r.stderr.splitlines()) == 1


def test_save_best_refuses_a_folder_it_cannot_write(tmp_path):
    for f in ("tr.tsv", "va.tsv"):
        (tmp_path / f).write_text("SessionId\tItemId\tTime\n")
    space = write_space(tmp_path / "s.json", [{"name": "layers", "dtype": "int", "values": [8, 16]}])
    r = run_paropt(["tr.tsv", "va.tsv", "-opf", space, "--save-best", "missing/best.py"], tmp_path)
    assert r.returncode == 1 and "--save-best missing/best.py: the folder missing does not exist" in r.stderr


def test_prune_needs_valid_every(tmp_path):
    r = run_paropt(["tr.tsv", "va.tsv", "-opf", "s.json", "--prune"], tmp_path)
    assert r.returncode == 1 and "--prune needs --valid-every" in r.stderr


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path):
    stub = tmp_path / "stub_run.py"
    stub.write_text(STUB)
    for f in ("tr.tsv", "va.tsv"):
        (tmp_path / f).write_text("SessionId\tItemId\tTime\n")
    space = write_space(tmp_path / "s.json", [{"name": "x", "dtype": "int", "values": [1, 999]}])
    modes = ["crash", "ok", "exit", "nometric", "nan", "hang", "ok"]
    env = dict(os.environ, STUB_COUNTER=str(tmp_path / "counter"), STUB_ARGV=str(tmp_path / "argv"),
               STUB_MODES=",".join(modes))
    storage = f"sqlite:///{tmp_path / 'stub.db'}"
    r = run_paropt(["tr.tsv", "va.tsv", "-opf", space, "--run-script", stub, "-nt", len(modes), "--seed", 1,
                    "--trial-timeout", 3, "-fm", 1, 5, "-pm", "mrr", "-e", "conservative", "-m", 7,
                    "-ik", "I", "-sk", "S", "-tk", "T", "-d", "cuda:0", "--backend", "jax", "-g", "mymodel",
                    "--storage", storage, "--study-name", "stub"], tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    trials = sorted(trials_of(storage, "stub"), key=lambda t: t.number)
    states = [t.state.name for t in trials]
    assert states == ["FAIL", "COMPLETE", "FAIL", "FAIL", "FAIL", "FAIL", "COMPLETE"]
    reasons = [t.user_attrs.get("fail_reason", "") for t in trials]
    assert "signal 9" in reasons[0]
    assert reasons[2] == "run.py exited with status 1: ERROR. Invalid value for parameter x"
    assert reasons[3] == "run.py printed no PRIMARY METRIC line"
    assert reasons[4] == "PRIMARY METRIC is nan"
    assert "--trial-timeout of 3s" in reasons[5]
    assert trials[1].value == trials[1].params["x"] / 1000
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    # Child lines are echoed; the final run uses the best parameters and all -fm cut-offs.
    assert "stub trial 1 ok" in r.stdout
    assert f"Running final eval @[1, 5]:\nFINAL RUN {best.params['x']}\n" in r.stdout
    argvs = [eval(l) for l in (tmp_path / "argv").read_text().splitlines()]
    assert argvs[0][:12] == ["tr.tsv", "-t", "va.tsv", "-g", "mymodel", "-d", "cuda:0", "--backend", "jax",
                             "-ps", f"x={trials[0].params['x']}", "-m"]
    assert argvs[0][12:] == ["7", "-pm", "mrr", "-lpm", "-e", "conservative", "-ik", "I", "-sk", "S", "-tk", "T"]
    assert argvs[-1][9:] == ["-ps", f"x={best.params['x']}", "-m", "1", "5", "-e", "conservative",
                             "-ik", "I", "-sk", "S", "-tk", "T"]
    assert "SUMMARY of study stub: 7 trials (2 complete, 5 fail)" in r.stdout
    assert "Failed trials (5):" in r.stdout and "trial 4: PRIMARY METRIC is nan" in r.stdout


def test_n_jobs_runs_trials_in_parallel_threads(tmp_path):
    stub = tmp_path / "stub_run.py"
    timing = tmp_path / "times"
    stub.write_text(STUB.replace(
        'print("PRIMARY METRIC: " + str(int(ps["x"]) / 1000))',
        f't0 = time.time(); time.sleep(1.5); open({str(timing)!r}, "a").write(f"{{t0}} {{time.time()}}\\n"); '
        'print("PRIMARY METRIC: " + str(int(ps["x"]) / 1000))'))
    for f in ("tr.tsv", "va.tsv"):
        (tmp_path / f).write_text("SessionId\tItemId\tTime\n")
    space = write_space(tmp_path / "s.json", [{"name": "x", "dtype": "int", "values": [1, 999]}])
    env = dict(os.environ, STUB_COUNTER=str(tmp_path / "counter"), STUB_ARGV=str(tmp_path / "argv"),
               STUB_MODES=",".join(["ok"] * 10))
    r = run_paropt(["tr.tsv", "va.tsv", "-opf", space, "--run-script", stub, "-nt", 4, "--n-jobs", 4, "-fm"],
                   tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    spans = [tuple(map(float, l.split())) for l in timing.read_text().splitlines()]
    assert len(spans) == 4 and max(a for a, _ in spans) < min(b for _, b in spans)  # all four overlapped
    for n in range(4):  # lines of parallel trials are tagged with the trial number
        assert re.search(rf"^\[trial {n}\] PRIMARY METRIC: ", r.stdout, re.M)
    assert "4 trials (4 complete)" in r.stdout


# ----------------------------------------------------------------------------------------------
# Real trials (run.py) on synthetic data (about 4.9K training and 430 validation events)

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("paropt-data")
    train, _ = generate(n_sessions=1500, n_items=400, n_days=10, seed=5)
    for df, dst in zip(split(train, 1), ("tr.tsv", "va.tsv")):
        df.to_csv(d / dst, sep="\t", index=False)
    write_space(d / "space.json", TINY_SPACE)
    if not (ROOT / "run.py").exists():
        pytest.skip("run.py is missing")
    return d


def sweep_args(d, *extra):
    return [d / "tr.tsv", d / "va.tsv", "-opf", d / "space.json", "-fp", FIXED, "-pm", "mrr", "-m", 20,
            "-e", "conservative"] + list(extra)


@pytest.mark.slow
def test_sweep_reports_best_and_final_eval(data, tmp_path):
    r = run_paropt(sweep_args(data, "-nt", 3, "--seed", 0, "-fm", 5, 10, "--plot", tmp_path / "plots"), tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert out.startswith("-" * 80 + "\nPARAMETER SPACE\n\tPARAMETER layers \t type=int \t range=[16..32] (step=16)")
    assert out.count("PRIMARY METRIC: ") == 3 and out.count("SET   learning_rate") == 4
    metrics = [float(v) for v in re.findall(r"^PRIMARY METRIC: (\S+)$", out, re.M)]
    assert all(0 < v < 1 for v in metrics)
    assert "Running final eval @[5, 10]:" in out
    final = out.split("Running final eval @[5, 10]:")[1]
    assert re.search(r"^Recall@5: \d\.\d{6} MRR@5: \d\.\d{6}$", final, re.M)
    assert re.search(r"^Recall@10: \d\.\d{6} MRR@10: \d\.\d{6}$", final, re.M)
    # Summary: the best trial first, with its value, duration and parameters.
    m = re.search(r"Best 3 trials by MRR@20:\nrank\s+trial\s+value\s+duration\s+parameters\n"
                  r"\s+1\s+\d\s+(\d\.\d{6})\s+[\d.]+s\s+layers=(16|32),learning_rate=(\S+)\n", out)
    assert m, out[-2000:]
    assert float(m.group(1)) == pytest.approx(max(metrics), abs=1e-6)
    assert "SUMMARY of study " in out and "3 trials (3 complete)" in out
    # Plots: PNG always (matplotlib), HTML only with plotly.
    assert (tmp_path / "plots" / "optimization_history.png").stat().st_size > 0
    assert (tmp_path / "plots" / "param_importances.png").stat().st_size > 0
    try:
        import plotly  # noqa: F401
        assert (tmp_path / "plots" / "optimization_history.html").exists()
    except ImportError:
        assert "plotly is not installed" in out


@pytest.mark.slow
def test_failing_run_py_trials_do_not_stop_the_study(data, tmp_path):
    # Valid parameters that fail only on this data (more slots than sessions): a space that
    # GRU4Rec refuses outright is refused before the first trial (tests/test_bad_input.py).
    space = write_space(tmp_path / "bad.json", [{"name": "batch_size", "dtype": "categorical", "values": [100000]}])
    args = sweep_args(data, "-nt", 2, "--plot", tmp_path / "plots", "--storage", f"journal:///{tmp_path}/j.log",
                      "--study-name", "bad")
    args[args.index("-opf") + 1] = space
    args[args.index("-fp") + 1] = FIXED.replace(",batch_size=32", "")
    r = run_paropt(args, tmp_path)
    assert r.returncode == 1  # nothing completed, so there is no best to evaluate
    trials = trials_of(f"journal:///{tmp_path}/j.log", "bad")
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all(t.user_attrs["fail_reason"].startswith("run.py exited with status 1: ") for t in trials)
    assert "fewer than batch_size=100000" in trials[0].user_attrs["fail_reason"]
    assert "No trial completed" in r.stderr and "2 trials (2 fail)" in r.stdout
    assert "Skipped the optimization_history plot" in r.stdout


@pytest.mark.slow
def test_two_workers_share_a_sqlite_study(data, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = sweep_args(data, "-nt", 2, "-fm", "--storage", storage, "--study-name", "shared")
    procs = [subprocess.Popen([sys.executable, str(PAROPT)] + [str(a) for a in args] + ["--seed", str(s)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    trials = trials_of(storage, "shared")
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state.name == "COMPLETE" for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2  # both processes ran trials of the one study
    assert all(o.count("PRIMARY METRIC: ") == 2 for o, _ in outs)
    assert not any("Running final eval" in o for o, _ in outs)  # -fm without values


@pytest.mark.slow
def test_study_resumes_and_adds_trials(data, tmp_path):
    storage = f"journal:///{tmp_path / 'study.log'}"
    common = sweep_args(data, "-fm", "--storage", storage, "--study-name", "resume")
    r1 = run_paropt(common + ["-nt", 1], tmp_path)
    assert r1.returncode == 0, r1.stderr[-2000:]
    assert "1 trials (1 complete)" in r1.stdout
    r2 = run_paropt(common + ["-nt", 1], tmp_path)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert "Using an existing study" in r2.stderr
    assert "2 trials (2 complete)" in r2.stdout
    # A worker with another objective is refused instead of mixing incomparable values.
    r3 = run_paropt([a if a != 20 else 10 for a in common] + ["-nt", 1], tmp_path)
    assert r3.returncode == 1 and "different objective" in r3.stderr and "measure=20" in r3.stderr


# ----------------------------------------------------------------------------------------------
# PostgreSQL: a throwaway cluster on 127.0.0.1

def _pg_bindir():
    dirs = sorted(glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(re.sub(r"\D", "", p.split("/")[-2]) or 0))
    dirs = [d for d in dirs if os.path.exists(f"{d}/initdb") and os.path.exists(f"{d}/pg_ctl")]
    if dirs:
        return dirs[-1]
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return str(Path(initdb).parent)
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    pytest.importorskip("psycopg2", reason="psycopg2 missing (run .ci/postgres.sh)")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found (run .ci/postgres.sh)")
    as_user = []
    base = tempfile.mkdtemp(prefix="paropt-pg-")  # not tmp_path: the server user must reach it
    if os.geteuid() == 0:  # initdb refuses to run as root
        import pwd
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log, port = f"{base}/data", f"{base}/server.log", _free_port()
    pg_ctl = as_user + [f"{bindir}/pg_ctl", "-D", data]
    started = False
    try:
        r = subprocess.run(as_user + [f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
                                      "-E", "UTF8", "--no-sync"], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"initdb failed: {r.stderr.strip()[-500:]}")
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        r = subprocess.run(pg_ctl + ["-l", log, "-w", "-t", "60", "-o", opts, "start"], capture_output=True, text=True)
        started = r.returncode == 0
        if not started:
            tail = Path(log).read_text()[-800:] if os.path.exists(log) else r.stderr
            pytest.skip(f"PostgreSQL server did not start: {tail.strip()}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(pg_ctl + ["-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_a_postgres_study(data, tmp_path, postgres_url):
    args = sweep_args(data, "-nt", 1, "-fm", "--storage", postgres_url, "--study-name", "pg")
    procs = [subprocess.Popen([sys.executable, str(PAROPT)] + [str(a) for a in args], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    trials = trials_of(postgres_url, "pg")
    assert sorted(t.number for t in trials) == [0, 1]
    assert all(t.state.name == "COMPLETE" and 0 < t.value < 1 for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_save_best_leaves_no_temporary_file_when_the_write_fails(tmp_path, monkeypatch):
    """A failure between writing the temporary file and renaming it (a full disk, Ctrl-C)
    removes the temporary file and keeps the old parameter file."""
    from pathlib import Path
    from types import SimpleNamespace
    from gru4rec.params import load_param_file
    from gru4rec.tuning.report import save_best
    old = tmp_path / "best.py"
    old.write_text("layers = [8]\n")
    trial = SimpleNamespace(number=3, value=0.5, params={"layers": 16}, user_attrs={})
    study = SimpleNamespace(best_trial=trial, study_name="s")
    args = SimpleNamespace(valid_every=None, fixed_parameters="", primary_metric="recall", measure=20,
                           test_path="va.tsv", save_best=str(old))

    def interrupted(self, target):
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_best(study, [], args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.py"] and old.read_text() == "layers = [8]\n"
    monkeypatch.undo()
    save_best(study, [], args)
    assert dict(load_param_file(old)) == {"layers": [16]}
