"""What the bad-input tests share: small event frames and files, running a command's main
in-process, and the check that a command refused its input the way the project promises (one
line on stderr, status 1, no training, no trial)."""
import json
import os

import pandas as pd
import pytest

from gru4rec import tuning as paropt

SMALL_PS = "layers=4,n_epochs=1,batch_size=2,n_sample=0,loss=cross-entropy,final_act=softmax"


def events(n_sessions=6, times=None):
    """n_sessions sessions of 3 events over items a..e; `times` replaces the Time column."""
    items = list("abcde")
    rows = [(s, items[(s + j) % 5], 10 * s + j) for s in range(n_sessions) for j in range(3)]
    df = pd.DataFrame(rows, columns=["SessionId", "ItemId", "Time"])
    if times is not None:
        df["Time"] = list(times) + [times[-1]] * (len(df) - len(times))
    return df


@pytest.fixture
def tsv(tmp_path):
    def write(name, df):
        path = tmp_path / name
        df.to_csv(path, sep="\t", index=False)
        return path
    return write


def cli(capsys, module, argv):
    """(exit status, stdout, stderr) of module.main(argv), as the command line ends."""
    try:
        code = module.main([str(a) for a in argv])
    except SystemExit as e:  # argparse errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, out, err, *names):
    assert code == 1, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("ERROR. ") and "Traceback" not in err
    for name in names:
        assert str(name) in err, (name, err)
    assert "Started training" not in out and "Epoch1" not in out
    assert "PARAMETER SPACE" not in out and "[I " not in out  # paropt: no study, no trial


@pytest.fixture
def study_files(tmp_path, tsv):
    tsv("tr.tsv", events())
    tsv("va.tsv", events())
    return tmp_path


def write_space(path, *lines):
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return path


def paropt_cli(capsys, d, *argv):
    old = os.getcwd()
    os.chdir(d)
    try:
        return cli(capsys, paropt, ["tr.tsv", "va.tsv", *argv])
    finally:
        os.chdir(old)
