"""Parameter strings, parameter files, SET lines and value checks (spec 9)."""
import ast
import inspect
import logging
import warnings
from dataclasses import FrozenInstanceError, fields, replace

import pytest

from gru4rec import GRU4Rec
from gru4rec import params as P


@pytest.fixture
def logged(caplog):
    """The gru4rec messages (SET lines) logged so far in the test, one a line."""
    caplog.set_level(logging.INFO, logger="gru4rec")
    return lambda: "\n".join(caplog.messages)


def test_defaults_match_spec():
    p = GRU4Rec().params
    assert p.loss == "bpr-max" and p.final_act == "linear" and p.hidden_act == "tanh"
    assert p.layers == [100] and p.n_epochs == 10 and p.batch_size == 32
    assert p.learning_rate == 0.1 and p.momentum == 0.0 and p.n_sample == 2048
    assert p.sample_alpha == 0.75 and p.bpreg == 1.0 and p.logq == 0.0 and p.adapt == "adagrad"
    assert p.constrained_embedding is False and p.time_sort is True and p.embedding == 0


def test_signature_lists_every_parameter_with_its_default():
    """GRU4Rec's keywords are written out for IDEs and help(); they must stay the Params fields,
    in order, with the same defaults (lists given as tuples), followed by the run settings."""
    sig = inspect.signature(GRU4Rec).parameters
    assert all(a.kind is inspect.Parameter.KEYWORD_ONLY for a in sig.values())
    names = list(sig)
    assert names == [f.name for f in fields(P.Params)] + ["device", "backend", "steps_per_call", "fused_ops",
                                                            "precision"]
    for name in P.DEFAULTS:
        default = sig[name].default
        assert (list(default) if isinstance(default, tuple) else default) == P.DEFAULTS[name], name
        assert type(P.convert(name, default)) is type(P.DEFAULTS[name]), name


def test_help_has_a_line_per_parameter():
    doc = GRU4Rec.__doc__
    for name, default, meaning in P.field_meanings():
        assert f"    {name}={default!r}: {meaning[:20]}" in doc, name
    assert "    bptt=1: Truncated backpropagation through time: bptt=k trains" in doc
    assert "    layers=[100]: GRU layer sizes, bottom first ('100/100' in a parameter string)." in doc


def test_parameters_are_read_from_params_only():
    assert not hasattr(GRU4Rec(), "layers")  # one way: model.params.layers


def test_param_string_conversion_and_set_lines(logged):
    m = GRU4Rec.from_param_string("layers=200/100,constrained_embedding=True,learning_rate=0.05,"
                                  "n_sample=2048,adapt_params=0.9/0.99,time_sort=0,final_act=elu-0.5")
    assert m.params.layers == [200, 100] and m.params.constrained_embedding is True
    assert m.params.learning_rate == 0.05 and isinstance(m.params.n_sample, int)
    assert m.params.adapt_params == [0.9, 0.99] and m.params.time_sort is False
    lines = logged().splitlines()
    # maxk = len('constrained_embedding') = 21, maxv = len('0.9/0.99') = 8 (given strings, spec 9.2);
    # pad2 = maxv - len(str(converted value)) + 3, at least 0
    assert lines[0] == "SET   layers" + " " * 18 + "TO   [200, 100]" + " " * 1 + "(type: <class 'list'>)"
    assert lines[1] == "SET   constrained_embedding   TO   True" + " " * 7 + "(type: <class 'bool'>)"
    assert lines[2] == "SET   learning_rate" + " " * 11 + "TO   0.05" + " " * 7 + "(type: <class 'float'>)"


def test_readme_example_line(logged):
    GRU4Rec.from_param_string("loss=bpr-max,constrained_embedding=True,final_act=elu-0.5,layers=224")
    out = logged()
    assert "SET   layers                  TO   [224]     (type: <class 'list'>)" in out


def test_layersize_resolved_after_all_pairs(logged):
    m = GRU4Rec.from_param_string("embedding=layersize,layers=64")
    assert m.params.embedding == 64
    assert logged().splitlines()[-1].startswith("SET   embedding   TO   64")


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
    with pytest.raises(TypeError, match="hidden_size"):  # a keyword Python itself refuses
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


def test_param_file(tmp_path, logged):
    f = tmp_path / "p.py"
    f.write_text("from collections import OrderedDict\n"
                 "gru4rec_params = OrderedDict([('loss', 'cross-entropy'), ('final_act', 'softmax'),"
                 " ('layers', [512]), ('logq', 1.0), ('constrained_embedding', True)])\n")
    m = GRU4Rec.from_param_file(f)
    assert m.params.layers == [512] and m.params.logq == 1.0 and m.params.loss == "cross-entropy"
    assert logged().count("SET   ") == 5


def test_param_file_errors(tmp_path):
    with pytest.raises(ValueError, match="Parameter file not found"):
        P.load_param_file(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("params = {}\n")
    with pytest.raises(ValueError, match="gru4rec_params"):
        P.load_param_file(bad)


def test_set_params_changes_values(logged):
    m = GRU4Rec()
    m.set_params(loss="cross-entropy", final_act="softmax", layers="64/32")
    assert m.params.layers == [64, 32] and m.params.loss == "cross-entropy"
    assert "SET   loss" in logged()


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
