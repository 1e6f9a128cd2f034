"""Where messages go. run.py's exact output, pinned by a golden file: train and save (-s),
evaluate (-t -m 1 5 20 -e conservative), then load (-l) and evaluate again. Scripts parse these lines, so the way
the library reports (logging, not print) must not change a byte of them; only timings, speeds
and floating-point values (which differ between CPUs) and the temporary folder are masked.
The numbers the command prints must be the ones the Python API returns for the saved model.
In a program, the library prints nothing unless asked (gru4rec.messages)."""
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gru4rec import GRU4Rec, messages
from gru4rec.synthetic import generate

from .conftest import ROOT

GOLDEN = Path(__file__).with_name("golden") / "run_cli.txt"
PARAMS = "layers=16,n_epochs=2,batch_size=16,n_sample=32,loss=bpr-max,final_act=elu-0.5,learning_rate=0.05"
CUTS = [1, 5, 20]


def cli(tmp, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), *map(str, args)], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r


def masked(text, tmp):
    """The output with the temporary folder, numbers with a fraction and events/s masked."""
    text = text.replace(str(tmp), "<TMP>")
    text = re.sub(r"\d+\.\d+(e[-+]\d+)?", "<F>", text)
    return re.sub(r"\d+ e/s", "<N> e/s", text)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(folder, [(argv, completed process)]) of the two runs, sharing one saved model."""
    tmp = tmp_path_factory.mktemp("cli_output")
    train, test = generate(n_sessions=800, n_items=300, n_days=10, seed=7)
    train.to_csv(tmp / "train.tsv", sep="\t", index=False)
    test.to_csv(tmp / "test.tsv", sep="\t", index=False)
    evaluation = ["-t", tmp / "test.tsv", "-m", *CUTS, "-e", "conservative"]
    argvs = [[tmp / "train.tsv", "-ps", PARAMS, "-s", tmp / "model.npz", *evaluation],
             [tmp / "model.npz", "-l", *evaluation]]
    return tmp, [(argv, cli(tmp, *argv)) for argv in argvs]


def transcript(tmp, results):
    parts = []
    for argv, r in results:
        parts.append("$ run.py " + " ".join(map(str, argv)))
        parts.append("--- stdout\n" + r.stdout + "--- stderr\n" + r.stderr)
    return masked("\n".join(parts), tmp)


@pytest.mark.slow
def test_output_matches_the_golden_file(runs):
    tmp, results = runs
    got = transcript(tmp, results)
    if os.environ.get("GRU4REC_WRITE_GOLDEN"):  # regenerate deliberately, then review the diff
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text()


@pytest.mark.slow
def test_printed_numbers_are_the_python_api_results(runs):
    tmp, results = runs
    test = __import__("pandas").read_csv(tmp / "test.tsv", sep="\t", dtype={"ItemId": str})
    res = GRU4Rec.load(tmp / "model.npz").evaluate(test, cut_off=CUTS, batch_size=512, mode="conservative")
    expected = [f"Recall@{c}: {res.recall[c]:.6f} MRR@{c}: {res.mrr[c]:.6f}" for c in CUTS]
    for _, r in results:
        assert r.stdout.splitlines()[-len(CUTS):] == expected


@pytest.fixture
def restore_logger():
    """The gru4rec logger as a fresh process has it, before and after the test."""
    logger = logging.getLogger("gru4rec")
    saved = logger.handlers[:], logger.level
    logger.handlers[:], logger.level = [], logging.NOTSET
    yield logger
    logger.handlers[:], logger.level = saved


def test_library_prints_only_when_asked(capsys, restore_logger):
    train, test = generate(n_sessions=300, n_items=100, n_days=5, seed=7)
    model = GRU4Rec(layers=[8], n_epochs=1, batch_size=16, n_sample=16)

    def out_of(call):
        call()
        return capsys.readouterr().out

    fit_and_evaluate = lambda: model.fit(train, show_progress=False).evaluate(test, progress=False)
    assert out_of(fit_and_evaluate) == ""  # default: INFO is not shown
    messages.to_stdout()
    shown = out_of(fit_and_evaluate).splitlines()
    assert shown[0] == "The dataframe is already sorted by SessionId, Time"
    # store_type is 'gpu' by default, but the store lives on the model's device
    # (spec 5.2: 10000000 // 16 rows)
    assert shown[1] == "Created sample store with 625000 batches of samples (type=CPU)"
    assert shown[2].startswith("Epoch1 --> loss: ")
    assert shown[3:] == ["Measuring Recall@20 and MRR@20"]
    restore_logger.setLevel(logging.WARNING)
    assert out_of(fit_and_evaluate) == ""

