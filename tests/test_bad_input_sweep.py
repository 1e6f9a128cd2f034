"""Issue 17: the six kinds of bad input that got through, swept across the whole interface.

* every float parameter (and activation argument) with nan, inf and -inf, through parameter
  strings, parameter files, the constructor, set_params, run.py -ps/-pf and paropt (-fp and
  the space's range ends);
* every path argument missing, a directory, or unreadable/unwritable, through run.py,
  paropt.py, leave_one_out, synthetic and the Python API;
* every item id type (int, str, float, float with NaN, mixed) through every reader (TSV,
  TSV.gz, parquet, pickle, a DataFrame): one canonical text form, so 5, 5.0 and "5" match;
* model files whose metadata disagrees with their arrays;
* a save interrupted by an exception, SIGINT, SIGTERM or SIGKILL leaves no temporary file.

CLI cases: exit status 1, one line on stderr naming the problem, no traceback, no training.
API cases: ValueError (DataError, ModelFileError, ModelSaveError) naming the problem.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gru4rec import DataError, GRU4Rec, serialization
from gru4rec import cli as run
from gru4rec import leave_one_out, synthetic
from gru4rec import tuning as paropt
from gru4rec.data import check_frame, item_ids, load, prepare
from gru4rec.params import FLOAT_PARAMS

from .conftest import ROOT
from .inputhelpers import SMALL_PS, assert_refused, cli, events, paropt_cli, write_space
from .inputhelpers import study_files, tsv  # noqa: F401 (fixtures)

BAD_FLOATS = ["nan", "inf", "-inf"]
FLOAT_CASES = [(k, v) for k in FLOAT_PARAMS for v in BAD_FLOATS]


def typed(name, text):
    """The bad float as the constructor would get it (a list for adapt_params)."""
    return [float(text)] if name == "adapt_params" else float(text)


# ----------------------------------------------------------------------------------------------
# Non-finite parameter values

def test_the_sweep_covers_every_float_parameter():
    assert set(FLOAT_PARAMS) == {"dropout_p_hidden", "dropout_p_embed", "learning_rate", "momentum", "lmbd",
                                 "sample_alpha", "smoothing", "adapt_params", "grad_cap", "bpreg", "logq",
                                 "sigma", "elu_param"}


@pytest.mark.parametrize("name, value", FLOAT_CASES)
def test_non_finite_float_parameter_api(tmp_path, name, value):
    message = rf"parameter {name}: .*(finite|must be)"
    with pytest.raises(ValueError, match=message):
        GRU4Rec(**{name: typed(name, value)})
    with pytest.raises(ValueError, match=message):
        GRU4Rec().set_params(**{name: value})
    with pytest.raises(ValueError, match=message):
        GRU4Rec.from_param_string(f"{name}={value}")
    pf = tmp_path / "params.py"
    pf.write_text(f"from collections import OrderedDict\ngru4rec_params = OrderedDict([({name!r}, {value!r})])\n")
    with pytest.raises(ValueError, match=message):
        GRU4Rec.from_param_file(pf)


@pytest.mark.parametrize("name, value", FLOAT_CASES)
def test_non_finite_float_parameter_run_py(capsys, tsv, tmp_path, name, value):
    train = tsv("train.tsv", events())
    code, out, err = cli(capsys, run, [train, "-ps", f"{SMALL_PS},{name}={value}"])
    assert_refused(code, out, err, f"parameter {name}")
    pf = tmp_path / "params.py"
    literal = {"inf": "1e999", "-inf": "-1e999", "nan": "'nan'"}[value]  # a literal file: no float('nan')
    pf.write_text(f"from collections import OrderedDict\ngru4rec_params = OrderedDict([('layers', 4), "
                  f"({name!r}, {literal})])\n")
    code, out, err = cli(capsys, run, [train, "-pf", pf])
    assert_refused(code, out, err, f"parameter {name}")
    assert "Loading training data" not in out


@pytest.mark.parametrize("name, value", FLOAT_CASES)
def test_non_finite_float_parameter_paropt_fixed(capsys, study_files, name, value):
    space = write_space(study_files / "space.json", {"name": "layers", "dtype": "int", "values": [4, 8]})
    code, out, err = paropt_cli(capsys, study_files, "-opf", space, "-fp", f"{name}={value}", "-nt", 1)
    assert_refused(code, out, err, name)
    assert out == ""


@pytest.mark.parametrize("name, value", [(k, v) for k in FLOAT_PARAMS if k != "adapt_params" for v in BAD_FLOATS])
@pytest.mark.parametrize("end", ["low", "high"])
def test_non_finite_float_parameter_paropt_space_end(capsys, study_files, name, value, end):
    ends = [float(value), 0.5] if end == "low" else [0.1, float(value)]
    path = study_files / "space.json"
    path.write_text(json.dumps({"name": name, "dtype": "float", "values": ends}) + "\n")  # NaN, Infinity
    code, out, err = paropt_cli(capsys, study_files, "-opf", path, "-nt", 1)
    assert_refused(code, out, err, str(path), name)
    assert out == ""


@pytest.mark.parametrize("act", ["elu-1e999", "leaky-1e400", "selu-1-1e999", "selu-1e999-1"])
@pytest.mark.parametrize("name", ["final_act", "hidden_act"])
def test_non_finite_activation_argument(name, act):
    with pytest.raises(ValueError, match=rf"parameter {name}: '{act}'"):
        GRU4Rec(**{name: act})


def test_finite_values_still_accepted():
    GRU4Rec(learning_rate=1e30, lmbd=0.0, final_act="elu-0.5", hidden_act="selu-1-1.05", adapt_params=[0.9])


# ----------------------------------------------------------------------------------------------
# Paths: missing, a directory, unreadable

@pytest.fixture
def open_dir():
    """A fresh folder every user can enter (pytest's own is 0700 for root, which would hide
    unreadable files behind a missing directory for another user)."""
    d = Path(tempfile.mkdtemp(prefix="gru4rec-sweep-"))
    d.chmod(0o777)
    yield d
    for p in sorted(d.rglob("*"), reverse=True):
        p.chmod(0o755) if p.is_dir() else p.chmod(0o644)
    subprocess.run(["rm", "-rf", str(d)], check=False)


@contextlib.contextmanager
def locked(path):
    """`path` (a file or a folder) without permissions for this process. As root, permissions
    do not block, so the effective user is switched to nobody meanwhile (the real user stays
    root, which switches back)."""
    path.chmod(0o000 if path.is_file() else 0o555)
    try:
        if os.geteuid() != 0:
            yield
            return
        if not all(p.stat().st_mode & 0o001 for p in (Path.cwd(), *Path.cwd().parents)):
            pytest.skip("running as root in a folder that other users cannot enter: as nobody, "
                        "the test could not come back to it")
        try:
            os.setegid(65534)
            os.seteuid(65534)
        except OSError as e:
            pytest.skip(f"running as root and cannot switch the effective user to nobody ({e}): "
                        "permissions would not block reading")
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)
    finally:
        path.chmod(0o755 if path.is_dir() else 0o644)


def make(kind, d, name, content=None, folder=False):
    """A path of the given kind inside d: missing, folder, or unreadable (with content)."""
    p = d / name
    if kind == "folder":
        p.mkdir()
    elif kind == "unreadable":
        if folder:
            p.mkdir()
        else:
            content(p) if callable(content) else p.write_text(content or "x\n")
            p.chmod(0o644)
    return p


WORDS = {"missing": ("not found", "does not exist"), "folder": ("is a directory", "not a directory"),
         "unreadable": ("Permission denied", "not writable")}
KINDS = list(WORDS)


def assert_names_kind(err, kind, path):
    assert str(path) in err, err
    assert any(w in err for w in WORDS[kind]), err


def write_events(path):
    events().to_csv(path, sep="\t", index=False)


def maybe_locked(kind, path):
    return locked(path) if kind == "unreadable" else contextlib.nullcontext()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arg", ["train", "-t", "--history", "-pf", "-l"])
def test_run_py_input_paths(capsys, open_dir, kind, arg):
    train = open_dir / "train.tsv"
    write_events(train)
    content = {"-pf": "from collections import OrderedDict\ngru4rec_params = OrderedDict([('layers', 4)])\n",
               "-l": lambda p: p.write_bytes(b"PK\x03\x04")}.get(arg, write_events)
    bad = make(kind, open_dir, {"train": "x.tsv", "-t": "t.tsv", "--history": "h.tsv", "-pf": "p.py",
                                "-l": "m.gru4rec"}[arg], content)
    argv = {"train": [bad, "-ps", SMALL_PS], "-t": [train, "-ps", SMALL_PS, "-t", bad],
            "--history": [train, "-ps", SMALL_PS, "-t", train, "--history", bad],
            "-pf": [train, "-pf", bad], "-l": [bad, "-l"]}[arg]
    with maybe_locked(kind, bad):
        code, out, err = cli(capsys, run, argv)
    assert_refused(code, out, err)
    assert_names_kind(err, kind, bad)
    assert "Loading training data" not in out


@pytest.mark.parametrize("kind", ["missing", "folder", "unreadable"])
def test_run_py_save_path(capsys, open_dir, kind):
    train = open_dir / "train.tsv"
    write_events(train)
    folder = open_dir / "out"
    if kind != "missing":
        folder.mkdir()
    target = folder if kind == "folder" else folder / "m.gru4rec"
    with maybe_locked(kind, folder):
        code, out, err = cli(capsys, run, [train, "-ps", SMALL_PS, "-s", target])
    assert_refused(code, out, err, target)
    assert any(w in err for w in WORDS[kind]), err
    assert out == ""


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arg", ["train", "test", "-opf"])
def test_paropt_input_paths(capsys, open_dir, kind, arg):
    for name in ("tr.tsv", "va.tsv"):
        write_events(open_dir / name)
    space = write_space(open_dir / "space.json", {"name": "layers", "dtype": "int", "values": [4, 8]})
    bad = make(kind, open_dir, "bad", write_events if arg != "-opf" else space.read_text())
    argv = {"train": [bad, "va.tsv", "-opf", space], "test": ["tr.tsv", bad, "-opf", space],
            "-opf": ["tr.tsv", "va.tsv", "-opf", bad]}[arg]
    old = os.getcwd()
    os.chdir(open_dir)
    try:
        with maybe_locked(kind, bad):
            code, out, err = cli(capsys, paropt, argv + ["-nt", 1])
    finally:
        os.chdir(old)
    assert_refused(code, out, err)
    assert str(bad) in err and any(w in err for w in WORDS[kind]), err
    assert out == ""


def paropt_in(capsys, d, *argv):
    """paropt.py tr.tsv va.tsv -opf space.json ARGV -nt 1, run in d (which gets those files)."""
    for name in ("tr.tsv", "va.tsv"):
        write_events(d / name)
    write_space(d / "space.json", {"name": "layers", "dtype": "int", "values": [4, 8]})
    old = os.getcwd()
    os.chdir(d)
    try:
        return cli(capsys, paropt, ["tr.tsv", "va.tsv", "-opf", "space.json", *argv, "-nt", 1])
    finally:
        os.chdir(old)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scheme", ["sqlite:///", "journal:///"])
def test_paropt_storage_paths(capsys, open_dir, kind, scheme):
    folder = open_dir / "db"
    if kind != "missing":
        folder.mkdir()
    target = folder if kind == "folder" else folder / "s.db"
    with maybe_locked(kind, folder):
        code, out, err = paropt_in(capsys, open_dir, "--storage", f"{scheme}{target}", "--study-name", "s")
    assert_refused(code, out, err, folder)
    assert any(w in err for w in WORDS[kind]), err
    assert not list(folder.glob("*")) if folder.is_dir() else not folder.exists()


@pytest.mark.parametrize("kind", ["a file", "under a file", "unwritable"])
def test_paropt_plot_dir(capsys, open_dir, kind):
    pytest.importorskip("matplotlib")
    (open_dir / "f").write_text("x")
    (open_dir / "ro").mkdir()
    plot = {"a file": open_dir / "f", "under a file": open_dir / "f" / "plots", "unwritable": open_dir / "ro" / "p"}[kind]
    with maybe_locked("unreadable", open_dir / "ro") if kind == "unwritable" else contextlib.nullcontext():
        code, out, err = paropt_in(capsys, open_dir, "--plot", plot)
    assert_refused(code, out, err, "--plot")
    assert any(w in err for w in ("not a directory", "not writable")), err


def run_module(module, argv, capsys):
    code = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("kind", KINDS)
def test_leave_one_out_input(capsys, open_dir, kind):
    bad = make(kind, open_dir, "in.tsv", write_events)
    with maybe_locked(kind, bad):
        code, out, err = run_module(leave_one_out, [bad, open_dir / "out"], capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert_names_kind(err, kind, bad)
    assert not (open_dir / "out").exists()


@pytest.mark.parametrize("module", [leave_one_out, synthetic])
@pytest.mark.parametrize("kind", ["a file", "under a file", "unwritable"])
def test_output_folders(capsys, open_dir, module, kind):
    inp = open_dir / "in.tsv"
    write_events(inp)
    (open_dir / "ro").mkdir()
    out_dir = {"a file": inp, "under a file": inp / "out", "unwritable": open_dir / "ro" / "out"}[kind]
    argv = [inp, out_dir] if module is leave_one_out else [out_dir, "--sessions", 50, "--items", 10, "--days", 3]
    with maybe_locked("unreadable", open_dir / "ro") if kind == "unwritable" else contextlib.nullcontext():
        code, out, err = run_module(module, argv, capsys)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(out_dir) in err and any(w in err for w in ("not a directory", "not writable")), err
    assert not list((open_dir / "ro").iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_api_paths(open_dir, kind):
    data = make(kind, open_dir, "d.tsv", write_events)
    with maybe_locked(kind, data), pytest.raises(DataError) as e:
        load(data)
    assert_names_kind(str(e.value), kind, data)
    model_file = make(kind, open_dir, "m.gru4rec", lambda p: p.write_bytes(b"PK\x03\x04"))
    with maybe_locked(kind, model_file), pytest.raises(serialization.ModelFileError) as e:
        GRU4Rec.load(model_file)
    assert_names_kind(str(e.value), kind, model_file)
    pf = make(kind, open_dir, "p.py", "from collections import OrderedDict\ngru4rec_params = OrderedDict()\n")
    with maybe_locked(kind, pf), pytest.raises(ValueError) as e:
        GRU4Rec.from_param_file(pf)
    assert str(pf) in str(e.value)
    assert any(w in str(e.value) for w in ("not found", "is a directory", "Permission denied")), str(e.value)


@pytest.mark.parametrize("kind", KINDS)
def test_api_save_paths(open_dir, kind):
    folder = open_dir / "out"
    if kind != "missing":
        folder.mkdir()
    target = folder if kind == "folder" else folder / "m.gru4rec"
    with maybe_locked(kind, folder), pytest.raises(serialization.ModelSaveError) as e:
        serialization.save(target, {}, pd.Index(["a"]), {"w": np.zeros(2)})
    assert str(target) in str(e.value) and any(w in str(e.value) for w in WORDS[kind]), str(e.value)
    assert isinstance(e.value, ValueError)


# ----------------------------------------------------------------------------------------------
# Item ids: one canonical text form through every reader

@pytest.fixture(scope="module")
def trained():
    """A tiny model trained on text ids ('0'..), its test frame, and Recall@5 on it."""
    train, test = synthetic.generate(n_sessions=150, n_items=25, n_days=3, seed=3)
    model = GRU4Rec(layers=[4], n_epochs=1, batch_size=4, n_sample=0, loss="cross-entropy", final_act="softmax")
    model.fit(train, show_progress=False)
    recall = model.evaluate(test, cut_off=[5]).recall[5]
    return model, train, test, recall


ID_TYPES = ["str", "int", "float", "mixed", "float-with-NaN"]
READERS = ["tsv", "tsv.gz", "parquet", "pickle", "frame"]


def with_ids(df, kind):
    ints = df.ItemId.astype(int)
    if kind == "str":
        return df
    if kind == "int":
        return df.assign(ItemId=ints)
    if kind == "float":
        return df.assign(ItemId=ints.astype(float))
    if kind == "mixed":
        return df.assign(ItemId=pd.Series([v if i % 2 else str(v) for i, v in enumerate(ints)], dtype=object,
                                          index=df.index))
    return df.assign(ItemId=ints.astype(float).where(np.arange(len(df)) != 1))  # one NaN


def through(reader, df, d):
    """df as `reader` hands it over."""
    if reader == "frame":
        return df
    path = d / f"data.{reader}"
    if reader.startswith("tsv"):
        df.to_csv(path, sep="\t", index=False)
    elif reader == "parquet":
        pytest.importorskip("pyarrow")
        try:
            df.to_parquet(path)
        except Exception as e:  # pyarrow cannot store a column of ints and text
            pytest.skip(f"parquet cannot hold this column ({type(e).__name__})")
    else:
        df.to_pickle(path)
    return load(path)


@pytest.mark.parametrize("kind", ID_TYPES)
@pytest.mark.parametrize("reader", READERS)
def test_item_ids_evaluate(trained, tmp_path, reader, kind):
    model, _, test, recall = trained
    df = with_ids(test, kind)
    if kind == "float-with-NaN":
        with pytest.raises(DataError, match=r"'ItemId' has 1 missing \(NaN\) value"):
            model.evaluate(through(reader, df, tmp_path))
        return
    got = through(reader, df, tmp_path)
    if reader != "frame":
        assert set(got.ItemId) <= set(test.ItemId)  # files are read as canonical text
    assert model.evaluate(got, cut_off=[5]).recall[5] == recall


@pytest.mark.parametrize("kind", ID_TYPES)
@pytest.mark.parametrize("reader", READERS)
def test_item_ids_training_data(trained, tmp_path, reader, kind):
    _, train, _, _ = trained
    df = with_ids(train, kind)
    if kind == "float-with-NaN":
        with pytest.raises(DataError, match=r"'ItemId' has 1 missing \(NaN\) value"):
            prepare(through(reader, df, tmp_path), "SessionId", "ItemId", "Time")
        return
    want = prepare(train, "SessionId", "ItemId", "Time")
    got = prepare(through(reader, df, tmp_path), "SessionId", "ItemId", "Time")
    assert list(got.itemids) == list(want.itemids)
    np.testing.assert_array_equal(got.items, want.items)


@pytest.mark.parametrize("kind", ["int", "float", "mixed"])
def test_item_ids_recommend_and_sequence_eval(trained, kind):
    from gru4rec.sequence_eval import evaluate_next_item
    model, _, test, _ = trained
    session = list(test.ItemId[:3])
    want = model.recommend(session, k=5)
    conv = {"int": int, "float": float, "mixed": lambda v: v}[kind]
    got = model.recommend([conv(v) if kind != "mixed" or i % 2 else int(v) for i, v in enumerate(session)], k=5)
    pd.testing.assert_frame_equal(got, want)
    last = (test.groupby("SessionId").cumcount(ascending=False) == 0).to_numpy()
    hist, target = test[~last], test[last]
    base = evaluate_next_item(model, hist, target, cut_off=[5]).recall[5]
    other = evaluate_next_item(model, with_ids(hist, kind), with_ids(target, kind), cut_off=[5]).recall[5]
    assert other == base


def test_item_ids_canonical_form():
    assert list(item_ids([5, 5.0, "5", "5.0", np.int64(5), "007", 2.5, "a"])) == \
        ["5", "5", "5", "5", "5", "007", "2.5", "a"]
    for bad, shown in ((True, "True"), (float("inf"), "inf"), ((1, 2), "(1, 2)"), (b"x", "b'x'")):
        with pytest.raises(DataError, match=rf"'ItemId' must hold item ids as numbers or text; found .*{shown}"):
            item_ids([1, bad])


def test_model_file_ids_are_text_and_old_int_files_load(trained, tmp_path):
    model, _, test, recall = trained
    path = tmp_path / "m.gru4rec"
    model.save(path)
    z = dict(np.load(path))
    assert z["itemids"].dtype.kind == "U"
    z["itemids"] = z["itemids"].astype(np.int64)  # what earlier versions wrote for int ids
    np.savez(tmp_path / "old.npz", **z)
    old = GRU4Rec.load(tmp_path / "old.npz")
    assert list(old.itemidmap.index) == list(model.itemidmap.index)
    assert old.evaluate(with_ids(test, "int"), cut_off=[5]).recall[5] == recall


@pytest.mark.parametrize("reader", ["pickle", "frame"])
def test_mixed_session_ids_are_refused(trained, tmp_path, reader):
    model, _, test, _ = trained
    df = test.assign(SessionId=pd.Series([s if i % 2 else str(s) for i, s in enumerate(test.SessionId)],
                                         dtype=object, index=test.index))
    with pytest.raises(DataError, match=r"column 'SessionId' mixes session ids of types int, str"):
        model.evaluate(through(reader, df, tmp_path))
    with pytest.raises(DataError, match=r"'SessionId' mixes"):
        check_frame(df, "SessionId", "ItemId", "Time")


@pytest.mark.slow
def test_cli_pickle_int_ids_against_tsv_test(tmp_path, capsys):
    """The reported case: train from a pickle with integer ids, test from TSV."""
    train, test = synthetic.generate(n_sessions=150, n_items=25, n_days=3, seed=3)
    train.assign(ItemId=train.ItemId.astype(int)).to_pickle(tmp_path / "train.pickle")
    test.to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    code, out, err = cli(capsys, run, [tmp_path / "train.pickle", "-ps", "layers=4,n_epochs=1,batch_size=4,"
                                       "n_sample=0,loss=cross-entropy,final_act=softmax", "-t", tmp_path / "test.tsv",
                                       "-m", 5])
    assert code == 0, err
    recall = float(out.split("Recall@5: ")[1].split()[0])
    assert recall > 0


# ----------------------------------------------------------------------------------------------
# Model files whose metadata disagrees with their arrays

def _meta(z, change):
    meta = json.loads(z["meta"].tobytes())
    change(meta)
    return np.frombuffer(json.dumps(meta).encode(), np.uint8)


TAMPER = {
    "fewer item ids": (lambda z: z.update(itemids=z["itemids"][:-1]), r"the array \w+ has shape .*item ids"),
    "more item ids": (lambda z: z.update(itemids=np.r_[z["itemids"], ["new"]]), r"the array \w+ has shape"),
    "layer size": (lambda z: z.update(meta=_meta(z, lambda m: m["params"].update(layers=[8]))),
                   r"layers=\[8\].* need"),
    "two layers": (lambda z: z.update(meta=_meta(z, lambda m: m["params"].update(layers=[4, 4]))),
                   r"array\(s\) Wx1, Wh1, Wrz1, Bh1 .* are missing"),
    "embedding": (lambda z: z.update(meta=_meta(z, lambda m: m["params"].update(embedding=3))),
                  r"array\(s\) E .* are missing"),
    "weight shape": (lambda z: z.update(w_Wh0=np.zeros((5, 5), np.float32)), r"Wh0 has shape \(5, 5\).*need \(4, 4\)"),
    "integer weights": (lambda z: z.update(w_Wh0=np.zeros((4, 4), np.int64)), r"Wh0 holds int64"),
    "missing array": (lambda z: z.pop("w_By"), r"lacks the array\(s\) By named in its metadata"),
    "unlisted array": (lambda z: z.update(meta=_meta(z, lambda m: m["weights"].remove("By"))),
                       r"array\(s\) By .* are missing"),
    "extra array": (lambda z: z.update(w_X=np.zeros(2, np.float32), meta=_meta(z, lambda m: m["weights"].append("X"))),
                    r"unexpected array\(s\) X"),
    "no item ids": (lambda z: z.pop("itemids"), r"not a complete GRU4Rec model file"),
    "repeated item id": (lambda z: z.update(itemids=np.r_[z["itemids"][:-1], z["itemids"][:1]]),
                         r"holds the item id '\w+' more than once"),
    "no weight list": (lambda z: z.update(meta=_meta(z, lambda m: m.pop("weights"))), r"not a complete"),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_model_file_metadata_disagrees(trained, tmp_path, capsys, case):
    model, _, _, _ = trained
    model.save(tmp_path / "good.gru4rec")
    z = dict(np.load(tmp_path / "good.gru4rec"))
    change, message = TAMPER[case]
    change(z)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **z)
    with pytest.raises(serialization.ModelFileError, match=message) as e:
        GRU4Rec.load(bad)
    assert str(bad) in str(e.value)
    events().to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    code, out, err = cli(capsys, run, [bad, "-l", "-t", tmp_path / "test.tsv"])
    assert_refused(code, out, err, bad)
    assert "Loading test data" not in out


# ----------------------------------------------------------------------------------------------
# Interrupted saves

SAVER = textwrap.dedent("""
    import signal, sys, time
    # Ctrl-C raises KeyboardInterrupt, as in a terminal, also where the tests run as a background
    # job of a shell, whose children inherit SIGINT ignored (Python then installs no handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {root!r})
    import numpy as np, pandas as pd
    from gru4rec import serialization
    def slow(f, **arrays):
        f.write(b"x" * 100000)
        f.flush()
        print("WRITING", flush=True)
        for _ in range(600):  # short sleeps: a signal that lands just before a long sleep
            time.sleep(0.1)   # starts is handled only when that sleep ends (the test's timeout)
    if sys.argv[2] == "slow":
        serialization.np.savez = slow
    serialization.save(sys.argv[1], {{}}, pd.Index(["a"]), {{"w": np.zeros(2)}})
    print("SAVED", flush=True)
""")


def saver(tmp_path, how):
    script = tmp_path / "saver.py"
    script.write_text(SAVER.format(root=str(ROOT)))
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "m.gru4rec"), how],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_killed_save_leaves_no_temporary_file(tmp_path, sig):
    p = saver(tmp_path, "slow")
    try:
        assert p.stdout.readline().strip() == "WRITING"
        temps = [q.name for q in tmp_path.glob(".m.gru4rec.*.tmp")]
        assert len(temps) == 1  # the write is under way
        p.send_signal(getattr(signal, sig))
        p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == -getattr(signal, sig)
    left = list(tmp_path.glob(".m.gru4rec.*"))
    if sig == "SIGKILL":  # cannot be caught: the next save of the path removes it
        assert len(left) == 1
        p = saver(tmp_path, "fast")
        assert p.communicate(timeout=120)[0].strip() == "SAVED"
    assert not list(tmp_path.glob(".m.gru4rec.*"))
    assert not (tmp_path / "m.gru4rec").exists() or sig == "SIGKILL"


def test_an_exception_during_save_leaves_nothing(tmp_path, monkeypatch):
    def boom(f, **arrays):
        f.write(b"x" * 1000)
        raise KeyboardInterrupt
    monkeypatch.setattr(serialization.np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        serialization.save(tmp_path / "m.gru4rec", {}, pd.Index(["a"]), {"w": np.zeros(2)})
    assert not list(tmp_path.iterdir())


def test_stale_temporary_files_of_other_saves_are_kept(tmp_path):
    """Only temporary files of this path, this host and a finished process are removed."""
    host = serialization._HOST
    live = tmp_path / f".m.gru4rec.{host}.{os.getpid()}.abcdefgh.tmp"     # a save under way
    other_host = tmp_path / f".m.gru4rec.elsewhere.999999.abcdefgh.tmp"
    other_path = tmp_path / f".n.gru4rec.{host}.999999.abcdefgh.tmp"
    old_style = tmp_path / ".m.gru4rec.abcdefgh.tmp"
    recent_old_style = tmp_path / ".m.gru4rec.ijklmnop.tmp"
    dead = tmp_path / f".m.gru4rec.{host}.999999.abcdefgh.tmp"
    for p in (live, other_host, other_path, old_style, recent_old_style, dead):
        p.write_bytes(b"x")
    os.utime(old_style, (time.time() - 2 * serialization.OLD_TEMP_AGE,) * 2)
    if serialization._pid_alive(999999):
        pytest.skip("pid 999999 is running here")
    serialization.save(tmp_path / "m.gru4rec", {}, pd.Index(["a"]), {"w": np.zeros(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, other_host, other_path, recent_old_style, tmp_path / "m.gru4rec"))
