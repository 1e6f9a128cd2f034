"""Benchmark suite: training throughput over configurations, with the floor beside each figure.

Trains one epoch with `GRU4Rec.fit` on the earliest sessions of real data (Diginetica by
default) that fill about `--steps` minibatches, for the RetailRocket, Diginetica and RSC15
best-parameter configurations and a grid of batch sizes and layer sizes for cross-entropy and
BPR-max. The figures are the epoch's record in `model.history` (its e/s include the epoch's
shrinking tail). For each it prints mb/s and e/s next to a floor: the
matrix-product FLOPs and the bytes the step must move, against this machine's measured matmul
and copy speed. Writes JSON (machine, versions, settings, figures) and a PNG of mb/s against
batch size.

    python bench/suite.py [--steps 320] [--device cpu] [--only best,grid]
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "diginetica" / "train_full.tsv.gz"

BEST = {
    "retailrocket": dict(loss="bpr-max", final_act="elu-0.5", layers=[224], batch_size=80, dropout_p_embed=0.5,
                         dropout_p_hidden=0.05, learning_rate=0.05, momentum=0.4, sample_alpha=0.4, bpreg=1.95),
    "diginetica": dict(loss="bpr-max", final_act="elu-1", layers=[512], batch_size=128, dropout_p_embed=0.5,
                       dropout_p_hidden=0.3, learning_rate=0.05, momentum=0.15, sample_alpha=0.3, bpreg=0.9),
    "rsc15": dict(loss="cross-entropy", final_act="softmax", layers=[100], batch_size=32, dropout_p_hidden=0.4,
                  learning_rate=0.2, momentum=0.2, sample_alpha=0.5, bpreg=0.0, logq=1.0),
}


def grid():
    for loss, act in (("cross-entropy", "softmax"), ("bpr-max", "elu-0.5")):
        for layers in (100, 512):
            for b in (32, 64, 128, 256):
                yield f"{loss} L={layers} B={b}", dict(loss=loss, final_act=act, layers=[layers], batch_size=b,
                                                       logq=1.0 if loss == "cross-entropy" else 0.0)


def machine_peaks():
    """Measured matmul GFLOP/s on a scoring-sized product and copy GB/s on a large array."""
    a = np.random.rand(128, 256).astype(np.float32)
    b = np.random.rand(256, 2176).astype(np.float32)
    for _ in range(3):
        a @ b
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 0.5:
        a @ b
        n += 1
    gflops = 2 * 128 * 256 * 2176 * n / (time.perf_counter() - t) / 1e9
    big = np.ones(64 * 2 ** 20 // 4, np.float32)
    dst = np.empty_like(big)
    np.copyto(dst, big)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 0.5:
        np.copyto(dst, big)
        n += 1
    gbps = 2 * big.nbytes * n / (time.perf_counter() - t) / 1e9
    return gflops, gbps


def floor(p, n_items):
    """(GFLOP, MB) per minibatch: matrix products forward and backward, and the bytes of the
    gathered rows, their gradients and the sparse optimizer state read and written."""
    B, S, layers = p.batch_size, p.n_sample, p.layers
    K = B + S
    H = layers[-1]
    flops = 3 * 2 * B * K * H  # scores, and the two products of their backward pass
    d_in = H  # shared embedding
    for L in layers:
        flops += 3 * 2 * B * (d_in * 3 * L + L * 3 * L)
        d_in = L
    rows = (B + K) * H
    n_state = 1 + 1 + (1 if p.momentum > 0 else 0)  # weight, Adagrad accumulator, velocity
    bytes_ = 4 * rows * (2 * n_state + 2)  # read+write each state row, gradient write+read
    return flops / 1e9, bytes_ / 1e6


def head_sessions(events, n_pairs):
    """The events of the earliest-starting sessions that hold at least `n_pairs` (input,
    target) pairs: what the first minibatches of an epoch train on (sessions run in order of
    their start time, spec 2.6)."""
    sessions = events.groupby("SessionId")["Time"]
    start = sessions.min().sort_values(kind="stable")
    pairs = (sessions.size() - 1).reindex(start.index).to_numpy()
    n = int(np.searchsorted(np.cumsum(pairs), n_pairs)) + 1
    return events[events["SessionId"].isin(start.index[:n])]


def run_config(name, overrides, events, args, peaks):
    """One epoch of fit() on the sessions that fill about `--steps` minibatches; the figures
    come from the model's history."""
    from gru4rec import GRU4Rec
    model = GRU4Rec(backend=args.backend, device=args.device, steps_per_call=args.steps_per_call,
                    constrained_embedding=True, n_sample=2048, n_epochs=1, **overrides)
    model.fit(head_sessions(events, args.steps * model.params.batch_size), show_progress=False)
    epoch = model.history[0]
    gflop, mb = floor(model.params, len(model.itemidmap))
    floor_s = max(gflop / peaks[0], mb / 1e3 / peaks[1])
    return {"name": name, "params": overrides, "mb_per_s": epoch.mb_per_s, "events_per_s": epoch.events_per_s,
            "compile_seconds": model.compile_seconds, "gflop_per_mb": gflop, "mbytes_per_mb": mb,
            "floor_mb_per_s": 1 / floor_s, "steps": epoch.minibatches}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--steps", type=int, default=320, help="about this many minibatches per configuration")
    ap.add_argument("--steps-per-call", type=int, default=32)
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="best,grid", help="comma list of: best, grid")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    from gru4rec.data import load
    events = load(args.data)
    peaks = machine_peaks()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"measured matmul {peaks[0]:.1f} GFLOP/s, copy {peaks[1]:.1f} GB/s; device {args.device}")
    configs = []
    if "best" in args.only:
        configs += [(k, v) for k, v in BEST.items()]
    if "grid" in args.only:
        configs += list(grid())
    results = []
    print(f"{'configuration':32}{'mb/s':>9}{'e/s':>10}{'floor mb/s':>12}{'GFLOP/mb':>10}{'MB/mb':>8}{'compile s':>10}")
    for name, ov in configs:
        r = run_config(name, ov, events, args, peaks)
        results.append(r)
        print(f"{name:32}{r['mb_per_s']:9.1f}{r['events_per_s']:10.0f}{r['floor_mb_per_s']:12.1f}"
              f"{r['gflop_per_mb']:10.3f}{r['mbytes_per_mb']:8.1f}{r['compile_seconds']:10.1f}", flush=True)
    import jax
    import pytensor
    meta = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                        "device": args.device, "matmul_gflops": peaks[0], "copy_gbps": peaks[1]},
            "versions": {"python": platform.python_version(), "pytensor": pytensor.__version__,
                         "jax": jax.__version__, "numpy": np.__version__},
            "settings": {"data": str(args.data), "steps": args.steps, "steps_per_call": args.steps_per_call,
                         "backend": args.backend},
            "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    tag = f"suite_{args.device.replace(':', '')}"
    (args.out / f"{tag}.json").write_text(json.dumps(meta, indent=2))
    grid_rows = [r for r in results if "B=" in r["name"]]
    if grid_rows:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for series in sorted({r["name"].rsplit(" B=", 1)[0] for r in grid_rows}):
            pts = [(r["params"]["batch_size"], r["mb_per_s"]) for r in grid_rows if r["name"].startswith(series + " ")]
            ax.plot(*zip(*pts), marker="o", label=series)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("minibatches / s")
        ax.set_title(f"GRU4Rec-PyTensor training speed ({args.device}, n_sample=2048)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.out / f"{tag}.png", dpi=110)
    print(f"written to {args.out / tag}.json" + (" and .png" if grid_rows else ""))


if __name__ == "__main__":
    main()
