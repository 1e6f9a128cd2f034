"""Where the time of a compiled training call (and of an evaluation call) goes, by kind of
operation, from XLA's own profile of the JAX CPU backend.

    python bench/profile.py [--config retailrocket rsc15 beauty-full] [--eval] [--sessions 30000]

Each configuration trains two epochs on (the first --sessions sessions of) its data set and
traces the second one with jax.profiler; with --eval it then evaluates the test set twice
and traces the second run. Every XLA operation the trace names is classified from the
optimized HLO module that XLA wrote (--xla_dump_to): matrix products (dot), gathers,
scatters (with the CPU kernel of gru4rec/ops/sparse_update.cc), random numbers (the
counter-based generator's bit operations), copies, and elementwise work and reductions (with
the CPU kernels of the BPR-max loss and of the dense weights' update).
"loop, host and waits" is the wall time the operations do not cover: the while loop, the host
loop between calls and idle threads. Operation times are summed over XLA's threads, so on
several cores they can add up to more than the wall time (the kernel counts once, on the
thread that calls it, however many threads share its work).

Prints a table per run and writes them as JSON (--out). The tracing itself costs a little
per operation; the table is about shares, bench/train_speed.py about speed.
"""
import argparse
import collections
import gzip
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CONFIGS = {
    "retailrocket": (DATA / "diginetica", "loss=bpr-max,constrained_embedding=True,final_act=elu-0.5,layers=224,"
                     "batch_size=80,dropout_p_embed=0.5,dropout_p_hidden=0.05,learning_rate=0.05,momentum=0.4,"
                     "n_sample=2048,sample_alpha=0.4,bpreg=1.95,logq=0.0"),
    "rsc15": (DATA / "yoochoose-100k", "loss=cross-entropy,constrained_embedding=True,final_act=softmax,layers=100,"
              "batch_size=32,dropout_p_hidden=0.4,learning_rate=0.2,momentum=0.2,n_sample=2048,sample_alpha=0.5,"
              "logq=1.0"),
    "beauty-full": (DATA / "beauty", "loss=cross-entropy,constrained_embedding=True,final_act=softmax,layers=256,"
                    "batch_size=128,dropout_p_embed=0.2,dropout_p_hidden=0.2,learning_rate=0.05,negatives=full"),
}
KINDS = ["matrix products", "gathers", "scatters", "elementwise and reductions", "random numbers", "copies"]
INSTR = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*? ([a-z][\w\-]*)\((.*)$")


def parse_hlo(text):
    """{instruction name: (opcode, called computations)} and {computation: [instruction names]};
    a custom call's opcode is its target (gru4rec_sparse_update for the sparse update's kernel)."""
    instr, comps, cur = {}, {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            cur = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            comps[cur] = []
            continue
        m = INSTR.match(line)
        if m and cur is not None:
            called = re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", m[3])
            target = re.search(r'custom_call_target="([^"]+)"', m[3]) if m[2] == "custom-call" else None
            instr[m[1]] = (target[1] if target else m[2], called)
            comps[cur].append(m[1])
    return instr, comps


def opcodes(name, instr, comps, depth=0):
    """The opcodes of an instruction and of every computation it calls (fusions)."""
    op, called = instr[name]
    ops = {op}
    for c in called:
        for inner in comps.get(c, []):
            if depth < 4:
                ops |= opcodes(inner, instr, comps, depth + 1)
    return ops


def kind(ops):
    """The kind of operation of a set of HLO opcodes (a fusion's contents), or None for
    control flow (whose time is its operations')."""
    if ops & {"while", "conditional", "call"}:
        return None
    if "dot" in ops or "convolution" in ops:
        return "matrix products"
    if ops & {"scatter", "gru4rec_sparse_update"}:
        return "scatters"
    if "gather" in ops or "dynamic-slice" in ops:
        return "gathers"
    if "rng-bit-generator" in ops or {"shift-right-logical", "xor"} <= ops:
        return "random numbers"
    if ops <= {"copy", "bitcast", "parameter", "tuple", "get-tuple-element", "constant", "dynamic-update-slice"}:
        return "copies"
    return "elementwise and reductions"


def classify(dump_dir, op_names):
    """{HLO op name: kind} from the dumped optimized module that names most of `op_names`."""
    best, best_hits = None, -1
    for f in Path(dump_dir).glob("*after_optimizations.txt"):
        instr, comps = parse_hlo(f.read_text())
        hits = len(op_names & instr.keys())
        if hits > best_hits:
            best, best_hits = (instr, comps), hits
    instr, comps = best
    return {n: kind(opcodes(n, instr, comps)) for n in op_names if n in instr}


class Trace:
    """jax.profiler around a piece of work (start/stop, or `run(fn)`); `per_op` is then
    {XLA operation: summed µs}. Executables compiled while tracing report no operations,
    so the work must be compiled before `start`."""

    def start(self):
        import jax
        self.dir = tempfile.mkdtemp(prefix="gru4rec_trace_")
        jax.profiler.start_trace(self.dir, create_perfetto_trace=True)
        self.t0 = time.perf_counter()

    def stop(self):
        import jax
        self.wall = time.perf_counter() - self.t0
        jax.profiler.stop_trace()
        events = json.load(gzip.open(next(Path(self.dir).rglob("*perfetto_trace.json.gz"))))
        events = events["traceEvents"] if isinstance(events, dict) else events
        self.per_op = collections.Counter()
        for e in events:
            op = e.get("args", {}).get("hlo_op") if e.get("ph") == "X" else None
            if op:
                self.per_op[op] += e["dur"]

    def run(self, fn):
        self.start()
        result = fn()
        self.stop()
        return result


def table(per_op, kinds, wall, steps):
    """Rows (kind, ms per step, share of wall time)."""
    by_kind = collections.Counter()
    for op, us in per_op.items():
        k = kinds.get(op)
        if k:
            by_kind[k] += us
    rows = [(k, by_kind[k] / 1e3 / steps, by_kind[k] / 1e6 / wall) for k in KINDS]
    rest = wall - sum(by_kind.values()) / 1e6
    rows.append(("loop, host and waits", rest * 1e3 / steps, rest / wall))
    return rows


def print_table(title, rows, unit):
    print(f"\n{title}")
    print(f"| {'kind of operation':28} | {unit:>11} | {'share':>6} |")
    print(f"|{'-' * 30}|{'-' * 13}|{'-' * 8}|")
    for name, ms, share in rows:
        print(f"| {name:28} | {ms:11.3f} | {share * 100:5.1f}% |")


def load_config(name, sessions):
    """(training frame, test frame or None, parameter string) of a configuration."""
    from gru4rec.data import load
    folder, params = CONFIGS[name]
    if name == "beauty-full":
        from gru4rec.leave_one_out import read_histories, split
        train, test = split(read_histories(folder / "beauty.txt.gz"))["train"], None
    else:
        train, test = load(folder / "train_full.tsv.gz"), load(folder / "test.tsv.gz")
    if sessions:
        train = train[train["SessionId"].isin(train["SessionId"].unique()[:sessions])]
    return train, test, params


def profile_config(name, args, dump_dir):
    import contextlib
    import io
    from gru4rec import GRU4Rec
    train, test, params = load_config(name, args.sessions)
    trace = Trace()

    def second_epoch(record):  # the first epoch warms up; the trace covers the second
        trace.start() if record.epoch == 1 else trace.stop()

    with contextlib.redirect_stdout(io.StringIO()):
        model = GRU4Rec.from_param_string(params + ",n_epochs=2", steps_per_call=args.steps_per_call)
        model.fit(train, callback=second_epoch)
    rec = model.history[1]
    kinds = classify(dump_dir, set(trace.per_op))
    result = {"train": {"epoch_seconds": rec.seconds, "minibatches": rec.minibatches, "mb_per_s": rec.mb_per_s,
                        "rows": table(trace.per_op, kinds, rec.seconds, rec.minibatches)}}
    print_table(f"{name}: training, {rec.minibatches} minibatches, {rec.mb_per_s:.1f} mb/s while traced",
                result["train"]["rows"], "ms/minibatch")
    if args.eval and name != "beauty-full":
        with contextlib.redirect_stdout(io.StringIO()):
            model.evaluate(test, cut_off=[20], mode="conservative")  # compiles
            m = trace.run(lambda: model.evaluate(test, cut_off=[20], mode="conservative"))
        kinds = classify(dump_dir, set(trace.per_op))
        rows = table(trace.per_op, kinds, trace.wall, m.n / 1000)
        result["eval"] = {"seconds": trace.wall, "predictions": m.n, "rows": rows}
        print_table(f"{name}: evaluation, {m.n} predictions, {trace.wall:.2f} s while traced", rows,
                    "ms/1000 pred.")
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=["retailrocket", "rsc15"], choices=list(CONFIGS))
    ap.add_argument("--sessions", type=int, default=30000, help="train on the first N sessions (0: all)")
    ap.add_argument("--eval", action="store_true", help="profile the evaluation of the test set too")
    ap.add_argument("--steps-per-call", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "profile.json")
    args = ap.parse_args()
    dump_dir = tempfile.mkdtemp(prefix="gru4rec_hlo_")
    # process-wide XLA flags, set by this script before JAX starts: name every operation in
    # the profile, and write the optimized modules to classify them
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"
                               f" --xla_dump_to={dump_dir} --xla_dump_hlo_as_text")
    sys.path.insert(0, str(ROOT))
    results = {name: profile_config(name, args, dump_dir) for name in args.config}
    import jax
    import pytensor
    record = {"machine": {"platform": platform.platform(), "processor": cpu_name(), "cpus": os.cpu_count()},
              "versions": {"python": platform.python_version(), "jax": jax.__version__,
                           "pytensor": pytensor.__version__},
              "settings": vars(args) | {"out": str(args.out)}, "results": results}
    args.out.write_text(json.dumps(record, indent=2))
    print(f"\nwritten to {args.out}")


def cpu_name():
    """The processor's model name from /proc/cpuinfo (platform.processor() names only the
    architecture on Linux)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
