"""Training speed under two sets of XLA compile options, side by side in one process.

    python bench/ab_xla.py [--config retailrocket] [--change '{"xla_cpu_copy_insertion_use_region_analysis": false}']
        [--rounds 30] [--steps 320] [--sessions 30000]

Compiles the training call of one configuration (bench/profile.py's, on the first --sessions
sessions) twice: with gru4rec.backend.COMPILER_OPTIONS as they are ("current") and with the
options of --change merged over them ("changed"). The two then train in turn on the same
slices of an epoch's schedule, --steps minibatches each, --rounds times, the order swapped every
round, so that a machine whose speed drifts (this project's shared CPUs do, by 2x within an hour)
slows both alike. Prints the median milliseconds per minibatch of each and their ratio, and
writes them as JSON (--out). The weights of the two differ after the first slice only where the
options change the numbers; this script times, bench/faithfulness.py and the tests check numbers.
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


def _profile_bench():
    """bench/profile.py (its configurations), loaded by path: `profile` is also a standard module."""
    spec = importlib.util.spec_from_file_location("gru4rec_bench_profile", ROOT / "bench" / "profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PROFILE = _profile_bench()


def build(params, train, options, K):
    """(trainer, sampler, padded schedule) of a model compiled with `options` for the CPU."""
    saved = backend.COMPILER_OPTIONS
    backend.COMPILER_OPTIONS = {"cpu": options}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
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
    train, _, params = PROFILE.load_config(args.config, args.sessions)
    current = dict(backend.COMPILER_OPTIONS.get("cpu", {}))
    sides = {"current": current, "changed": {**current, **json.loads(args.change)}}
    built = {name: build(params, train, opts, args.steps_per_call) for name, opts in sides.items()}
    steps = args.steps - args.steps % args.steps_per_call
    n = min(len(b[2].x) for b in built.values()) - steps
    times = {name: [] for name in sides}
    for r in range(args.rounds):
        start = (r * steps) % n
        start -= start % args.steps_per_call
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            trainer, sampler, sched = built[name]
            part = SimpleNamespace(**{f: getattr(sched, f)[start:start + steps] for f in ("x", "y", "active", "reset")})
            t0 = time.perf_counter()
            trainer.run(part, sampler)
            times[name].append((time.perf_counter() - t0) / steps * 1e3)
    return sides, times


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="retailrocket", choices=[c for c in PROFILE.CONFIGS if c != "beauty-full"])
    ap.add_argument("--change", default='{"xla_cpu_copy_insertion_use_region_analysis": false}',
                    help="XLA options (JSON) merged over gru4rec.backend.COMPILER_OPTIONS['cpu']")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--steps", type=int, default=320, help="minibatches per timed slice")
    ap.add_argument("--steps-per-call", type=int, default=32)
    ap.add_argument("--sessions", type=int, default=30000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ab_xla.json")
    args = ap.parse_args()
    sides, times = run(args)
    med = {name: float(np.median(t)) for name, t in times.items()}
    print(f"\n{args.config}: {args.rounds} rounds of {args.steps} minibatches, alternating")
    print("| side | options | ms/minibatch (median) | mb/s |")
    print("|---|---|---|---|")
    for name, opts in sides.items():
        print(f"| {name} | {json.dumps(opts)} | {med[name]:.3f} | {1e3 / med[name]:.1f} |")
    ratio = med["changed"] / med["current"]
    print(f"changed / current time: {ratio:.3f}")
    import jax
    record = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "versions": {"python": platform.python_version(), "jax": jax.__version__},
              "settings": vars(args) | {"out": str(args.out)}, "options": sides,
              "ms_per_minibatch": times, "median": med, "ratio": ratio}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
