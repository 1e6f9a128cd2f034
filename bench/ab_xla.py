"""Training speed under several sets of XLA compile options, side by side in one process.

    python bench/ab_xla.py [--config retailrocket] [--change '{"xla_cpu_copy_insertion_use_region_analysis": false}']
        [--change '{...}' ...] [--xla-update] [--xla-dense] [--xla-loss] [--no-kernels] [--rounds 30] [--steps 320]
        [--sessions 30000]

Compiles the training call of one configuration (bench/profile.py's, on the first --sessions
sessions) once with gru4rec.backend.COMPILER_OPTIONS as they are ("current") and once for each
--change, its options merged over them; --xla-update adds the current options with the sparse
update left to XLA instead of the CPU kernel (gru4rec/ops/sparse_update.cc), --xla-dense one
with the dense weights' update left to XLA (gru4rec/ops/dense_update.cc), --xla-loss one with
the BPR-max loss left to XLA (gru4rec/ops/bpr_max.cc), --no-kernels one without any CPU kernel
(as without a C++ compiler), and then no --change is compiled unless given. All of them then
train in turn on the same slices of an epoch's schedule, --steps minibatches each, --rounds
times, the order rotated every round, so that a machine whose speed drifts (this project's
shared CPUs do, by 2x within an hour) slows them alike. Prints each one's median milliseconds
per minibatch, its ratio to "current" (of the medians, and the median of the rounds' ratios)
and whether its weights are still bit-identical to those of "current" after all rounds
(options that change XLA's arithmetic change the numbers), and writes them as JSON (--out).
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gru4rec import GRU4Rec, backend  # noqa: E402
from gru4rec.data import session_parallel_schedule  # noqa: E402
from gru4rec.ops import cpu_kernels  # noqa: E402


def _profile_bench():
    """bench/profile.py (its configurations), loaded by path: `profile` is also a standard module."""
    spec = importlib.util.spec_from_file_location("gru4rec_bench_profile", ROOT / "bench" / "profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROFILE = _profile_bench()
# side (and its flag, --xla-update ...): the kernels it turns off
KERNEL_SIDES = {"xla update": ["gru4rec_sparse_update"], "xla dense": ["gru4rec_dense_update"],
                "xla loss": ["gru4rec_bpr_max"],
                "no kernels": list(cpu_kernels.SOURCES)}


def build(params, train, options, K, off=()):
    """(trainer, sampler, padded schedule) of a model compiled with `options` for the CPU, without
    the CPU kernels `off` (targets)."""
    saved = backend.COMPILER_OPTIONS
    backend.COMPILER_OPTIONS = {"cpu": options}
    try:
        with contextlib.redirect_stdout(io.StringIO()), \
                (cpu_kernels.turned_off(*off) if off else contextlib.nullcontext()):
            model = GRU4Rec.from_param_string(params + ",n_epochs=1", steps_per_call=K)
            td = model._training_data(train, None, None, None)
            trainer, sampler = model._trainer(td, 10000000)
    finally:
        backend.COMPILER_OPTIONS = saved
    p = model.params
    sched = session_parallel_schedule(td.items, td.offsets, td.base_order, p.batch_size, model.net.pad,
                                      stop_below_two=False).padded(K, model.net.pad)
    return trainer, sampler, sched


def run(args):
    """(options by side, ms per minibatch of every round by side, built sides)."""
    train, _, params = PROFILE.load_config(args.config, args.sessions)
    current = dict(backend.COMPILER_OPTIONS.get("cpu", {}))
    kernel_sides = [name for name in KERNEL_SIDES if getattr(args, name.replace(" ", "_"))]  # --xla-update ...
    changes = args.change or ([] if kernel_sides else ['{"xla_cpu_copy_insertion_use_region_analysis": false}'])
    sides = {"current": current, **{c: {**current, **json.loads(c)} for c in changes}}
    sides.update({name: current for name in kernel_sides})
    built = {name: build(params, train, opts, args.steps_per_call, off=KERNEL_SIDES.get(name, ()))
             for name, opts in sides.items()}
    steps = args.steps - args.steps % args.steps_per_call
    n = min(len(b[2].x) for b in built.values()) - steps
    names, times = list(sides), {name: [] for name in sides}
    for r in range(args.rounds):
        start = (r * steps) % n
        start -= start % args.steps_per_call
        for name in names[r % len(names):] + names[:r % len(names)]:
            trainer, sampler, sched = built[name]
            part = SimpleNamespace(**{f: getattr(sched, f)[start:start + steps] for f in ("x", "y", "active", "reset")})
            t0 = time.perf_counter()
            trainer.run(part, sampler)
            times[name].append((time.perf_counter() - t0) / steps * 1e3)
    return sides, times, built


def same_weights(a, b):
    """Whether two trainers' weights are bit-identical."""
    return all(np.array_equal(x.get_value(), y.get_value()) for x, y in zip(a.net.W.values(), b.net.W.values()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="retailrocket", choices=[c for c in PROFILE.CONFIGS if c != "beauty-full"])
    ap.add_argument("--change", action="append",
                    help="XLA options (JSON) merged over gru4rec.backend.COMPILER_OPTIONS['cpu']; repeat for more "
                         "sides (default: region analysis off)")
    ap.add_argument("--xla-update", action="store_true",
                    help="add a side without the CPU kernel of the sparse update (current options)")
    ap.add_argument("--xla-dense", action="store_true",
                    help="add a side without the CPU kernel of the dense weights' update (current options)")
    ap.add_argument("--xla-loss", action="store_true",
                    help="add a side without the CPU kernel of the BPR-max loss (current options)")
    ap.add_argument("--no-kernels", action="store_true", help="add a side without any CPU kernel (current options)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--steps", type=int, default=320, help="minibatches per timed slice")
    ap.add_argument("--steps-per-call", type=int, default=32)
    ap.add_argument("--sessions", type=int, default=30000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ab_xla.json")
    args = ap.parse_args()
    sides, times, built = run(args)
    base = np.array(times["current"])
    med = {name: float(np.median(t)) for name, t in times.items()}
    ratio = {name: med[name] / med["current"] for name in sides}
    paired = {name: float(np.median(np.array(t) / base)) for name, t in times.items()}
    same = {name: same_weights(built["current"][0], built[name][0]) for name in sides}
    print(f"\n{args.config}: {args.rounds} rounds of {args.steps} minibatches, in turn")
    print("| side | options | ms/minibatch (median) | mb/s | time / current | median of rounds' ratios | same weights |")
    print("|---|---|---|---|---|---|---|")
    for name, opts in sides.items():
        print(f"| {name} | {json.dumps(opts)} | {med[name]:.3f} | {1e3 / med[name]:.1f} | {ratio[name]:.3f} "
              f"| {paired[name]:.3f} | {'yes' if same[name] else 'no'} |")
    import jax
    record = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "versions": {"python": platform.python_version(), "jax": jax.__version__},
              "settings": vars(args) | {"out": str(args.out)}, "options": sides,
              "ms_per_minibatch": times, "median": med, "ratio": ratio, "paired_ratio": paired,
              "same_weights": same}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
