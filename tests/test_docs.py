"""The documentation: the parameter table of docs/python.md is the one generated from
gru4rec.params.Params, and every relative link of README.md and docs/*.md resolves."""
import importlib.util
import re
from pathlib import Path

from gru4rec.params import Params, markdown_table

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


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


def _prose(text):
    """The text without fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path):
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for line in re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M).splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            title = m.group(1).strip().lower().replace("`", "")
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _links():
    for doc in DOCS:
        for m in LINK.finditer(_prose(doc.read_text(encoding="utf-8"))):
            target = m.group(1) or m.group(2)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                yield doc, target


def test_documents_have_links():
    assert len(list(_links())) > 10


def test_every_relative_link_resolves():
    broken = []
    for doc, target in _links():
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(f"{doc.relative_to(ROOT)}: {target}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken
