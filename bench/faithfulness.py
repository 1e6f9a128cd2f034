"""Side-by-side faithfulness check of this package against the official PyTorch port of GRU4Rec
and against the original Theano code.

Why: unit tests compare this package with a NumPy reference of the algorithm, which shares
our reading of the spec. The official PyTorch port (hidasib/GRU4Rec_PyTorch_Official) is an
independent implementation by the original author, so training both on the same data with
the same hyperparameters and comparing epoch losses and Recall/MRR catches misreadings that
a self-made reference cannot (spec 7.4, for example: the sparse Adagrad accumulator of the
original receives the sum over duplicate indices, which moved MRR@20 by ~9 % when wrong).

Both sides are run as subprocesses through their own `run.py`, and their printed output is
parsed (`Epoch{n} --> loss: ...` and `Recall@k: x MRR@k: y`). The port draws its negative
samples unseeded, so one run proves little: `--runs N` repeats each side N times (this package
with seed 42, 43, ...; the seed also sets its initial weights, while the port always
initialises from seed 42) and the table compares means. No port code is part of this
repository: pass a checkout of it with `--peer DIR` and a Python with torch, numpy<2,
pandas<2.2 and joblib with `--peer-python`. The port reads uncompressed TSV only, so its input
is decompressed to a temporary folder. The port is slow on a CPU: `--json` saves everything,
and `--peer-json FILE` reuses the port's runs from such a file instead of running it again.

The original (hidasib/GRU4Rec, Theano) is a third, optional side: `--original DIR` is a checkout
of it prepared to run on a CPU (docs/faithfulness.md gives the recipe: Python 3.8, theano 1.0.5,
three edits), `--original-python` its venv's Python. It reads this package's parameter names,
runs with THEANO_FLAGS=device=cpu,floatX=float32, and gets run i's seed (42 + i) in the
environment variable GRU4REC_SEED, which the recipe's local patch reads (the original itself has
fixed seeds). Against the original, a configuration passes when this package's means of
Recall@20 and MRR@20 lie within the range of the original's runs, or within 1 % of its mean
where all its runs agree.

Configurations (acceptance: |relative difference| of the means of Recall@20 and MRR@20):
  a  RSC15 README parameters (XE, constrained embedding, logq=1), yoochoose-100k, 3 epochs,
     standard ties; within 2 %.
  b  paramfiles/retailrocket_bprmax_shared_best.py (BPR-max, momentum 0.4), n_epochs=2,
     diginetica, conservative ties; within 3 %.
  c  like (a) without embedding (one-hot GRU input), no dropout; within 3 %.

    python bench/faithfulness.py --config all --runs 2 --peer /tmp/port \\
        --peer-python /tmp/port-venv/bin/python --json bench/faithfulness.json
    python bench/faithfulness.py --runs 2 --peer-json bench/faithfulness_peer.json
    THEANO_FLAGS=base_compiledir=/tmp/theano python bench/faithfulness.py --config a --runs 5 \\
        --original /tmp/sides/orig --original-python /tmp/sides/orig-venv/bin/python

Exit status: 0 when every compared configuration passes, 3 when one fails, 1 on an error.
"""
import argparse
import gzip
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
CUTOFFS = (1, 5, 10, 20)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS", "THEANO_FLAGS")
SIDES = OrderedDict([("self", "this package"), ("peer", "port"), ("original", "original")])

XE_README = OrderedDict([
    ("loss", "cross-entropy"), ("final_act", "softmax"), ("constrained_embedding", True),
    ("embedding", 0), ("layers", [100]), ("batch_size", 32), ("dropout_p_embed", 0.1),
    ("dropout_p_hidden", 0.0), ("learning_rate", 0.1), ("momentum", 0.0), ("n_sample", 2048),
    ("sample_alpha", 0.75), ("logq", 1.0), ("n_epochs", 3),
])

CONFIGS = OrderedDict([
    ("a", dict(title="RSC15 README parameters (XE, constrained embedding, logq=1)",
               data="yoochoose-100k", eval_type="standard", tolerance=0.02, params=XE_README)),
    ("b", dict(title="retailrocket_bprmax_shared_best.py (BPR-max, momentum 0.4), 2 epochs",
               data="diginetica", eval_type="conservative", tolerance=0.03,
               param_file="paramfiles/retailrocket_bprmax_shared_best.py", overrides={"n_epochs": 2})),
    ("c", dict(title="no embedding (one-hot GRU input), XE, logq=1, no dropout",
               data="yoochoose-100k", eval_type="standard", tolerance=0.03,
               params=OrderedDict(XE_README, constrained_embedding=False, embedding=0,
                                  dropout_p_embed=0.0, dropout_p_hidden=0.0))),
])

EPOCH_RE = re.compile(r"^Epoch(\d+) --> loss: (\S+)")
SPEED_RE = re.compile(r"\[(\S+) mb/s")
EVAL_TIME_RE = re.compile(r"^Evaluation took (\S+)s")
NAN_RE = re.compile(r"^(?:Epoch)?(\d+): NaN error!")
METRIC_RE = re.compile(r"^Recall@(\d+): (\S+) MRR@(\d+): (\S+)\s*$")
TRAIN_TIME_RE = re.compile(r"^Total training time: (\S+)s")


class BenchError(Exception):
    """A problem that ends the run with one line on stderr."""


# parameters ----------------------------------------------------------------------------------
def load_param_file(path):
    """The `gru4rec_params` OrderedDict of a parameter file of this repository."""
    scope = {}
    exec(compile(Path(path).read_text(), str(path), "exec"), scope)
    return OrderedDict(scope["gru4rec_params"])


def config_params(cfg, n_epochs=None):
    """The hyperparameters of a configuration (this package's names), with an epoch override."""
    params = load_param_file(ROOT / cfg["param_file"]) if "param_file" in cfg else OrderedDict(cfg["params"])
    params.update(cfg.get("overrides", {}))
    if n_epochs is not None:
        params["n_epochs"] = n_epochs
    return params


def to_param_string(params):
    """name=value,... as both run.py files read it: lists joined by '/', booleans True/False."""
    def fmt(v):
        return "/".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)
    return ",".join(f"{k}={fmt(v)}" for k, v in params.items())


PEER_NAMES = {"layers", "loss", "batch_size", "dropout_p_embed", "dropout_p_hidden", "learning_rate",
              "momentum", "sample_alpha", "n_sample", "embedding", "constrained_embedding", "n_epochs",
              "bpreg", "logq", "elu_param"}


def to_peer_params(params):
    """Translates to the port's names: final_act elu-x -> elu_param=x, linear -> 0; softmax (XE,
    where the port has no final activation to set) is dropped. Other names must be the port's."""
    out = OrderedDict()
    for k, v in params.items():
        if k == "final_act":
            if v == "softmax":
                if params.get("loss") != "cross-entropy":
                    raise BenchError("final_act=softmax has no port equivalent except with cross-entropy")
                continue
            if v == "linear":
                out["elu_param"] = 0.0
            elif str(v).startswith("elu-"):
                out["elu_param"] = float(v[4:])
            else:
                raise BenchError(f"final_act={v} has no equivalent in the PyTorch port")
        elif k in PEER_NAMES:
            out[k] = v
        else:
            raise BenchError(f"parameter {k} has no equivalent in the PyTorch port")
    return out


# output parsing ------------------------------------------------------------------------------
def parse_output(text):
    """Epoch losses and speeds (mb/s), Recall@k, MRR@k, training and evaluation time and NaN
    failure from a run.py's stdout (the same format for this package, the port and the original)."""
    losses, speeds, recall, mrr, train_time, eval_time, nan = {}, {}, {}, {}, None, None, False
    for line in text.splitlines():
        line = line.strip()
        if m := EPOCH_RE.match(line):
            losses[int(m.group(1))] = float(m.group(2))
            if s := SPEED_RE.search(line):
                speeds[int(m.group(1))] = float(s.group(1))
        elif m := METRIC_RE.match(line):
            recall[int(m.group(1))] = float(m.group(2))
            mrr[int(m.group(3))] = float(m.group(4))
        elif m := TRAIN_TIME_RE.match(line):
            train_time = float(m.group(1))
        elif m := EVAL_TIME_RE.match(line):
            eval_time = float(m.group(1))
        elif NAN_RE.match(line):
            nan = True
    return dict(epoch_losses=[losses[e] for e in sorted(losses)], mb_per_s=[speeds[e] for e in sorted(speeds)],
                recall=recall, mrr=mrr, nan_error=nan, train_time_s=train_time, eval_time_s=eval_time)


# running -------------------------------------------------------------------------------------
def run_command(cmd, label, cwd=None, env=None):
    """Runs a command, echoing its epoch and metric lines; returns stdout. Fails on a bad exit."""
    print(f"[{label}] {' '.join(map(str, cmd))}", flush=True)
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if EPOCH_RE.match(line) or METRIC_RE.match(line) or NAN_RE.match(line):
                print(f"[{label}]   {line.rstrip()}", flush=True)
        err = proc.stderr.read()
    except BaseException:  # Ctrl-C or SIGTERM: the child goes too
        proc.kill()
        proc.wait()
        raise
    if proc.wait() != 0:
        tail = " | ".join(err.strip().splitlines()[-3:]) or "no stderr"
        raise BenchError(f"{label} failed (exit status {proc.returncode}): {tail}")
    return "".join(lines)


def run_side(label, build_cmd, n_runs, n_epochs, cwd=None, env_of=None):
    """n_runs runs of one side: each run's command and parsed numbers. `env_of(i)` is run i's
    environment (None: this process's)."""
    runs = []
    for i in range(n_runs):
        cmd = build_cmd(i)
        env = env_of(i) if env_of else None
        t0 = time.time()
        res = parse_output(run_command(cmd, f"{label} {i + 1}/{n_runs}", cwd=cwd, env=env))
        res.update(command=[str(c) for c in cmd], wall_s=round(time.time() - t0, 2))
        if env_of:
            res["env"] = {k: env[k] for k in ("THEANO_FLAGS", "GRU4REC_SEED") if k in env}
        if res["nan_error"] or len(res["epoch_losses"]) != n_epochs or sorted(res["recall"]) != list(CUTOFFS):
            raise BenchError(f"{label} run {i + 1}: unexpected output (NaN error or missing epoch/metric lines)")
        runs.append(res)
    return runs


def self_command(train, test, params, eval_type, seed):
    ps = to_param_string(OrderedDict(params, seed=seed))
    return [sys.executable, ROOT / "run.py", train, "-t", test, "-ps", ps, "-m", *CUTOFFS, "-e", eval_type]


def peer_command(python, peer_dir, train, test, params, eval_type):
    ps = to_param_string(to_peer_params(params))
    return [python, Path(peer_dir) / "run.py", train, "-t", test, "-ps", ps, "-m", *CUTOFFS,
            "-e", eval_type, "-d", "cpu"]


def original_command(python, original_dir, train, test, params, eval_type):
    """The original's run.py, which reads this package's parameter names."""
    return [python, Path(original_dir) / "run.py", train, "-t", test, "-ps", to_param_string(params),
            "-m", *CUTOFFS, "-e", eval_type]


def original_env(seed):
    """The environment of an original run: Theano on the CPU in float32 (after any THEANO_FLAGS
    of the caller, which may set a compile directory), the seed for the recipe's patch."""
    flags = ",".join(f for f in (os.environ.get("THEANO_FLAGS", ""), "device=cpu", "floatX=float32") if f)
    return dict(os.environ, THEANO_FLAGS=flags, GRU4REC_SEED=str(seed))


def data_files(data_dir, name):
    files = [Path(data_dir) / name / f for f in ("train_full.tsv.gz", "test.tsv.gz")]
    for f in files:
        if not f.is_file():
            raise BenchError(f"data not found: {f} (pass --data DIR, the folder of shared/data/README.md)")
    return files


def decompressed(files, tmp):
    """Uncompressed copies of .gz files in tmp (the port reads plain TSV only); made once."""
    out = []
    for f in files:
        dst = Path(tmp) / f.parent.name / f.name[:-3]
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(f, "rb") as src, open(dst, "wb") as d:
                shutil.copyfileobj(src, d)
        out.append(dst)
    return out


# summary -------------------------------------------------------------------------------------
def mean(xs):
    return sum(xs) / len(xs)


def summarize(runs):
    """Means over runs of every epoch loss and metric."""
    n_ep = len(runs[0]["epoch_losses"])
    return dict(epoch_losses=[mean([r["epoch_losses"][e] for r in runs]) for e in range(n_ep)],
                recall={k: mean([r["recall"][k] for r in runs]) for k in CUTOFFS},
                mrr={k: mean([r["mrr"][k] for r in runs]) for k in CUTOFFS})


def rows(side):
    """(name, value-of-run) pairs in table order for one side's per-run list."""
    n_ep = len(side[0]["epoch_losses"])
    out = [(f"loss epoch {e + 1}", [r["epoch_losses"][e] for r in side]) for e in range(n_ep)]
    for k in CUTOFFS:
        out.append((f"Recall@{k}", [r["recall"][k] for r in side]))
        out.append((f"MRR@{k}", [r["mrr"][k] for r in side]))
    return out


def rel_diff(ours, theirs):
    return (ours - theirs) / theirs if theirs else float("nan")


def acceptance(ours, theirs, tolerance):
    """Relative differences of the Recall@20 and MRR@20 means and whether both are within tolerance."""
    d = {"Recall@20": rel_diff(ours["recall"][20], theirs["recall"][20]),
         "MRR@20": rel_diff(ours["mrr"][20], theirs["mrr"][20])}
    return dict(rel_diff=d, tolerance=tolerance, passed=all(abs(v) <= tolerance for v in d.values()))


def within_spread(ours, runs, tolerance=0.01):
    """Acceptance against the original: for Recall@20 and MRR@20, this package's mean (of
    `ours`, a summary) within [min, max] of the original's `runs`, or within `tolerance` of
    their mean where the runs all agree (one run, or a seed that changes nothing)."""
    out = dict(rel_diff={}, range={}, passed=True)
    for name, key in (("Recall@20", "recall"), ("MRR@20", "mrr")):
        values = [r[key][20] for r in runs]
        lo, hi, m = min(values), max(values), ours[key][20]
        out["rel_diff"][name] = rel_diff(m, mean(values))
        out["range"][name] = [lo, hi]
        ok = lo <= m <= hi if hi > lo else abs(rel_diff(m, lo)) <= tolerance
        out["passed"] = out["passed"] and ok
    return out


def format_table(key, result):
    """The per-configuration table: the means of every side that ran, this package's relative
    difference to the others, and each run of every side."""
    sides = [k for k in SIDES if k in result]
    vals = {k: dict(rows(result[k]["runs"])) for k in sides}
    others = [k for k in sides if k != "self"] if "self" in sides else []
    lines = [f"== ({key}) {result['title']} | data {result['data']} | {result['eval_type']} ties =="]
    lines.append(f"{'':<14}" + "".join(f"{SIDES[k]:>14}" for k in sides)
                 + "".join(f"{'vs ' + SIDES[k]:>14}" for k in others)
                 + "   runs (" + " | ".join(SIDES[k] for k in sides) + ")")
    for name, _ in rows(result[sides[0]]["runs"]):
        means = {k: mean(vals[k][name]) for k in sides if name in vals[k]}
        line = f"{name:<14}" + "".join(f"{_fmt(means.get(k)):>14}" for k in sides)
        for k in others:
            d = f"{100 * rel_diff(means['self'], means[k]):+.2f}%" if "self" in means and k in means else "-"
            line += f"{d:>14}"
        lines.append(line + "   " + " | ".join(" ".join(f"{v:.4f}" for v in vals[k].get(name, [])) for k in sides))
    for k, acc_key in (("peer", "acceptance"), ("original", "acceptance_original")):
        acc = result.get(acc_key)
        if acc:
            d = acc["rel_diff"]
            limit = (f"limit +-{100 * acc['tolerance']:.0f}%" if "tolerance" in acc else
                     "limit: the original's range of runs, +-1% without spread")
            lines.append(f"vs {SIDES[k]}: Recall@20 {100 * d['Recall@20']:+.2f}%, MRR@20 {100 * d['MRR@20']:+.2f}% "
                         f"({limit}): {'PASS' if acc['passed'] else 'FAIL'}")
    if not any(k in result for k in ("acceptance", "acceptance_original")):
        lines.append("acceptance: not checked (only one side ran)")
    return "\n".join(lines)


def _fmt(v):
    return "-" if v is None else f"{v:.6f}"


# environment ---------------------------------------------------------------------------------
def machine():
    return dict(platform=platform.platform(), machine=platform.machine(), processor=platform.processor(),
                cpu_count=os.cpu_count(), python=platform.python_version(),
                thread_env={k: os.environ[k] for k in THREAD_VARS if k in os.environ})


def self_versions():
    import importlib.metadata as md
    v = {p: _version(md, p) for p in ("pytensor", "jax", "jaxlib", "numpy", "pandas")}
    v["python"] = platform.python_version()
    v["commit"] = _git_commit(ROOT)
    v["uncommitted_changes"] = _git_modified(ROOT, "gru4rec", "run.py")
    return v


def side_versions(python, folder, modules, env=None):
    """Python and module versions of another side's Python (run with `env`), its checkout's
    commit and the files changed there (the original's local edits)."""
    code = (f"import json,platform,{','.join(modules)};print(json.dumps(dict(python=platform.python_version(),"
            + ",".join(f"{m}={m}.__version__" for m in modules) + ")))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True,
                             env=env).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise BenchError(f"the Python {python} cannot import {', '.join(modules)}: {e}")
    v = json.loads(out.strip().splitlines()[-1])
    v["commit"] = _git_commit(folder)
    v["changed_files"] = _git_modified(folder)
    return v


def _version(md, name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _git_modified(path, *paths):
    """Files with uncommitted changes in a checkout (for this package: what ran is not HEAD then)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--", *paths],
                             capture_output=True, text=True)
    except OSError:
        return None
    return [line[3:] for line in out.stdout.splitlines()]


def _git_commit(path):
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


# main ----------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description="Compare this package with the official PyTorch port of GRU4Rec "
                                            "and with the original Theano code.")
    p.add_argument("--config", default="all", choices=[*CONFIGS, "all"])
    p.add_argument("--runs", type=int, default=1, help="runs of each side (default: 1)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="data folder (default: ../shared/data)")
    p.add_argument("--peer", help="checkout of hidasib/GRU4Rec_PyTorch_Official (its run.py is run)")
    p.add_argument("--peer-python", default="python", help="Python with torch for the port (default: python)")
    p.add_argument("--peer-json", help="reuse the port's runs from a JSON file written by --json")
    p.add_argument("--original", help="checkout of hidasib/GRU4Rec prepared for the CPU (docs/faithfulness.md)")
    p.add_argument("--original-python", default="python", help="Python 3.8 with theano 1.0.5 for the original")
    p.add_argument("--no-self", action="store_true", help="run only the other sides (to save their results)")
    p.add_argument("--n-epochs", type=int, help="override n_epochs (quick checks; not for the record)")
    p.add_argument("--self-params", default="", metavar="NAME=VALUE,...",
                   help="extra parameters for this package only, e.g. sparse_updates=summed")
    p.add_argument("--json", help="write machine, versions, commands and per-run numbers here")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.peer and args.peer_json:
        p.error("--peer and --peer-json exclude each other")
    if args.no_self and not (args.peer or args.original):
        p.error("--no-self needs --peer or --original")
    return args


def saved_peer(path, key, params):
    """The port's side of configuration `key` from an earlier --json file (None if absent; an error
    if it ran other parameters), and the whole file."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise BenchError(f"cannot read --peer-json {path}: {e}")
    peer = saved.get("configs", {}).get(key, {}).get("peer")
    if peer is None:
        return None, saved
    if peer["params"] != to_param_string(to_peer_params(params)):
        raise BenchError(f"--peer-json {path}: configuration ({key}) was run with {peer['params']}, "
                         f"not {to_param_string(to_peer_params(params))}")
    for r in peer["runs"]:  # JSON turned the cut-off keys into strings
        r["recall"] = {int(k): v for k, v in r["recall"].items()}
        r["mrr"] = {int(k): v for k, v in r["mrr"].items()}
    peer["mean"] = summarize(peer["runs"])
    return peer, saved


def run_config(key, args, tmp):
    cfg = CONFIGS[key]
    params = config_params(cfg, args.n_epochs)
    train, test = data_files(args.data, cfg["data"])
    result = dict(title=cfg["title"], data=f"{cfg['data']}/train_full.tsv.gz, test.tsv.gz",
                  eval_type=cfg["eval_type"], tolerance=cfg["tolerance"], params=dict(params))
    saved = None
    if args.peer_json:  # checked first: a mismatch should not cost a run of this package
        peer, saved = saved_peer(args.peer_json, key, params)
        if peer is not None:
            result["peer"] = dict(peer, reused_from=args.peer_json)
    if not args.no_self:
        own = OrderedDict(params, **dict(kv.split("=", 1) for kv in args.self_params.split(",") if kv))
        runs = run_side(f"{key} this package", lambda i: self_command(train, test, own, cfg["eval_type"], 42 + i),
                        args.runs, params["n_epochs"], cwd=ROOT)
        result["self"] = dict(params=to_param_string(own), runs=runs, mean=summarize(runs))
    if args.peer:
        ptrain, ptest = decompressed([train, test], tmp)
        runs = run_side(f"{key} port", lambda i: peer_command(args.peer_python, args.peer, ptrain, ptest, params,
                                                              cfg["eval_type"]),
                        args.runs, params["n_epochs"], cwd=tmp)
        result["peer"] = dict(params=to_param_string(to_peer_params(params)), runs=runs, mean=summarize(runs))
    if args.original:
        otrain, otest = decompressed([train, test], tmp)
        runs = run_side(f"{key} original", lambda i: original_command(args.original_python, args.original, otrain,
                                                                      otest, params, cfg["eval_type"]),
                        args.runs, params["n_epochs"], cwd=tmp, env_of=lambda i: original_env(42 + i))
        result["original"] = dict(params=to_param_string(params), runs=runs, mean=summarize(runs))
    if "self" in result and "peer" in result:
        result["acceptance"] = acceptance(result["self"]["mean"], result["peer"]["mean"], cfg["tolerance"])
    if "self" in result and "original" in result:
        result["acceptance_original"] = within_spread(result["self"]["mean"], result["original"]["runs"])
    return result, saved


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)  # so the temporary folder and the child go too
    keys = list(CONFIGS) if args.config == "all" else [args.config]
    report = dict(machine=machine(), argv=sys.argv if argv is None else argv, runs=args.runs,
                  n_epochs_override=args.n_epochs, self_params=args.self_params, versions={}, configs={})
    tmp = tempfile.mkdtemp(prefix="gru4rec_faithfulness_")
    try:
        for key in keys:
            data_files(args.data, CONFIGS[key]["data"])  # every file checked before hours of work
        if args.peer:
            if not (Path(args.peer) / "run.py").is_file():
                raise BenchError(f"--peer {args.peer} has no run.py (a checkout of GRU4Rec_PyTorch_Official)")
            report["versions"]["peer"] = side_versions(args.peer_python, args.peer, ["torch", "numpy", "pandas"])
        if args.original:
            if not (Path(args.original) / "run.py").is_file():
                raise BenchError(f"--original {args.original} has no run.py (a checkout of hidasib/GRU4Rec)")
            report["versions"]["original"] = side_versions(args.original_python, args.original,
                                                           ["theano", "numpy", "scipy", "pandas"], original_env(42))
        if not args.no_self:
            report["versions"]["self"] = self_versions()
        for key in keys:
            result, saved = run_config(key, args, tmp)
            if saved:  # the port's versions and machine come from the file its runs come from
                report["versions"]["peer"] = saved.get("versions", {}).get("peer")
                report["peer_machine"] = saved.get("machine")
            report["configs"][key] = result
            print(format_table(key, result), flush=True)
            if args.json:  # after each configuration: a later failure keeps the finished ones
                Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    except BenchError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    accs = [r[k]["passed"] for r in report["configs"].values() for k in ("acceptance", "acceptance_original")
            if k in r]
    return 3 if not all(accs) else 0


if __name__ == "__main__":
    sys.exit(main())
