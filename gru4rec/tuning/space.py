"""The parameter space (spec 9.4): its JSON-lines file, the PARAMETER SPACE block, the
parameter strings of the trials, and the check, before any trial, that GRU4Rec accepts the
space's values (gru4rec.params, as run.py applies it)."""
import itertools
import json
import math
import re
import warnings
from decimal import Decimal

from .. import params as P

RULE = "-" * 80


class SpaceError(ValueError):
    """A parameter space file that cannot be read; the message names the file and line."""


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


def enqueued_params(text, space):
    """The space's parameters of an --enqueue string 'name=value,...' as the trial would draw
    them (int, float or the matching option); ValueError for a name outside the space or a
    value outside its range or options."""
    by_name = {p.name: p for p in space}
    out = {}
    for k, v in P.parse_param_string(text, what="--enqueue"):
        p = by_name.get(k)
        if p is None:
            raise ValueError(f"--enqueue {text}: {k} is not a parameter of the space "
                             f"({', '.join(by_name)})")
        if p.dtype == "categorical":
            match = [o for o in p.values if str(o) == v]
            if not match:
                raise ValueError(f"--enqueue {text}: {k}={v} is not one of the options "
                                 f"{', '.join(map(str, p.values))}")
            out[k] = match[0]
            continue
        try:
            x = int(v) if p.dtype == "int" else float(v)
        except ValueError:
            raise ValueError(f"--enqueue {text}: {k}={v} is not a number of type {p.dtype}") from None
        if not p.values[0] <= x <= p.values[1]:
            raise ValueError(f"--enqueue {text}: {k}={v} is outside the range [{p.values[0]}..{p.values[1]}]")
        out[k] = x
    return out


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
        _check_options(name, values, step, log, bad)
        return Param(name, dtype, values)
    _check_range(name, dtype, values, step, log, bad)
    return Param(name, dtype, values, step, log)


def _check_options(name, values, step, log, bad):
    if step is not None or log:
        bad(f"step and log do not apply to the categorical parameter {name}")
    for v in values:
        if not isinstance(v, (str, int, float, bool)) or (isinstance(v, str) and ("," in v or "=" in v)):
            bad(f"option {v!r} of {name} cannot be written into a parameter string")
    if len(set(map(repr, values))) != len(values):
        bad(f"options of {name} repeat")


def _check_range(name, dtype, values, step, log, bad):
    if len(values) != 2 or not all(_number(v) for v in values):
        bad(f"values of {name} must be [low, high], two finite numbers, got {values}")
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


def load_space(path):
    """Reads a JSON-lines parameter space file (spec 9.4) into a list of Param."""
    text = P.read_text(path, "parameter space file", SpaceError)
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
    """The parameter names of a -fp string (ValueError if it is malformed)."""
    return [k for k, _ in P.parse_param_string(fixed, what="-fp")]


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
        d_lo, d_hi, d_step = (Decimal(str(v)) for v in (lo, hi, param.step))
        hi = float(d_lo + (d_hi - d_lo) // d_step * d_step)
    as_text = (lambda v: str(int(v))) if param.dtype == "int" else (lambda v: str(float(v)))
    where = f"[{lo}, {param.values[1]}]"
    return [(as_text(lo), f"low end of {where}"), (as_text(hi), f"high end of {where}")]


def check_space(space, fixed, path, max_combinations=4096):
    """Refuses, before any trial, a parameter space or -fp that GRU4Rec would refuse in every
    trial: an unknown parameter name, a value of the wrong type, a range or option outside a
    parameter's valid values (gru4rec.params convert/validate, as run.py applies them). Each
    end of a range and each option is checked with the fixed parameters and some draw of the
    other parameters of the space; raises ValueError naming the parameter and the value."""
    fixed_pairs = _converted_fixed(fixed)
    rows = [_candidate_row(param, path) for param in space]
    for i, row in enumerate(rows):
        for cand in row:
            msg = _first_problem(rows[:i] + [[cand]] + rows[i + 1:], fixed_pairs, max_combinations)
            if msg is None:
                continue
            name, _, value, label = cand
            if re.search(rf"\b{name}\b", msg):
                raise ValueError(f"Parameter space {path}: {name}={value} ({label}) is not valid: {msg}")
            raise ValueError(f"Every trial would fail with -fp {fixed!r}: {msg}")


def _converted_fixed(fixed):
    """The -fp pairs converted as run.py converts them; ValueError naming the piece."""
    pairs = []
    for k, v in P.parse_param_string(fixed):
        try:
            pairs.append((k, P.convert(k, v)))
        except ValueError as e:
            raise ValueError(f"-fp {k}={v}: {e}") from None
    return pairs


def _candidate_row(param, path):
    """(name, converted value, value, label) for each candidate of param; ValueError for an
    unknown parameter or a value GRU4Rec cannot convert."""
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
    return row


def _problem(combo, fixed_pairs):
    """None if GRU4Rec accepts the fixed parameters with this draw, else its message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            P.updated(P.DEFAULTS, fixed_pairs + [(name, conv) for name, conv, _, _ in combo])
    except ValueError as e:
        return str(e)
    return None


def _first_problem(rows, fixed_pairs, max_combinations):
    """None if some draw of rows passes, else the message of the first draw. Beyond
    max_combinations draws nothing is refused."""
    first = None
    for combo in itertools.islice(itertools.product(*rows), max_combinations):
        msg = _problem(combo, fixed_pairs)
        if msg is None:
            return None
        first = first or msg
    return first if math.prod(len(r) for r in rows) <= max_combinations else None
