"""Hyperparameters (spec 9.1) as a typed, documented `Params`, their parsing from strings and
files (spec 9.2), and checks. Imports neither PyTensor nor JAX.

Values given as strings are converted by the type of the parameter's default, as the
original does: lists split on '/', booleans accept True/False/1/0. Every problem is a
ValueError that names the parameter.
"""
import ast
import inspect
import math
import re
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

@dataclass(frozen=True)
class Params(Mapping):
    """The hyperparameters of GRU4Rec with the original's names and defaults (spec 9.1), plus
    five of this package (elu_param, seed, sparse_updates, bptt, negatives).

    Read them as attributes (typed) or by name like a read-only dict (the original's names, as
    parameter strings and files spell them). A Params is not checked when built: `updated`
    applies converted values, resolves and checks (`validate`).
    """

    loss: str = "bpr-max"
    """cross-entropy, xe_logit, bpr-max, top1, top1-max or bpr (spec 6)."""
    final_act: str = "linear"
    """Activation of the scores (spec 4.7): linear, relu, tanh, softmax, softmax_logit, leaky-X,
    elu-X, selu-X-Y; softmax goes with cross-entropy, an elementwise one with the others."""
    hidden_act: str = "tanh"
    """Activation of the GRU's candidate state: linear, relu, tanh, leaky-X, elu-X or selu-X-Y."""
    layers: list[int] = field(default_factory=lambda: [100])
    """GRU layer sizes, bottom first ('100/100' in a parameter string)."""
    n_epochs: int = 10
    """Passes over the training data."""
    batch_size: int = 32
    """Session slots of a session-parallel minibatch."""
    dropout_p_hidden: float = 0.0
    """Dropout probability on the carried hidden state, in [0, 1) (spec 4.4)."""
    dropout_p_embed: float = 0.0
    """Dropout probability on the input embedding, in [0, 1) (spec 4.4)."""
    learning_rate: float = 0.1
    """Step size of the optimizer, > 0."""
    momentum: float = 0.0
    """Heavy-ball momentum in [0, 1) (spec 7.5)."""
    lmbd: float = 0.0
    """L2 regularisation coefficient."""
    embedding: int | str = 0
    """Width of a separate input embedding; 0: none, 'layersize': layers[0] (resolved when set)."""
    n_sample: int = 2048
    """Popularity-sampled negatives shared by a minibatch, besides the in-batch ones; 0: in-batch
    negatives only (the epoch then ends when fewer than 2 sessions are left, as in the original)."""
    sample_alpha: float = 0.75
    """Sampling exponent: negatives are drawn with probability ~ support ** sample_alpha."""
    smoothing: float = 0.0
    """Label smoothing of the cross-entropy losses, in [0, 1)."""
    constrained_embedding: bool = False
    """The output item matrix doubles as the input embedding (the 'shared' embedding mode)."""
    adapt: str | None = "adagrad"
    """Optimizer: adagrad, rmsprop, adadelta, adam, sgd, or None (plain SGD)."""
    adapt_params: list[float] = field(default_factory=list)
    """The optimizer's decay rate(s): rho (rmsprop, adadelta) or beta1/beta2 (adam)."""
    grad_cap: float = 0.0
    """Threshold of the global gradient norm; 0: no capping."""
    bpreg: float = 1.0
    """Score regulariser of the BPR-max loss."""
    logq: float = 0.0
    """Strength of the logQ correction of the cross-entropy loss (1.0 with sampling)."""
    sigma: float = 0.0
    """Fixed width of the initial weights; 0: the per-block rule of spec 8."""
    init_as_normal: bool = False
    """Normal instead of uniform initial weights."""
    train_random_order: bool = False
    """Shuffle the order of the sessions in every epoch."""
    time_sort: bool = True
    """Order the sessions by their start time (else by session id)."""
    session_key: str = "SessionId"
    """Column of the session ids."""
    item_key: str = "ItemId"
    """Column of the item ids."""
    time_key: str = "Time"
    """Column of the timestamps."""
    elu_param: float | None = None
    """The official ports' BPR-max switch: x > 0 means final_act=elu-x, 0 means linear."""
    seed: int = 42
    """Seed of the initial weights, the sampling and the dropout masks (spec 8)."""
    sparse_updates: str = "per-occurrence"
    """How repeated rows of an item matrix are updated in one step (spec 7.4): 'per-occurrence'
    (the original as it runs) or 'summed' (the official ports: sum, then one step per row)."""
    bptt: int = 1
    """Truncated backpropagation through time: bptt=k trains k consecutive minibatches as one,
    the gradient flowing back through their k steps of the recurrence, with one optimizer
    update per k steps (1: the original's per-step training, the previous hidden state a
    constant; for long user histories in the sequence-aware mode). steps_per_call is rounded
    up to a multiple of bptt."""
    negatives: str = "sampled"
    """Negatives of the cross-entropy loss: 'sampled' (the original: the minibatch's other
    targets and n_sample shared popularity samples) or 'full' (every item, as SASRec-CE
    trains; n_sample, sample_alpha and logq then have no effect, and the output item matrix
    and its biases get a dense update every step)."""

    @property
    def draws_samples(self):
        """Whether training draws popularity-sampled negatives from a sample store."""
        return self.negatives == "sampled" and self.n_sample > 0

    def __getitem__(self, name):
        if name not in self.__dataclass_fields__:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self):
        return iter(self.__dataclass_fields__)

    def __len__(self):
        return len(self.__dataclass_fields__)


# The defaults; converting a string value follows the type of the parameter's default.
DEFAULTS = Params()


LOSSES = ("cross-entropy", "xe_logit", "bpr-max", "top1", "top1-max", "bpr")
ADAPTS = ("adagrad", "rmsprop", "adadelta", "adam", "sgd")
SPARSE_UPDATES = ("per-occurrence", "summed")
NEGATIVES = ("sampled", "full")
# How evaluation ranks a target among items with its score (spec 10.1): the -e option of run.py
# and paropt.py, as in the original.
TIE_MODES = ("standard", "conservative", "median", "tiebreaking")


def _to_bool(name, v):
    if isinstance(v, bool):
        return v
    if str(v) in ("True", "1"):
        return True
    if str(v) in ("False", "0"):
        return False
    raise ValueError(f"Invalid value for boolean parameter {name}: {v!r} (use True/False/1/0)")


def convert(name, value):
    """Converts one given value to the parameter's type (spec 9.2)."""
    if name not in DEFAULTS:
        raise ValueError(f"Unknown parameter: {name!r} (known: {', '.join(DEFAULTS)})")
    default = DEFAULTS[name]
    if isinstance(default, bool):
        return _to_bool(name, value)
    try:
        if name == "embedding":
            if value == "layersize":
                return value
            return int(value)
        if name == "adapt":
            return None if value in (None, "None", "none") else str(value)
        if name == "elu_param":
            return None if value in (None, "None") else float(value)
        if name == "adapt_params":
            if isinstance(value, str):
                return [float(v) for v in value.split("/") if v != ""]
            return [float(v) for v in value]
        if name == "layers":
            if isinstance(value, str):
                return [int(v) for v in value.split("/")]
            if isinstance(value, int):
                return [value]
            return [int(v) for v in value]
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid value for parameter {name}: {value!r} "
                         f"(expected {type(default).__name__ if default is not None else 'float'})") from None


def _act_ok(name, allow_softmax):
    """True if name is an activation string of spec 4.7."""
    if name in ("linear", "relu", "tanh"):
        return True
    if name in ("softmax", "softmax_logit"):
        return allow_softmax
    m = re.fullmatch(r"(leaky|elu)-([0-9.eE+]+)|selu-([0-9.eE+]+)-([0-9.eE+]+)", name)
    if not m:
        return False
    try:
        [float(g) for g in m.groups() if g is not None and g not in ("leaky", "elu")]
    except ValueError:
        return False
    return True


def validate(p):
    """Range and consistency checks of a Params; raises ValueError naming the problem, warns on odd pairings."""
    def bad(msg):
        raise ValueError(msg)
    _check_finite(p)
    if p.loss not in LOSSES:
        bad(f"Invalid value for parameter loss: {p.loss!r} (choose from {', '.join(LOSSES)})")
    if not _act_ok(p.final_act, True):
        bad(f"Invalid value for parameter final_act: {p.final_act!r}")
    if not _act_ok(p.hidden_act, False):
        bad(f"Invalid value for parameter hidden_act: {p.hidden_act!r}")
    if not p.layers or any(l < 1 for l in p.layers):
        bad(f"Invalid value for parameter layers: {p.layers!r} (positive sizes, e.g. 100 or 100/100)")
    for k in ("n_epochs", "batch_size"):
        if p[k] < 1:
            bad(f"Invalid value for parameter {k}: {p[k]} (must be >= 1)")
    for k in ("dropout_p_hidden", "dropout_p_embed", "smoothing"):
        if not 0.0 <= p[k] < 1.0:
            bad(f"Invalid value for parameter {k}: {p[k]} (must be in [0, 1))")
    if not 0.0 <= p.momentum < 1.0:
        bad(f"Invalid value for parameter momentum: {p.momentum} (must be in [0, 1))")
    if not p.learning_rate > 0:
        bad(f"Invalid value for parameter learning_rate: {p.learning_rate} (must be > 0)")
    for k in ("lmbd", "sample_alpha", "grad_cap", "bpreg", "logq", "sigma"):
        if not p[k] >= 0:
            bad(f"Invalid value for parameter {k}: {p[k]} (must be >= 0)")
    if p.n_sample < 0:
        bad(f"Invalid value for parameter n_sample: {p.n_sample} (must be >= 0)")
    emb = p.embedding
    if emb != "layersize" and emb < 0:
        bad(f"Invalid value for parameter embedding: {emb} (must be >= 0 or 'layersize')")
    if p.adapt is not None and p.adapt not in ADAPTS:
        bad(f"Invalid value for parameter adapt: {p.adapt!r} (choose from {', '.join(ADAPTS)} or None)")
    need = {"rmsprop": 1, "adadelta": 1, "adam": 2}.get(p.adapt, 0)
    if len(p.adapt_params) < need:
        bad(f"adapt={p.adapt} needs {need} value(s) in adapt_params, e.g. adapt_params="
            + "/".join(["0.9", "0.999"][:need]))
    if not isinstance(p.bptt, int) or isinstance(p.bptt, bool) or p.bptt < 1:
        bad(f"Invalid value for parameter bptt: {p.bptt!r} (an int >= 1: minibatches per gradient window)")
    if p.sparse_updates not in SPARSE_UPDATES:
        bad(f"Invalid value for parameter sparse_updates: {p.sparse_updates!r} "
            f"(choose from {', '.join(SPARSE_UPDATES)})")
    if p.negatives not in NEGATIVES:
        bad(f"Invalid value for parameter negatives: {p.negatives!r} (choose from {', '.join(NEGATIVES)})")
    if p.negatives == "full" and p.loss != "cross-entropy":
        bad(f"negatives=full trains the cross-entropy loss only, got loss={p.loss}")
    if p.elu_param is not None and p.elu_param < 0:
        bad(f"Invalid value for parameter elu_param: {p.elu_param} (must be >= 0)")
    loss, act = p.loss, final_act_of(p)
    if loss == "cross-entropy" and act != "softmax":
        warnings.warn(f"loss=cross-entropy expects final_act=softmax, got {act!r}", stacklevel=3)
    elif loss == "xe_logit" and act != "softmax_logit":
        warnings.warn(f"loss=xe_logit expects final_act=softmax_logit, got {act!r}", stacklevel=3)
    elif loss not in ("cross-entropy", "xe_logit") and act in ("softmax", "softmax_logit"):
        warnings.warn(f"loss={loss} is meant for an elementwise final_act (linear, elu-X, ...), "
                      f"got {act!r}", stacklevel=3)


FLOAT_PARAMS = tuple(k for k, f in Params.__dataclass_fields__.items() if "float" in str(f.type))


def _check_finite(p):
    """ValueError naming the first float parameter (or activation argument) that is NaN or
    infinite: every range check below would let inf through, and training would end in NaN."""
    for k in FLOAT_PARAMS:
        values = p[k] if isinstance(p[k], list) else [p[k]]
        for v in values:
            if v is not None and isinstance(v, (int, float)) and not math.isfinite(v):
                raise ValueError(f"Invalid value for parameter {k}: {p[k]} (must be a finite number)")
    for k in ("final_act", "hidden_act"):
        if any(not math.isfinite(a) for a in _act_numbers(p[k])):
            raise ValueError(f"Invalid value for parameter {k}: {p[k]!r} (its arguments must be finite numbers)")


def _act_numbers(name):
    """The numbers of an activation string such as elu-0.5 or selu-1-1.05 (unparsable ones left out)."""
    out = []
    for a in str(name).split("-")[1:]:
        try:
            out.append(float(a))
        except ValueError:
            pass
    return out


def updated(base, converted):
    """A new Params: base with the converted (name, value) pairs (from `convert`) applied,
    embedding='layersize' resolved to the first layer's size, and checked (`validate`)."""
    new = replace(base, **dict(converted))
    if new.embedding == "layersize":
        new = replace(new, embedding=new.layers[0])
    validate(new)
    return new


def final_act_of(p):
    """The final activation in effect: elu_param (official ports) overrides final_act for BPR-max."""
    if p.elu_param is not None and p.loss == "bpr-max":
        x = p.elu_param
        return f"elu-{x:g}" if x > 0 else "linear"
    return p.final_act


def parse_param_string(s, what="parameter string"):
    """'a=1,b=x/y' -> [('a', '1'), ('b', 'x/y')] (spec 9.2); a malformed piece is a ValueError
    that calls the string `what` (e.g. '-fp')."""
    pairs = []
    for piece in s.split(","):
        if piece.strip() == "":
            continue
        if piece.count("=") != 1:
            raise ValueError(f"Malformed {what} piece {piece!r}: expected name=value")
        k, v = piece.split("=")
        if not k.strip():
            raise ValueError(f"Malformed {what} piece {piece!r}: empty name")
        pairs.append((k.strip(), v.strip()))
    return pairs


def read_text(path, what, error=ValueError):
    """The text of a small UTF-8 file; `error` names `what` (e.g. "parameter file") when the
    file is missing, a directory, unreadable or not UTF-8."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise error(f"{what[0].upper()}{what[1:]} not found: {path}") from None
        why = "it is a directory" if isinstance(e, IsADirectoryError) else e.strerror or type(e).__name__
        raise error(f"Cannot read {what} {path}: {why}") from None
    except UnicodeDecodeError:
        raise error(f"Cannot read {what} {path}: it is not UTF-8 text") from None


def load_param_file(path):
    """Reads `gru4rec_params = OrderedDict([...])` from a parameter file without executing code."""
    text = read_text(path, "parameter file")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as e:
        raise ValueError(f"Parameter file {path} is not valid Python: {e.msg} (line {e.lineno})") from None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "gru4rec_params"):
            call = node.value
            if isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", "")) == "OrderedDict":
                if not call.args:
                    return OrderedDict()
                try:
                    value = ast.literal_eval(call.args[0])
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    break
                return OrderedDict(_param_pairs(value, path))
    raise ValueError(f"Parameter file {path} must define gru4rec_params = OrderedDict([(name, value), ...]) "
                     "with literal values")


def param_file_text(pairs, comment=None):
    """The text of a parameter file (as load_param_file reads it) for (name, value) pairs, the
    values of GRU4Rec's parameters converted as run.py -ps would convert them (so the file
    gives the same model), others (of another -g model) as given; `comment` becomes a comment
    line above the parameters."""
    lines = ["from collections import OrderedDict", ""]
    lines += [f"# {comment}"] if comment else []
    lines.append("gru4rec_params = OrderedDict([")
    lines += [f"    ({k!r}, {convert(k, v) if k in DEFAULTS else v!r})," for k, v in pairs]
    return "\n".join(lines + ["])", ""])


def _param_pairs(value, path):
    """The (name, value) pairs of a parameter file's OrderedDict(...) argument: a list or tuple
    of 2-item pairs with string names, or a dict literal. ValueError naming the file otherwise."""
    if isinstance(value, dict):
        value = list(value.items())
    expected = "gru4rec_params = OrderedDict([(name, value), ...])"
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"Parameter file {path}: gru4rec_params must be a list of (name, value) pairs, "
                         f"got {type(value).__name__} {value!r:.60} (expected {expected})")
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError(f"Parameter file {path}: gru4rec_params must be a list of (name, value) pairs, "
                             f"got the item {item!r:.60} (expected {expected})")
        if not isinstance(item[0], str):
            raise ValueError(f"Parameter file {path}: parameter names must be strings, got {item[0]!r:.60} "
                             f"in {item!r:.60}")
    return [tuple(item) for item in value]


def format_set_lines(given, converted):
    """The `SET name TO value (type: ...)` lines of spec 9.2 for the given (name, raw value) pairs."""
    if not given:
        return []
    maxk = max(len(k) for k, _ in given)
    maxv = max(len(str(v)) for _, v in given)
    lines = []
    for (k, v), (_, c) in zip(given, converted):
        lines.append("SET   {}{}TO   {}{}(type: {})".format(
            k, " " * (maxk - len(k) + 3), c, " " * max(maxv - len(str(c)) + 3, 0), type(c)))
    return lines


def field_docs():
    """{name: (type, docstring)} of Params' fields, in order, read from this module's source
    (Python keeps attribute docstrings only there): a field's docstring is the string literal
    that follows its annotated assignment."""
    tree = ast.parse(inspect.getsource(Params))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:] + [None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = ""
            if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                doc = " ".join(nxt.value.value.split())
            docs[node.target.id] = (ast.unparse(node.annotation), doc)
    return docs


def field_meanings():
    """(name, default, meaning) of every parameter in order, the meaning being the first
    sentence of its docstring (field_docs): for help(GRU4Rec), so the meanings are written once."""
    for name, (_, doc) in field_docs().items():
        yield name, DEFAULTS[name], doc.split(". ")[0].rstrip(".") + "."


def markdown_table():
    """The parameter table of docs/python.md: name, default, type and meaning of every field of
    Params (docs/make_param_table.py writes it there; tests/test_docs.py checks it)."""
    def cell(text):
        return text.replace("|", "\\|")
    rows = ["| parameter | default | type | meaning |", "|---|---|---|---|"]
    for name, (annotation, doc) in field_docs().items():
        rows.append(f"| `{name}` | `{cell(repr(DEFAULTS[name]))}` | `{cell(annotation)}` | {cell(doc)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
