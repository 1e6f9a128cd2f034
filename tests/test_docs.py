"""The documentation: the parameter table of docs/python.md is the one generated from
gru4rec.params.Params."""
import importlib.util
from pathlib import Path

from gru4rec.params import Params, markdown_table

ROOT = Path(__file__).resolve().parent.parent


def _make_param_table():
    spec = importlib.util.spec_from_file_location("make_param_table", ROOT / "docs" / "make_param_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parameter_table_is_generated_from_params():
    mod = _make_param_table()
    _, table, _ = mod.split((ROOT / "docs" / "python.md").read_text(encoding="utf-8"))
    assert table == markdown_table(), "run: python docs/make_param_table.py"


def test_parameter_table_has_every_field_with_a_meaning():
    rows = markdown_table().splitlines()[2:]
    assert [r.split("`")[1] for r in rows] == list(Params.__dataclass_fields__)
    assert all(not r.endswith("|  |") for r in rows)
