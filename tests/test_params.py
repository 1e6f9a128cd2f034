"""Parameter strings, parameter files, SET lines and value checks (spec 9)."""
import ast
import inspect
import warnings
from dataclasses import FrozenInstanceError, fields, replace

import pytest

from gru4rec import GRU4Rec
from gru4rec import params as P


def test_defaults_match_spec():
    m = GRU4Rec()
    assert m.loss == "bpr-max" and m.final_act == "linear" and m.hidden_act == "tanh"
    assert m.layers == [100] and m.n_epochs == 10 and m.batch_size == 32
    assert m.learning_rate == 0.1 and m.momentum == 0.0 and m.n_sample == 2048
    assert m.sample_alpha == 0.75 and m.bpreg == 1.0 and m.logq == 0.0 and m.adapt == "adagrad"
    assert m.constrained_embedding is False and m.time_sort is True and m.embedding == 0


def test_param_string_conversion_and_set_lines(capsys):
    m = GRU4Rec.from_param_string("layers=200/100,constrained_embedding=True,learning_rate=0.05,"
                                  "n_sample=2048,adapt_params=0.9/0.99,time_sort=0,final_act=elu-0.5")
    assert m.layers == [200, 100] and m.constrained_embedding is True
    assert m.learning_rate == 0.05 and isinstance(m.n_sample, int)
    assert m.adapt_params == [0.9, 0.99] and m.time_sort is False
    lines = capsys.readouterr().out.splitlines()
    # maxk = len('constrained_embedding') = 21, maxv = len('0.9/0.99') = 8 (given strings, spec 9.2);
    # pad2 = maxv - len(str(converted value)) + 3, at least 0
    assert lines[0] == "SET   layers" + " " * 18 + "TO   [200, 100]" + " " * 1 + "(type: <class 'list'>)"
    assert lines[1] == "SET   constrained_embedding   TO   True" + " " * 7 + "(type: <class 'bool'>)"
    assert lines[2] == "SET   learning_rate" + " " * 11 + "TO   0.05" + " " * 7 + "(type: <class 'float'>)"


def test_readme_example_line(capsys):
    GRU4Rec.from_param_string("loss=bpr-max,constrained_embedding=True,final_act=elu-0.5,layers=224")
    out = capsys.readouterr().out
    assert "SET   layers                  TO   [224]     (type: <class 'list'>)" in out


def test_layersize_resolved_after_all_pairs(capsys):
    m = GRU4Rec.from_param_string("embedding=layersize,layers=64")
    assert m.embedding == 64
    assert capsys.readouterr().out.splitlines()[-1].startswith("SET   embedding   TO   64")


@pytest.mark.parametrize("s, msg", [
    ("nosuch=1", "Unknown parameter"),
    ("layers=0", "layers"),
    ("dropout_p_hidden=1.5", "dropout_p_hidden"),
    ("n_epochs=10.5", "n_epochs"),
    ("constrained_embedding=yes", "boolean"),
    ("loss=hinge", "loss"),
    ("final_act=elu-x", "final_act"),
    ("hidden_act=softmax", "hidden_act"),
    ("batch_size=0", "batch_size"),
    ("adapt=adgrad", "adapt"),
    ("adapt=adam", "adapt_params"),
    ("learning_rate", "name=value"),
    ("momentum=-0.1", "momentum"),
])
def test_bad_values_raise_value_error(s, msg):
    with pytest.raises(ValueError, match=msg):
        GRU4Rec.from_param_string(s)


def test_constructor_checks_too():
    with pytest.raises(ValueError, match="dropout_p_hidden"):
        GRU4Rec(dropout_p_hidden=1.5)
    with pytest.raises(ValueError, match="Unknown parameter"):
        GRU4Rec(hidden_size=100)


def test_bad_pairing_warns_not_errors():
    with pytest.warns(UserWarning, match="cross-entropy"):
        GRU4Rec(loss="cross-entropy", final_act="linear")
    with pytest.warns(UserWarning, match="bpr-max"):
        GRU4Rec(loss="bpr-max", final_act="softmax")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GRU4Rec(loss="cross-entropy", final_act="softmax")
        GRU4Rec(loss="bpr-max", final_act="elu-1")


def test_elu_param_selects_final_act():
    assert P.final_act_of(replace(P.DEFAULTS, elu_param=0.5)) == "elu-0.5"
    assert P.final_act_of(replace(P.DEFAULTS, elu_param=0.0)) == "linear"
    assert P.final_act_of(replace(P.DEFAULTS, loss="cross-entropy", final_act="softmax", elu_param=1.0)) == "softmax"


def test_param_file(tmp_path, capsys):
    f = tmp_path / "p.py"
    f.write_text("from collections import OrderedDict\n"
                 "gru4rec_params = OrderedDict([('loss', 'cross-entropy'), ('final_act', 'softmax'),"
                 " ('layers', [512]), ('logq', 1.0), ('constrained_embedding', True)])\n")
    m = GRU4Rec.from_param_file(f)
    assert m.layers == [512] and m.logq == 1.0 and m.loss == "cross-entropy"
    assert capsys.readouterr().out.count("SET   ") == 5


def test_param_file_errors(tmp_path):
    with pytest.raises(ValueError, match="Parameter file not found"):
        P.load_param_file(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("params = {}\n")
    with pytest.raises(ValueError, match="gru4rec_params"):
        P.load_param_file(bad)


def test_set_params_changes_values(capsys):
    m = GRU4Rec()
    m.set_params(loss="cross-entropy", final_act="softmax", layers="64/32")
    assert m.layers == [64, 32] and m.loss == "cross-entropy"
    assert "SET   loss" in capsys.readouterr().out


def test_params_read_as_attributes_and_by_name():
    p = P.Params()
    assert list(p) == [f.name for f in fields(P.Params)] and list(p)[:3] == ["loss", "final_act", "hidden_act"]
    assert p.layers == p["layers"] == [100] and p.layers is not P.Params().layers
    assert dict(P.Params(loss="top1"))["loss"] == "top1" and p.get("hidden_size") is None
    with pytest.raises(KeyError):
        p["hidden_size"]
    with pytest.raises(FrozenInstanceError):
        p.loss = "top1"


def test_every_parameter_is_typed_and_documented():
    """Each field of Params has a type and, right below it, a docstring."""
    body = ast.parse(inspect.getsource(P.Params)).body[0].body
    documented = [node.target.id for node, doc in zip(body, body[1:]) if isinstance(node, ast.AnnAssign)
                  and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
                  and isinstance(doc.value.value, str)]
    assert documented == [f.name for f in fields(P.Params)]


def test_updated_applies_resolves_and_checks():
    p = P.updated(P.DEFAULTS, [("embedding", "layersize"), ("layers", [64, 32])])
    assert (p.embedding, p.layers, P.DEFAULTS.embedding) == (64, [64, 32], 0)
    with pytest.raises(ValueError, match="dropout_p_hidden"):
        P.updated(P.DEFAULTS, [("dropout_p_hidden", 1.5)])
