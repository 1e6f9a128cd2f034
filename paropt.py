"""Hyperparameter optimisation of GRU4Rec with Optuna, like the original paropt.py (spec 14).

    python paropt.py TRAIN VALID -opf paramspaces/gru4rec_xe_standard_parspace.json \\
        -fp loss=cross-entropy,final_act=softmax,constrained_embedding=True,logq=1.0,n_sample=2048,n_epochs=10 \\
        -pm mrr -m 20 -fm 1 5 10 20 -e conservative -nt 200

Every trial trains in its own process (`python run.py ... -lpm`); the first
`PRIMARY METRIC: <value>` line of the child is the trial's value. A trial whose child crashes,
exits non-zero, prints no metric or a NaN is recorded as FAILED (reason in the trial's
user attribute `fail_reason`) and the study goes on.

Additions to the original interface:
  -d/--device, --backend  passed to run.py (they replace the original's -tf/--theano_flags)
  --storage URL           shared study: sqlite:///f.db, postgresql://user:pw@host/db or
                          journal:///path/f.log (default: in memory, as in the original)
  --study-name NAME       the study the workers share; re-running resumes it
  --n-jobs N              trials run in parallel threads of this process (one run.py each)
  --seed S                seed of the TPE sampler
  --plot DIR              optimisation-history and parameter-importance plots (PNG with
                          matplotlib, which --plot needs, and HTML with plotly)
  --trial-timeout S       a trial running longer than S seconds is killed and recorded as failed
  --run-script, --python  the run.py and the interpreter the trials use
-nt counts the trials this process adds (several workers add up); -fm with no values skips the
final evaluation (e.g. on all but one worker).

Input that would make every trial fail, or the end of the study, is refused before the first
trial with one line on stderr and status 1: a parameter name GRU4Rec does not know, a range
end or option outside a parameter's valid values (checked with the -fp parameters, as run.py
checks them; skipped when -g or --run-script point elsewhere), an unsupported storage URL, a
missing database driver, a sqlite/journal file in a missing directory, --plot without
matplotlib.
"""
import argparse
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

RULE = "-" * 80
METRIC_LINE = re.compile(r"^PRIMARY METRIC:\s*(\S+)")
EVAL_TYPES = ["standard", "conservative", "median", "tiebreaking"]
HERE = Path(__file__).resolve().parent


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and status 1, as run.py does
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        sys.exit(1)


def parse_args(argv):
    p = Parser(prog="paropt.py",
               description="Optimise GRU4Rec hyperparameters with Optuna; every trial runs run.py in its own process.")
    p.add_argument("path", metavar="PATH", type=str, help="training data of the optimisation (e.g. train_tr)")
    p.add_argument("test_path", metavar="TEST_PATH", type=str, help="validation data (e.g. train_valid)")
    p.add_argument("-g", "--gru4rec_model", metavar="GRFILE", type=str, default="gru4rec",
                   help="module run.py imports GRU4Rec from (default: gru4rec)")
    p.add_argument("-d", "--device", metavar="D", type=str, default="cpu",
                   help="device of the training processes, passed to run.py (default: cpu)")
    p.add_argument("--backend", type=str, default="jax", choices=["jax", "numba", "c"],
                   help="PyTensor backend of the training processes, passed to run.py (default: jax)")
    p.add_argument("-fp", "--fixed_parameters", metavar="PARAM_STRING", type=str, default="",
                   help="fixed training parameters as name=value,name=value,... (lists with '/')")
    p.add_argument("-opf", "--optuna_parameter_file", metavar="PATH", type=str, required=True,
                   help="parameter space: JSON lines with name, dtype (int/float/categorical), values, "
                        "optional step and log")
    p.add_argument("-m", "--measure", metavar="AT", type=int, nargs="?", const=20, default=20,
                   help="the single cut-off used during the optimisation (default: 20)")
    p.add_argument("-nt", "--ntrials", metavar="NT", type=int, nargs="?", const=50, default=50,
                   help="number of trials this process adds to the study (default: 50)")
    p.add_argument("-fm", "--final_measure", metavar="AT", type=int, nargs="*", default=[20],
                   help="cut-off(s) of the final run with the best parameters (default: 20); "
                        "-fm without values skips the final run")
    p.add_argument("-pm", "--primary_metric", metavar="METRIC", type=str, default="recall",
                   choices=["recall", "mrr"], help="objective: recall or mrr (default: recall)")
    p.add_argument("-e", "--eval_type", metavar="EVAL_TYPE", type=str, default="standard", choices=EVAL_TYPES,
                   help="tie handling: standard, conservative, median or tiebreaking (default: standard)")
    p.add_argument("-ik", "--item_key", metavar="IK", type=str, default="ItemId",
                   help="column of the item IDs (default: ItemId)")
    p.add_argument("-sk", "--session_key", metavar="SK", type=str, default="SessionId",
                   help="column of the session IDs (default: SessionId)")
    p.add_argument("-tk", "--time_key", metavar="TK", type=str, default="Time",
                   help="column of the timestamps (default: Time)")
    p.add_argument("--storage", metavar="URL", type=str, default=None,
                   help="Optuna storage shared by workers: sqlite:///study.db (one machine), "
                        "postgresql://user:password@host:5432/db (many machines) or journal:///path/study.log "
                        "(default: in memory)")
    p.add_argument("--study-name", metavar="NAME", type=str, default=None,
                   help="name of the study; workers with the same storage and name share it, and a re-run resumes it")
    p.add_argument("--n-jobs", metavar="N", type=int, default=1,
                   help="trials run in parallel by this process, each in its own run.py (default: 1)")
    p.add_argument("--seed", metavar="S", type=int, default=None,
                   help="seed of the TPE sampler (default: none); give each worker of a shared study its own")
    p.add_argument("--plot", metavar="DIR", type=str, default=None,
                   help="save optimisation-history and parameter-importance plots into DIR (HTML with plotly, PNG)")
    p.add_argument("--trial-timeout", metavar="SECONDS", type=float, default=None,
                   help="kill a trial's run.py after this many seconds and record the trial as failed")
    p.add_argument("--run-script", metavar="PATH", type=str, default=str(HERE / "run.py"),
                   help="the run.py the trials execute (default: the one next to paropt.py)")
    p.add_argument("--python", metavar="EXE", type=str, default=sys.executable,
                   help="interpreter of the trials (default: the one running paropt.py)")
    args = p.parse_args(argv)
    if args.measure < 1 or any(c < 1 for c in args.final_measure):
        p.error("cut-offs must be positive")
    if args.ntrials < 0:
        p.error("-nt must be >= 0")
    if args.n_jobs < 1:
        p.error("--n-jobs must be >= 1")
    if args.trial_timeout is not None and args.trial_timeout <= 0:
        p.error("--trial-timeout must be > 0")
    if args.storage is not None and not args.study_name:
        p.error("--storage needs --study-name (the name the workers share and a re-run resumes)")
    return args


# ----------------------------------------------------------------------------------------------
# Parameter space (spec 9.4)

class SpaceError(ValueError):
    pass


class Param:
    """One line of the parameter space file."""

    def __init__(self, name, dtype, values, step=None, log=False):
        self.name, self.dtype, self.values, self.step, self.log = name, dtype, values, step, log

    def suggest(self, trial):
        if self.dtype == "int":
            lo, hi = self.values
            return trial.suggest_int(self.name, int(lo), int(hi), step=int(self.step or 1), log=self.log)
        if self.dtype == "float":
            lo, hi = self.values
            return trial.suggest_float(self.name, float(lo), float(hi),
                                       step=None if self.step is None else float(self.step), log=self.log)
        return trial.suggest_categorical(self.name, self.values)

    def describe(self):
        """The line of the PARAMETER SPACE block (spec 14.2 step 1)."""
        s = f"\tPARAMETER {self.name} \t type={self.dtype}"
        if self.dtype == "categorical":
            return s + " \t options: [" + ",".join(str(v) for v in self.values) + "]"
        lo, hi = self.values
        step = "N/A" if self.step is None else self.step
        return s + f" \t range=[{lo}..{hi}] (step={step}) \t {'LOG' if self.log else 'UNIFORM'} scale"

    def as_dict(self):
        d = {"name": self.name, "dtype": self.dtype, "values": self.values}
        if self.step is not None:
            d["step"] = self.step
        if self.log:
            d["log"] = True
        return d


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_space_line(obj, where):
    """Checks one decoded JSON object and turns it into a Param; SpaceError names the line."""
    def bad(msg):
        raise SpaceError(f"{where}: {msg}")
    if not isinstance(obj, dict):
        bad("expected a JSON object like {\"name\": ..., \"dtype\": ..., \"values\": [...]}")
    unknown = set(obj) - {"name", "dtype", "values", "step", "log"}
    if unknown:
        bad(f"unknown key(s) {', '.join(sorted(unknown))} (allowed: name, dtype, values, step, log)")
    for k in ("name", "dtype", "values"):
        if k not in obj:
            bad(f"missing key {k!r}")
    name, dtype, values = obj["name"], obj["dtype"], obj["values"]
    step, log = obj.get("step"), obj.get("log", False)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        bad(f"invalid parameter name {name!r}")
    if dtype not in ("int", "float", "categorical"):
        bad(f"dtype of {name} must be int, float or categorical, not {dtype!r}")
    if not isinstance(values, list) or not values:
        bad(f"values of {name} must be a non-empty list")
    if not isinstance(log, bool):
        bad(f"log of {name} must be true or false")
    if dtype == "categorical":
        if step is not None or log:
            bad(f"step and log do not apply to the categorical parameter {name}")
        for v in values:
            if not isinstance(v, (str, int, float, bool)) or (isinstance(v, str) and ("," in v or "=" in v)):
                bad(f"option {v!r} of {name} cannot be written into a parameter string")
        if len(set(map(repr, values))) != len(values):
            bad(f"options of {name} repeat")
        return Param(name, dtype, values)
    if len(values) != 2 or not all(_number(v) for v in values):
        bad(f"values of {name} must be [low, high]")
    lo, hi = values
    if lo > hi:
        bad(f"low > high in the range of {name}")
    if dtype == "int" and not all(float(v).is_integer() for v in values):
        bad(f"the range of the int parameter {name} must hold whole numbers")
    if step is not None:
        if not _number(step) or step <= 0:
            bad(f"step of {name} must be a positive number")
        if dtype == "int" and not float(step).is_integer():
            bad(f"step of the int parameter {name} must be a whole number")
        if log and not (dtype == "int" and step == 1):
            bad(f"{name}: log scale cannot be combined with a step")
    if log and lo <= 0:
        bad(f"{name}: log scale needs a positive low end")
    return Param(name, dtype, values, step, log)


def load_space(path):
    """Reads a JSON-lines parameter space file (spec 9.4) into a list of Param."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SpaceError(f"Cannot read parameter space file {path}: {e.strerror}") from None
    space, seen = [], set()
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {i}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise SpaceError(f"{where}: not valid JSON ({e.msg}); the file needs one JSON object per line") from None
        param = parse_space_line(obj, where)
        if param.name in seen:
            raise SpaceError(f"{where}: parameter {param.name} appears twice")
        seen.add(param.name)
        space.append(param)
    if not space:
        raise SpaceError(f"Parameter space file {path} defines no parameter")
    return space


def format_space(space):
    return "\n".join([RULE, "PARAMETER SPACE"] + [p.describe() for p in space] + [RULE])


def fixed_names(fixed):
    names = []
    for piece in fixed.split(","):
        if piece.strip():
            if piece.count("=") != 1 or not piece.split("=")[0].strip():
                raise ValueError(f"Malformed -fp piece {piece!r}: expected name=value")
            names.append(piece.split("=")[0].strip())
    return names


def param_string(fixed, params):
    """-fp followed by the drawn name=value pairs (values as str(), floats unrounded as in the original)."""
    drawn = ",".join(f"{k}={v}" for k, v in params.items())
    return ",".join(s for s in (fixed.strip().strip(","), drawn) if s)


def candidates(param):
    """The extreme values a trial can draw for param, as run.py receives them (str of the drawn
    value) with a label: the low and high end of a range (the highest step below high), or
    every option of a categorical parameter."""
    if param.dtype == "categorical":
        return [(str(v), f"option {v!r}") for v in param.values]
    lo, hi = param.values
    if param.step is not None:  # the highest value on the grid, as Optuna adjusts it
        from decimal import Decimal
        d_lo, d_hi, d_step = (Decimal(str(v)) for v in (lo, hi, param.step))
        hi = float(d_lo + (d_hi - d_lo) // d_step * d_step)
    if param.dtype == "int":
        return [(str(int(lo)), f"low end of [{lo}, {param.values[1]}]"),
                (str(int(hi)), f"high end of [{lo}, {param.values[1]}]")]
    return [(str(float(lo)), f"low end of [{lo}, {param.values[1]}]"),
            (str(float(hi)), f"high end of [{lo}, {param.values[1]}]")]


def check_space(space, fixed, path, max_combinations=4096):
    """Refuses, before any trial, a parameter space or -fp that GRU4Rec would refuse in every
    trial: an unknown parameter name, a value of the wrong type, a range or option outside a
    parameter's valid values (gru4rec.params convert/validate, as run.py applies them). Each
    end of a range and each option is checked with the fixed parameters and some draw of the
    other parameters of the space; raises ValueError naming the parameter and the value."""
    import itertools
    import warnings
    try:
        from gru4rec import params as P
    except ImportError as e:  # every trial's run.py would fail the same way
        raise ValueError(f"Cannot import gru4rec to check the parameter space: {e}") from None
    fixed_pairs = []
    for k, v in P.parse_param_string(fixed):
        try:
            fixed_pairs.append((k, P.convert(k, v)))
        except ValueError as e:
            raise ValueError(f"-fp {k}={v}: {e}") from None
    cands = []
    for param in space:
        if param.name not in P.DEFAULTS:
            try:
                P.convert(param.name, None)
            except ValueError as e:  # the message run.py gives: unknown parameter, the known ones
                raise ValueError(f"Parameter space {path}: {e}") from None
        row = []
        for value, label in candidates(param):
            try:
                row.append((param.name, P.convert(param.name, value), value, label))
            except ValueError as e:
                raise ValueError(f"Parameter space {path}: {param.name} ({label}): {e}") from None
        cands.append(row)

    def problem(combo):
        """None if GRU4Rec accepts the fixed parameters with this draw, else its message."""
        p = dict(P.DEFAULTS)
        p.update(fixed_pairs)
        p.update((name, conv) for name, conv, _, _ in combo)
        if p["embedding"] == "layersize":
            p["embedding"] = p["layers"][0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                P.validate(p)
        except ValueError as e:
            return str(e)
        return None

    def first_problem(rows):
        """None if some draw of rows passes, else the message of the first draw. Beyond
        max_combinations draws nothing is refused."""
        first = None
        for combo in itertools.islice(itertools.product(*rows), max_combinations):
            msg = problem(combo)
            if msg is None:
                return None
            first = first or msg
        return first if math.prod(len(r) for r in rows) <= max_combinations else None

    for i, row in enumerate(cands):
        for cand in row:
            msg = first_problem(cands[:i] + [[cand]] + cands[i + 1:])
            if msg is None:
                continue
            name, _, value, label = cand
            if re.search(rf"\b{name}\b", msg):
                raise ValueError(f"Parameter space {path}: {name}={value} ({label}) is not valid: {msg}")
            raise ValueError(f"Every trial would fail with -fp {fixed!r}: {msg}")


def checks_gru4rec_params(args):
    """The space is checked against gru4rec's parameters when the trials run this directory's
    run.py with the gru4rec package; another -g module or --run-script may take other ones."""
    try:
        same_script = Path(args.run_script).resolve() == (HERE / "run.py").resolve()
    except OSError:
        same_script = False
    return args.gru4rec_model == "gru4rec" and same_script


# ----------------------------------------------------------------------------------------------
# Trials

class TrialFailed(Exception):
    pass


class Runner:
    """Runs run.py children, echoes their lines and keeps track of them so they can be stopped."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.children = set()
        self.prefix = args.n_jobs > 1

    def base_command(self):
        a = self.args
        return [a.python, a.run_script, a.path, "-t", a.test_path, "-g", a.gru4rec_model,
                "-d", a.device, "--backend", a.backend]

    def keys(self):
        a = self.args
        return ["-e", a.eval_type, "-ik", a.item_key, "-sk", a.session_key, "-tk", a.time_key]

    def echo(self, line, tag):
        with self.lock:
            print(f"[{tag}] {line}" if tag else line, flush=True)

    def run(self, cmd, tag=None, timeout=None):
        """Runs cmd, echoing each output line; returns (status, first metric text or None, last line, timed out)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env=env)
        with self.lock:
            self.children.add(proc)
        timer = expired = None
        if timeout:
            expired = threading.Event()

            def kill():
                expired.set()
                proc.kill()
            timer = threading.Timer(timeout, kill)
            timer.daemon = True
            timer.start()
        metric, last = None, ""
        try:
            for line in proc.stdout:
                line = line.rstrip()
                self.echo(line, tag)
                if line:
                    last = line
                if metric is None:
                    m = METRIC_LINE.match(line.strip())
                    if m:
                        metric = m.group(1)
            status = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with self.lock:
                self.children.discard(proc)
        return status, metric, last, bool(expired and expired.is_set())

    def stop_all(self):
        with self.lock:
            procs = list(self.children)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    def objective(self, space):
        a = self.args
        worker = f"{socket.gethostname()}:{os.getpid()}"

        def objective(trial):
            params = {p.name: p.suggest(trial) for p in space}
            ps = param_string(a.fixed_parameters, params)
            trial.set_user_attr("worker", worker)
            cmd = self.base_command() + ["-ps", ps, "-m", str(a.measure), "-pm", a.primary_metric, "-lpm"] + self.keys()
            tag = f"trial {trial.number}" if self.prefix else None

            def fail(reason):
                trial.set_user_attr("fail_reason", reason)
                raise TrialFailed(reason)
            try:
                status, metric, last, timed_out = self.run(cmd, tag, a.trial_timeout)
            except OSError as e:
                fail(f"could not start {a.run_script}: {e}")
            except KeyboardInterrupt:
                trial.set_user_attr("fail_reason", "interrupted")
                raise
            if timed_out:
                fail(f"killed after the --trial-timeout of {a.trial_timeout:g}s")
            if status < 0:
                fail(f"run.py was killed by signal {-status}" + (f" (last line: {last})" if last else ""))
            if status != 0:
                fail(f"run.py exited with status {status}" + (f": {last}" if last else ""))
            if metric is None:
                fail("run.py printed no PRIMARY METRIC line")
            try:
                value = float(metric)
            except ValueError:
                fail(f"unreadable PRIMARY METRIC: {metric!r}")
            if not math.isfinite(value):
                fail(f"PRIMARY METRIC is {metric}")
            return value
        return objective


# ----------------------------------------------------------------------------------------------
# Study, storage, summary, plots

def mask_url(url):
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def pick_postgres_driver(url):
    """postgresql:// (or postgres://) without a driver name: SQLAlchemy 2.1 defaults to psycopg 3;
    use psycopg2 when only that one is installed."""
    m = re.match(r"^postgres(?:ql)?://", url)
    if not m:
        return url
    import importlib.util
    driver = "psycopg2" if importlib.util.find_spec("psycopg") is None and \
        importlib.util.find_spec("psycopg2") is not None else None
    return ("postgresql+" + driver if driver else "postgresql") + "://" + url[m.end():]


STORAGES = ("sqlite:///FILE, journal:///FILE, postgresql://USER:PASSWORD@HOST:PORT/DB "
            "or mysql+pymysql://USER:PASSWORD@HOST:PORT/DB")
# dialect[+driver] -> (modules of which one must be installed, how to install one)
DRIVERS = {
    "postgresql": (("psycopg", "psycopg2"), "for PostgreSQL: pip install psycopg2-binary"),
    "postgresql+psycopg2": (("psycopg2",), "for PostgreSQL: pip install psycopg2-binary"),
    "postgresql+psycopg": (("psycopg",), "for PostgreSQL: pip install 'psycopg[binary]'"),
    "mysql": (("MySQLdb",), "for MySQL: pip install mysqlclient, or pip install PyMySQL and write mysql+pymysql://"),
    "mysql+mysqldb": (("MySQLdb",), "for MySQL: pip install mysqlclient"),
    "mysql+pymysql": (("pymysql",), "for MySQL: pip install PyMySQL"),
}


def _scheme(url):
    scheme = url.split("://", 1)[0].lower() if "://" in url else url.split(":", 1)[0].lower()
    return "postgresql" + scheme[len("postgres"):] if re.match(r"postgres(\+|$)", scheme) else scheme


def driver_hint(url):
    """How to install the database driver a storage URL needs."""
    scheme = _scheme(url)
    if scheme in DRIVERS:
        return DRIVERS[scheme][1]
    return {"postgresql": DRIVERS["postgresql"][1], "mysql": DRIVERS["mysql"][1]}.get(
        scheme.split("+")[0], "install the database driver its URL names")


def storage_file(url):
    """The file of a sqlite:// or journal: storage (None for other storages and in-memory SQLite)."""
    if url.startswith("journal:"):
        return re.sub(r"^journal:(//)?", "", url) or None
    if _scheme(url).split("+")[0] == "sqlite":
        from sqlalchemy.engine import make_url
        try:
            db = make_url(url).database
        except Exception:
            return None
        return None if not db or db == ":memory:" or db.startswith("file:") else db
    return None


def check_storage(url):
    """Refuses, with one line, a storage URL paropt cannot use: an unsupported scheme, a missing
    database driver, or a sqlite/journal file in a directory that does not exist (neither is
    created: a typo must not start a new study in the wrong place)."""
    import importlib.util
    scheme = _scheme(url)
    dialect = scheme.split("+")[0]
    if dialect not in ("sqlite", "postgresql", "mysql", "journal") or (dialect == "journal" and "+" in scheme):
        raise ValueError(f"Unsupported --storage URL {mask_url(url)}: use {STORAGES}")
    if url.startswith("journal:") and storage_file(url) is None:
        raise ValueError("journal storage needs a file: journal:///path/to/study.log")
    path = storage_file(url)
    if path is not None:
        parent = Path(path).parent
        if not parent.is_dir():
            raise ValueError(f"Cannot open the storage {mask_url(url)}: the directory {parent} does not exist")
        if Path(path).is_dir():
            raise ValueError(f"Cannot open the storage {mask_url(url)}: {path} is a directory")
    if scheme in DRIVERS:
        modules, hint = DRIVERS[scheme]
        if all(importlib.util.find_spec(m) is None for m in modules):
            raise ValueError(f"Cannot open the storage {mask_url(url)}: the database driver is missing "
                             f"({' or '.join(modules)}); {hint}")


def check_plot_dir(path):
    """--plot needs matplotlib (the PNG plots) and a directory it can create or write into."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot needs matplotlib, which is not installed: pip install matplotlib "
                         "(or pip install -e \".[plot]\"), or leave out --plot") from None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--plot {path}: not a directory")


def open_storage(url):
    """None (in memory), a journal file (journal:///path) or an RDB URL (sqlite, postgresql, mysql)."""
    import optuna
    if url is None:
        return None
    if url.startswith("journal:"):
        path = storage_file(url)
        if not path:
            raise ValueError("journal storage needs a file: journal:///path/to/study.log")
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        if not Path(path).parent.is_dir():  # as SQLite does: a missing directory is an error
            raise ValueError(f"Cannot open the storage {url}: the directory {Path(path).parent} does not exist")
        return JournalStorage(JournalFileBackend(path))
    import warnings
    url = pick_postgres_driver(url)
    engine_kwargs = None
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 300}}  # several writers wait instead of failing
    # Workers started together race to create the tables of a new database; the loser retries.
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # The heartbeat marks trials of a worker that died (RUNNING forever otherwise) as FAILED.
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                  heartbeat_interval=60, grace_period=300)
        except Exception as e:
            racing = type(e).__module__.split(".")[0] == "sqlalchemy" and any(
                m in str(e).lower() for m in ("already exists", "duplicate", "unique", "locked"))
            if not racing or attempt == 5:
                raise
            time.sleep(0.5 + random.random())


def objective_signature(args, space):
    return {"fixed_parameters": args.fixed_parameters, "measure": args.measure,
            "primary_metric": args.primary_metric, "eval_type": args.eval_type,
            "space": [p.as_dict() for p in space]}


def open_study(args, space):
    import optuna
    storage = open_storage(args.storage)
    sampler = optuna.samplers.TPESampler(seed=args.seed)
    study = optuna.create_study(storage=storage, sampler=sampler, study_name=args.study_name,
                                direction="maximize", load_if_exists=storage is not None)
    if storage is not None:
        mine = objective_signature(args, space)
        theirs = study.user_attrs.get("paropt")
        if theirs is None:
            study.set_user_attr("paropt", mine)
        else:
            diff = [k for k in ("fixed_parameters", "measure", "primary_metric", "eval_type")
                    if theirs.get(k) != mine[k]]
            if diff:
                raise ValueError(f"Study {args.study_name!r} optimises a different objective "
                                 f"({', '.join(f'{k}={theirs.get(k)!r}' for k in diff)}); "
                                 "use the same -fp/-m/-pm/-e or another --study-name")
            if theirs.get("space") != mine["space"]:
                print(f"WARNING! The parameter space differs from the one study {args.study_name!r} "
                      "was started with.", file=sys.stderr)
    return study


def completed_trials(study):
    import optuna
    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def ordered_params(trial, space):
    names = [p.name for p in space if p.name in trial.params]
    names += [k for k in trial.params if k not in names]
    return {k: trial.params[k] for k in names}


def summary(study, space, args, top=5):
    import optuna
    trials = study.get_trials(deepcopy=False)
    counts = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    done = sorted(completed_trials(study), key=lambda t: t.value, reverse=True)
    state_text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    lines = [RULE, f"SUMMARY of study {study.study_name}: {len(trials)} trials ({state_text})"]
    if done:
        metric = f"{'Recall' if args.primary_metric == 'recall' else 'MRR'}@{args.measure}"
        lines.append(f"Best {min(top, len(done))} trials by {metric}:")
        lines.append(f"{'rank':>4}  {'trial':>5}  {'value':>10}  {'duration':>9}  parameters")
        for rank, t in enumerate(done[:top], 1):
            dur = f"{t.duration.total_seconds():.1f}s" if t.duration is not None else "-"
            ps = ",".join(f"{k}={v}" for k, v in ordered_params(t, space).items())
            lines.append(f"{rank:>4}  {t.number:>5}  {t.value:>10.6f}  {dur:>9}  {ps}")
    else:
        lines.append("No trial has completed.")
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if failed:
        lines.append(f"Failed trials ({len(failed)}):")
        for t in failed[:5]:
            lines.append(f"  trial {t.number}: {t.user_attrs.get('fail_reason', 'unknown reason')}")
        if len(failed) > 5:
            lines.append(f"  ... and {len(failed) - 5} more")
    lines.append(RULE)
    return "\n".join(lines)


def save_plots(study, outdir):
    """Optimisation history and parameter importances as HTML (plotly) and PNG (matplotlib)."""
    import warnings
    import optuna
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    n_done = len(completed_trials(study))
    written = []
    try:
        import plotly  # noqa: F401
        html = True
    except ImportError:
        html = False
        print("plotly is not installed: writing the PNG plots only (pip install plotly for the HTML ones)")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as vm
    except ImportError:
        vm = None
        print("matplotlib is not installed: no PNG plots (pip install matplotlib)")
    from optuna import visualization as vp
    plots = [("optimization_history", "plot_optimization_history", 1),
             ("param_importances", "plot_param_importances", 2)]
    for name, fn, need in plots:
        if n_done < need:
            print(f"Skipped the {name} plot: it needs at least {need} completed trial(s), the study has {n_done}")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if html:
                try:
                    path = outdir / f"{name}.html"
                    getattr(vp, fn)(study).write_html(str(path))
                    written.append(path)
                except Exception as e:  # a plot must never lose the study's results
                    print(f"Skipped {name}.html: {type(e).__name__}: {e}")
            if vm is not None:
                try:
                    path = outdir / f"{name}.png"
                    ax = getattr(vm, fn)(study)
                    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                    fig.savefig(str(path), dpi=100, bbox_inches="tight")
                    plt.close(fig)
                    written.append(path)
                except Exception as e:
                    print(f"Skipped {name}.png: {type(e).__name__}: {e}")
    for path in written:
        print(f"Saved plot: {path}")
    return written


# ----------------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        space = load_space(args.optuna_parameter_file)
        both = sorted(set(fixed_names(args.fixed_parameters)) & {p.name for p in space})
        if both:
            raise ValueError(f"Parameter(s) {', '.join(both)} are both fixed (-fp) and in the parameter space")
        for label, path in (("training data", args.path), ("validation data", args.test_path),
                            ("run script", args.run_script)):
            if not Path(path).exists():
                raise ValueError(f"The {label} {path} does not exist")
        # Whatever would fail every trial, or the study's end, is refused before the first trial.
        if checks_gru4rec_params(args):
            check_space(space, args.fixed_parameters, args.optuna_parameter_file)
        if args.storage is not None:
            check_storage(args.storage)
        if args.plot is not None:
            check_plot_dir(args.plot)
    except ValueError as e:
        print(e if str(e).startswith("ERROR.") else f"ERROR. {e}", file=sys.stderr)
        return 1
    print(format_space(space), flush=True)

    try:
        study = open_study(args, space)
    except ImportError as e:
        print(f"ERROR. Cannot open the storage {mask_url(args.storage)}: the database driver is missing "
              f"({' '.join(str(e).split())}); {driver_hint(args.storage)}", file=sys.stderr)
        return 1
    except Exception as e:
        msg = " ".join(str(e).split())
        where = f" {mask_url(args.storage)}" if args.storage else ""
        print(f"ERROR. Cannot open the study{where}: {msg}", file=sys.stderr)
        return 1

    runner = Runner(args)
    try:
        if args.ntrials > 0:
            study.optimize(runner.objective(space), n_trials=args.ntrials, n_jobs=args.n_jobs,
                           catch=(TrialFailed,))
    except KeyboardInterrupt:
        runner.stop_all()
        print("Interrupted; the study keeps the trials finished so far.", file=sys.stderr)
        print(summary(study, space, args))
        return 130
    finally:
        runner.stop_all()

    status = 0
    done = completed_trials(study)
    if args.plot:
        save_plots(study, args.plot)
    if args.final_measure:
        if done:
            best = study.best_trial
            print(f"Running final eval @{args.final_measure}:", flush=True)
            ps = param_string(args.fixed_parameters, ordered_params(best, space))
            cmd = runner.base_command() + ["-ps", ps, "-m"] + [str(c) for c in args.final_measure] + runner.keys()
            rc, _, last, _ = runner.run(cmd)
            if rc != 0:
                print(f"ERROR. The final run exited with status {rc}" + (f": {last}" if last else ""),
                      file=sys.stderr)
                status = 1
        else:
            print("ERROR. No trial completed, there are no best parameters to evaluate.", file=sys.stderr)
            status = 1
    print(summary(study, space, args), flush=True)
    return status


if __name__ == "__main__":
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
