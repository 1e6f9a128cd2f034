"""Bad input is caught before any training (issue 10, parts 4-5): one line on stderr and exit
status 1 from run.py and paropt.py, a ValueError with the same message from Python.

Every case runs on small frames generated here and written to tmp_path."""
import importlib.util
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from gru4rec import DataError, GRU4Rec, serialization
from gru4rec import cli as run
from gru4rec import tuning as paropt
from gru4rec.data import check_frame, load, prepare, time_values
from gru4rec.params import load_param_file

from . import evalhelpers as H
from .inputhelpers import SMALL_PS, assert_refused, cli, events, paropt_cli, write_space
from .inputhelpers import study_files, tsv  # noqa: F401 (fixtures)
from .conftest import ROOT

# ----------------------------------------------------------------------------------------------
# A non-numeric Time column

@pytest.mark.parametrize("times, bad", [
    (["abc"], "abc"),
    (["2014-04-07 10:51:09", "07/04/2014 10:51"], "07/04/2014 10:51"),  # day or month first?
    (["1", "2", "x"], "x"),
    (["2014-04-07 10:51:09+02:00", "2014-04-07 10:51:09+01:00"], "2014-04-07 10:51:09+01:00"),
    ([True, False], "True"),
    ([1.0, float("inf")], "inf"),
])
def test_time_column_must_be_numbers_or_iso_datetimes(times, bad):
    df = events(times=times)
    with pytest.raises(DataError, match=r"column 'Time' must hold numbers or ISO 8601 date-times") as e:
        check_frame(df, "SessionId", "ItemId", "Time")
    assert re.search(rf"found '?{re.escape(bad)}'?$", str(e.value)), str(e.value)
    assert isinstance(e.value, ValueError)


def test_time_column_accepts_numbers_and_datetimes():
    base = events()
    iso = base.assign(Time=pd.Timestamp("2014-04-07") + pd.to_timedelta(base.Time, unit="s"))
    text = iso.assign(Time=[t.isoformat(sep=" " if i % 2 else "T") for i, t in enumerate(iso.Time)])
    numeric_text = base.assign(Time=base.Time.astype(str).astype(object))
    want = prepare(base, "SessionId", "ItemId", "Time")
    for df in (base.assign(Time=base.Time + 0.5), iso, text, numeric_text,
               iso.assign(Time=iso.Time.dt.tz_localize("Europe/Budapest"))):
        got = prepare(df, "SessionId", "ItemId", "Time")
        np.testing.assert_array_equal(got.items, want.items)
        np.testing.assert_array_equal(got.base_order, want.base_order)
    assert pd.api.types.is_datetime64_any_dtype(time_values(text.Time, "Time"))


def test_time_column_text_is_read_as_datetimes(tmp_path, tsv):
    base = events()
    text = base.assign(Time=[str(pd.Timestamp("2014-04-07") + pd.Timedelta(seconds=int(t))) for t in base.Time])
    df = load(tsv("iso.tsv", text))
    assert pd.api.types.is_datetime64_any_dtype(df.Time)
    with pytest.raises(DataError, match=r"bad\.tsv: column 'Time' must hold .*; found 'abc'$"):
        load(tsv("bad.tsv", events(times=["abc"])))


def test_fit_and_evaluate_refuse_a_bad_time_column():
    model = H.small_model("softmax")
    train, test = H.events()
    bad = test.assign(Time=test.Time.astype(str).where(test.index != test.index[3], "yesterday"))
    with pytest.raises(DataError, match=r"column 'Time' .*found 'yesterday'$"):
        model.evaluate(bad)
    fresh = GRU4Rec(layers=[4], n_epochs=1, batch_size=2, n_sample=0)
    with pytest.raises(DataError, match=r"column 'Time' .*found 'yesterday'$"):
        fresh.fit(train.assign(Time="yesterday"))
    assert fresh.net is None  # nothing was built


def test_cli_bad_time_column(capsys, tsv):
    path = tsv("train.tsv", events(times=["noon"] * 3))
    code, out, err = cli(capsys, run, [path, "-ps", SMALL_PS])
    assert_refused(code, out, err, "train.tsv", "'Time'", "'noon'")


# ----------------------------------------------------------------------------------------------
# -s into a missing directory, -t naming a missing file: before training

def test_cli_save_into_missing_directory(capsys, tsv, tmp_path):
    path = tsv("train.tsv", events())
    target = tmp_path / "no_such_dir" / "model.gru4rec"
    code, out, err = cli(capsys, run, [path, "-ps", SMALL_PS, "-s", target])
    assert_refused(code, out, err, target)
    assert "the directory" in err and ".tmp" not in err
    assert out == ""  # refused before the model is even created


def test_cli_save_onto_a_directory(capsys, tsv, tmp_path):
    code, out, err = cli(capsys, run, [tsv("train.tsv", events()), "-ps", SMALL_PS, "-s", tmp_path])
    assert_refused(code, out, err, tmp_path, "is a directory")


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing_test.tsv", r"File not found: .*missing_test\.tsv$"),
    (lambda d: events().rename(columns={"ItemId": "Item"}).to_csv(d / "cols.tsv", sep="\t", index=False)
     or d / "cols.tsv", r'The column specified for item IDs "ItemId" is not in the data file .*cols\.tsv'),
])
def test_cli_test_file_is_checked_before_training(capsys, tsv, tmp_path, make, message):
    test = make(tmp_path)
    code, out, err = cli(capsys, run, [tsv("train.tsv", events()), "-ps", SMALL_PS, "-t", test])
    assert_refused(code, out, err, test.name)
    assert re.search(message, err.strip()), err
    assert out == ""


def test_save_error_names_the_users_path(tmp_path):
    target = tmp_path / "missing" / "m.npz"
    with pytest.raises(serialization.ModelSaveError) as e:
        serialization.save(target, {}, pd.Index(["a"]), {"w": np.zeros(2)})
    assert str(e.value) == f"Cannot save the model to {target}: the directory {target.parent} does not exist"
    assert isinstance(e.value, ValueError) and isinstance(e.value, OSError)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------
# Parameter files whose gru4rec_params is not a list of (name, value) pairs

@pytest.mark.parametrize("body, message", [
    ("OrderedDict([1, 2])", r"must be a list of \(name, value\) pairs, got the item 1 "),
    ("OrderedDict(5)", r"must be a list of \(name, value\) pairs, got int 5 "),
    ("OrderedDict('layers')", r"must be a list of \(name, value\) pairs, got str 'layers' "),
    ("OrderedDict([('layers', 1, 2)])", r"got the item \('layers', 1, 2\)"),
    ("OrderedDict([(1, 2)])", r"parameter names must be strings, got 1 "),
])
def test_param_file_pairs(tmp_path, capsys, tsv, body, message):
    pf = tmp_path / "params.py"
    pf.write_text(f"from collections import OrderedDict\ngru4rec_params = {body}\n")
    with pytest.raises(ValueError, match=message):
        load_param_file(pf)
    code, out, err = cli(capsys, run, [tsv("train.tsv", events()), "-pf", pf])
    assert_refused(code, out, err, pf)
    assert re.search(message, err), err


def test_param_file_pairs_still_accepted(tmp_path):
    pf = tmp_path / "params.py"
    pf.write_text("from collections import OrderedDict\n"
                  "gru4rec_params = OrderedDict([('layers', [8]), ['n_epochs', 2]])\n")
    assert list(load_param_file(pf).items()) == [("layers", [8]), ("n_epochs", 2)]


# ----------------------------------------------------------------------------------------------
# -l on a file that is no model; model file permissions

def test_load_of_a_text_file(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("SessionId\tItemId\tTime\n1\ta\t1\n")
    with pytest.raises(serialization.ModelFileError, match="is not a readable GRU4Rec model file "
                                                           r"\(it is not an \.npz archive") as e:
        GRU4Rec.load(path)
    assert "pickle" not in str(e.value)
    code, out, err = cli(capsys, run, [path, "-l"])
    assert_refused(code, out, err, path, "not an .npz archive")
    assert "pickle" not in err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_models_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        serialization.save(tmp_path / "m.npz", {}, pd.Index(["a"]), {"w": np.zeros(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == mode


def test_saving_over_a_model_keeps_its_permissions(tmp_path):
    path = tmp_path / "m.npz"
    serialization.save(path, {}, pd.Index(["a"]), {"w": np.zeros(2)})
    path.chmod(0o640)
    serialization.save(path, {}, pd.Index(["a"]), {"w": np.ones(2)})
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left


def test_trained_model_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        H.small_model("softmax").save(tmp_path / "model.gru4rec")
    finally:
        os.umask(old)
    assert (tmp_path / "model.gru4rec").stat().st_mode & 0o777 == 0o644


# ----------------------------------------------------------------------------------------------
# Empty recommendations

def test_recommend_with_only_unknown_items_warns_and_is_empty():
    model = H.small_model("softmax")
    with pytest.warns(UserWarning, match=r"none of the 2 session item\(s\) is known to the model "
                                         r"\(e\.g\. 'no-such-item'\)"):
        rec = model.recommend(["no-such-item", "other"], k=5)
    assert rec.empty and list(rec.columns) == ["ItemId", "Score"]
    known = model.itemidmap.index[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty session or k=0: empty, and no warning
        assert model.recommend([], k=5).empty
        assert model.recommend([known], k=0).empty
        assert len(model.recommend(["no-such-item", known], k=5)) == 5


# ----------------------------------------------------------------------------------------------
# paropt.py: refused before the first trial

OK_SPACE = {"name": "layers", "dtype": "int", "values": [16, 32], "step": 16}


@pytest.mark.parametrize("line, fixed, names", [
    ({"name": "layrs", "dtype": "int", "values": [16, 32]}, "", ["Unknown parameter: 'layrs'"]),
    ({"name": "dropout_p_hidden", "dtype": "float", "values": [0.0, 1.0], "step": 0.1}, "",
     ["dropout_p_hidden=1.0", "high end of [0.0, 1.0]", "must be in [0, 1)"]),
    ({"name": "learning_rate", "dtype": "float", "values": [0.0, 0.1]}, "",
     ["learning_rate=0.0", "low end", "must be > 0"]),
    ({"name": "hidden_act", "dtype": "categorical", "values": ["tanh", "bogus"]}, "",
     ["hidden_act=bogus", "option 'bogus'"]),
    ({"name": "layers", "dtype": "categorical", "values": [16, "big"]}, "", ["layers", "'big'"]),
    (OK_SPACE, "batch_size=0", ["-fp 'batch_size=0'", "batch_size: 0"]),
    (OK_SPACE, "bogus=1", ["-fp bogus=1", "Unknown parameter: 'bogus'"]),
])
def test_paropt_refuses_a_space_gru4rec_refuses(capsys, study_files, line, fixed, names):
    space = write_space(study_files / "space.json", line)
    code, out, err = paropt_cli(capsys, study_files, "-opf", space, "-fp", fixed, "-nt", 1)
    assert_refused(code, out, err, *names)
    assert out == ""


def test_paropt_space_check_accepts_valid_spaces(capsys, study_files):
    fixed = "loss=bpr-max,constrained_embedding=True,n_sample=2048,n_epochs=10,embedding=layersize"
    space = paropt.load_space(ROOT / "paramspaces" / "gru4rec_bprmax_standard_parspace.json")
    paropt.check_space(space, fixed, "bprmax")
    # the grid's top below `high` is what counts: 0.9, not 1.0, with step 0.3
    paropt.check_space([paropt.Param("dropout_p_hidden", "float", [0.0, 1.0], 0.3)], "", "s")
    # an option that is fine with some draw of the others is not refused
    paropt.check_space([paropt.Param("adapt", "categorical", ["adagrad", "adam"]),
                        paropt.Param("adapt_params", "categorical", ["", "0.9/0.999"])], "", "s")


def test_paropt_space_is_not_checked_for_another_model(study_files):
    args = paropt.parse_args(["tr", "va", "-opf", "s", "-g", "mymodel"])
    assert not paropt.checks_gru4rec_params(args)
    args = paropt.parse_args(["tr", "va", "-opf", "s", "--run-script", str(study_files / "stub.py")])
    assert not paropt.checks_gru4rec_params(args)
    assert paropt.checks_gru4rec_params(paropt.parse_args(["tr", "va", "-opf", "s"]))


@pytest.mark.parametrize("storage, names", [
    ("mysql://user:secret@db/studies", ["mysql://user:***@db/studies", "PyMySQL", "mysqlclient"]),
    ("mysql+pymysql://user:secret@db/studies", ["pip install PyMySQL"]),
    ("redis://db", ["Unsupported --storage URL redis://db", "sqlite:///", "journal:///"]),
    ("journal://{d}/missing/dir/x.log", ["journal://", "the directory {d}/missing/dir does not exist"]),
    ("sqlite:///{d}/missing/dir/x.db", ["sqlite:///", "the directory {d}/missing/dir does not exist"]),
])
def test_paropt_storage_errors(capsys, study_files, storage, names):
    if "mysql" in storage and importlib.util.find_spec("pymysql" if "pymysql" in storage else "MySQLdb"):
        pytest.skip("the MySQL driver is installed")
    space = write_space(study_files / "space.json", OK_SPACE)
    storage = storage.format(d=study_files)
    code, out, err = paropt_cli(capsys, study_files, "-opf", space, "--storage", storage, "--study-name", "s")
    assert_refused(code, out, err, *[n.format(d=study_files) for n in names])
    assert "secret" not in err and "psycopg2" not in err
    assert not (study_files / "missing").exists()  # nothing created


def test_paropt_open_storage_refuses_a_missing_journal_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        paropt.open_storage(f"journal:///{tmp_path}/missing/x.log")
    assert not (tmp_path / "missing").exists()


def test_paropt_plot_needs_matplotlib(capsys, study_files, monkeypatch):
    space = write_space(study_files / "space.json", OK_SPACE)
    code, out, err = paropt_cli(capsys, study_files, "-opf", space, "--plot", "tr.tsv")
    assert_refused(code, out, err, "--plot tr.tsv: not a directory")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    code, out, err = paropt_cli(capsys, study_files, "-opf", space, "--plot", study_files / "plots")
    assert_refused(code, out, err, "--plot needs matplotlib", "pip install matplotlib")
    assert not (study_files / "plots").exists()


def test_paropt_refusal_in_a_real_process(study_files):
    """End to end, without matplotlib: a fake package that cannot be imported shadows it."""
    fake = study_files / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    space = write_space(study_files / "space.json", OK_SPACE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), str(ROOT)]))
    r = subprocess.run([sys.executable, str(ROOT / "paropt.py"), "tr.tsv", "va.tsv", "-opf", space,
                        "--plot", "plots"], cwd=study_files, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.startswith("ERROR. --plot needs matplotlib") and r.stderr.count("\n") == 1
    assert not (study_files / "plots").exists()
