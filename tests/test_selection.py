"""Choosing the epoch by validation: gru4rec.selection.BestEpoch through fit(callback=...),
gru4rec-run --valid/--valid-every, and paropt trials that choose their epochs, on generated
data."""
import contextlib
import io
import re
import subprocess
import sys

import numpy as np
import pytest

from gru4rec import GRU4Rec, cli
from gru4rec.leave_one_out import write
from gru4rec.selection import BestEpoch

from . import seqhelpers as S
from .conftest import ROOT

SMALL = dict(loss="cross-entropy", final_act="softmax", constrained_embedding=True, layers=[8],
             batch_size=16, n_sample=16)


def weights_equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("every, scores, measured, best", [
    (1, [0.1, 0.5, 0.3, 0.2], [1, 2, 3, 4], 2),
    (1, [0.4, 0.4, 0.1, 0.0], [1, 2, 3, 4], 1),  # a tie keeps the earlier epoch
    (3, [0.2, 0.7], [3, 4], 4),                  # every 3rd epoch and the last
])
def test_best_epoch_restores_that_epochs_weights(synthetic_train, every, scores, measured, best):
    model = GRU4Rec(n_epochs=4, **SMALL)
    snapshots, calls = {}, iter(scores)

    def score(m):
        return next(calls)

    selector = BestEpoch(model, score, every)

    def callback(record):
        snapshots[record.epoch] = model.net.weights()
        selector(record)

    model.fit(synthetic_train, callback=callback)
    assert [e for e, _ in selector.curve] == measured
    assert [v for _, v in selector.curve] == scores
    assert selector.epoch == best and selector.value == max(scores)
    assert not weights_equal(model.net.weights(), snapshots[best]) or best == 4
    selector.restore()
    assert weights_equal(model.net.weights(), snapshots[best])


def test_restored_model_scores_its_best_value(synthetic_data):
    """What the selector measured at the best epoch is what the restored model gives."""
    train, test = synthetic_data
    model = GRU4Rec(n_epochs=3, **SMALL)
    selector = BestEpoch(model, lambda m: m.evaluate(test, cut_off=[20]).mrr[20])
    model.fit(train, callback=selector)
    selector.restore()
    assert model.evaluate(test, cut_off=[20]).mrr[20] == selector.value


def test_best_epoch_checks():
    with pytest.raises(ValueError, match="every"):
        BestEpoch(GRU4Rec(), lambda m: 0.0, every=0)
    with pytest.raises(ValueError, match="callback"):
        BestEpoch(GRU4Rec(), lambda m: 0.0).restore()


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("loo")
    write(S.parts(), d)
    return d


PARAMS = "loss=cross-entropy,final_act=softmax,constrained_embedding=True,layers=16,batch_size=16,n_sample=16,n_epochs=3"
VALID_LINE = re.compile(r"Validation ndcg@10 after epoch (\d+): (\S+) \(best: epoch (\d+)\)")


def test_cli_chooses_the_epoch_on_validation(split_dir):
    """Sequence-aware: the printed curve, the chosen epoch, and the final evaluation of the
    validation file by the kept model equal to the best validation value."""
    rc, out, err = run_cli([split_dir / "train.tsv", "-ps", PARAMS, "-t", split_dir / "valid.tsv", "--history",
                            "--valid", split_dir / "valid.tsv", "--valid-every", "1", "-m", "10", "-pm", "ndcg",
                            "-lpm"])
    assert rc == 0, err
    curve = [(int(e), float(v)) for e, v, _ in VALID_LINE.findall(out)]
    assert [e for e, _ in curve] == [1, 2, 3]
    best_epoch, best_value = max(curve, key=lambda c: (c[1], -c[0]))
    assert f"Best epoch by validation ndcg@10: {best_epoch} ({best_value:.6f})" in out
    final = float(re.search(r"PRIMARY METRIC: (\S+)", out)[1])
    assert final == pytest.approx(best_value, abs=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--valid-every", "1"], "go together"),
    (["--valid", "VALID"], "go together"),
    (["--valid", "VALID", "--valid-every", "0"], ">= 1"),
    (["--valid", "MISSING", "--valid-every", "1"], "not found"),
])
def test_cli_refuses_bad_selection_arguments(split_dir, extra, message):
    extra = [str(split_dir / "valid.tsv") if a == "VALID" else str(split_dir / "nope.tsv") if a == "MISSING" else a
             for a in extra]
    rc, out, err = run_cli([split_dir / "train.tsv", "-ps", PARAMS, "-t", split_dir / "valid.tsv", *extra])
    assert rc == 1 and message in err and len(err.splitlines()) == 1
    assert "Started training" not in out


def test_cli_without_test_file_reports_the_best_validation_value(split_dir):
    """-lpm without -t: the best epoch's validation value is the PRIMARY METRIC (what paropt's
    trials read), and no evaluation runs after training."""
    rc, out, err = run_cli([split_dir / "train.tsv", "-ps", PARAMS, "--history", "--valid", split_dir / "valid.tsv",
                            "--valid-every", "1", "-m", "10", "-pm", "ndcg", "-lpm"])
    assert rc == 0, err
    curve = [float(v) for _, v, _ in VALID_LINE.findall(out)]
    assert float(re.search(r"PRIMARY METRIC: (\S+)", out)[1]) == pytest.approx(max(curve), abs=1e-6)
    assert "Starting evaluation" not in out


def test_cli_refuses_valid_with_load(split_dir, tmp_path):
    rc, _, err = run_cli([tmp_path / "m.pickle", "-l", "-t", split_dir / "valid.tsv",
                          "--valid", split_dir / "valid.tsv", "--valid-every", "1"])
    assert rc == 1 and "--load_model" in err


@pytest.mark.slow
def test_paropt_sweep_with_full_negatives_and_epoch_choice(split_dir, tmp_path):
    """The Beauty sweep's command on generated histories: the sequence space's kinds of
    parameters (full and sampled negatives, Adam and Adagrad, bptt, epochs), every trial
    choosing its epoch on the validation target."""
    space = tmp_path / "space.json"
    space.write_text('{"name": "negatives", "dtype": "categorical", "values": ["sampled", "full"]}\n'
                     '{"name": "adapt", "dtype": "categorical", "values": ["adagrad", "adam"]}\n'
                     '{"name": "bptt", "dtype": "categorical", "values": [1, 2]}\n'
                     '{"name": "n_epochs", "dtype": "int", "values": [1, 2], "step": 1}\n')
    fixed = ("loss=cross-entropy,final_act=softmax,constrained_embedding=True,layers=8,batch_size=16,"
             "n_sample=16,adapt_params=0.9/0.999,learning_rate=0.05")
    r = subprocess.run([sys.executable, str(ROOT / "paropt.py"), split_dir / "train.tsv", split_dir / "valid.tsv",
                        "-opf", space, "-fp", fixed, "-pm", "ndcg", "-m", "10", "-nt", "3", "-fm", "5", "10",
                        "--history", "--valid-every", "1", "--seed", "3", "--storage",
                        f"sqlite:///{tmp_path / 'study.db'}", "--study-name", "s"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "3 trials (3 complete)" in r.stdout
    assert r.stdout.count("Best epoch by validation ndcg@10:") == 4  # 3 trials and the final run
    trials_out, final_out = r.stdout.split("Running final eval @[5, 10]:")
    assert "Starting evaluation" not in trials_out  # a trial's value is its best validation value
    assert "HR@10:" in final_out
    import optuna
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    for t in study.trials:
        assert 1 <= t.user_attrs["best_epoch"] <= t.params["n_epochs"]
        assert f"Validation ndcg@10 after epoch {t.user_attrs['best_epoch']}: {t.value:.6f}" in trials_out
    assert re.search(r"rank\s+trial\s+value\s+duration\s+epoch\s+parameters", r.stdout)
