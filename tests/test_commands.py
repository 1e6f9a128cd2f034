"""The installed commands (gru4rec-run, gru4rec-paropt), `python -m gru4rec.cli`, and how
paropt starts its trials without the repository's run.py."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gru4rec
from gru4rec import tuning
from gru4rec.tuning import trials


def command(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e .)")
    return path


@pytest.mark.parametrize("name", ["gru4rec-run", "gru4rec-paropt"])
def test_console_scripts_run(name, tmp_path):
    r = subprocess.run([command(name), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: {name} ")


def test_console_script_refuses_bad_input_in_one_line(tmp_path):
    r = subprocess.run([command("gru4rec-run"), "missing.tsv", "-ps", "layers=10"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert (r.returncode, r.stderr) == (1, "ERROR. File not found: missing.tsv\n")


def test_run_module(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gru4rec.cli", "--help"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "--parameter_string" in r.stdout, r.stderr


def test_trials_run_the_package_not_a_script():
    args = tuning.parse_args(["tr", "va", "-opf", "s"])
    assert trials.Runner(args).base_command()[:3] == [sys.executable, "-m", "gru4rec.cli"]
    args = tuning.parse_args(["tr", "va", "-opf", "s", "--run-script", "other.py", "--python", "py"])
    assert trials.Runner(args).base_command()[:2] == ["py", "other.py"]


def test_trials_find_the_same_gru4rec(monkeypatch):
    """From a checkout that is not installed, the trials get its folder on PYTHONPATH; where a
    fresh interpreter finds the package anyway, PYTHONPATH stays as it is."""
    root = str(Path(gru4rec.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    monkeypatch.setattr(sys, "path", [root, "/usr/lib/python3"])  # only the script's own folder
    assert trials.trial_environment()["PYTHONPATH"] == os.pathsep.join([root, "elsewhere"])
    monkeypatch.setattr(sys, "path", ["", root])
    env = trials.trial_environment()
    assert env["PYTHONPATH"] == "elsewhere" and env["PYTHONUNBUFFERED"] == "1"
