"""Evaluation at both ends of the scale: a small test set and a large catalogue.

    python bench/eval_scale.py [--items 200000] [--rounds 3] [--port DIR --port-python PY] [--out bench/eval_scale.json]

small: the yoochoose-100k test set (10,152 predictions against 2,933 items) with a 1-epoch
model of the RSC15 parameters, warm (the best of 3 runs after a compiling one).
large: a generated catalogue of --items items (every item in two-event training sessions,
1 epoch, layers 100) and 8,000 random test sessions of 5 events (32,000 predictions), warm;
the peak memory of evaluation is reported as its excess over training's peak (ru_maxrss).
Then --rounds rounds time the same evaluation in one pass (gru4rec.evaluation.softmax_band_counts,
the default where the CPU kernels are available) and in two (softmax_rank_counts, the kernels
turned off) in turn, and report the medians, their ratio and how many ranks differ (the two
passes compare the target's score from one product with the other scores from a second one,
whose last bits XLA may compute differently: docs/performance.md).
With --port (a checkout of the official PyTorch port, set up as docs/faithfulness.md says),
the port's run.py then trains and evaluates the same large case from TSV files, with the
same parameters, and its "Evaluation took" is its time (its peak memory is not split into
training and evaluation, so only ours is reported).
Each case runs in its own process. Prints a table and writes JSON.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT.parent / "shared" / "data" / "yoochoose-100k"


def warm_seconds(model, test, runs=3):
    model.evaluate(test, cut_off=[20], mode="conservative")  # compiles
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        m = model.evaluate(test, cut_off=[20], mode="conservative")
        best = min(best, time.perf_counter() - t0)
    return best, m


def small():
    from gru4rec import GRU4Rec
    from gru4rec.data import load
    model = GRU4Rec.from_param_file(ROOT / "paramfiles" / "rsc15_xe_shared_100_best.py")
    model.set_params(n_epochs=1)
    model.fit(load(SMALL / "train_full.tsv.gz"))
    seconds, m = warm_seconds(model, load(SMALL / "test.tsv.gz"))
    return {"seconds": seconds, "predictions": m.n, "recall@20": m.recall[20], "mrr@20": m.mrr[20]}


LARGE_PARAMS = dict(loss="cross-entropy", final_act="softmax", layers=[100], batch_size=256, n_sample=2048,
                    logq=1.0, n_epochs=1, constrained_embedding=True)


def large_data(n_items):
    """(train, test): every item in two-event training sessions, 8,000 random test sessions."""
    import numpy as np
    import pandas as pd
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"SessionId": np.repeat(np.arange(n_items // 2), 2),
                          "ItemId": rng.permutation(n_items).astype(str), "Time": np.arange(n_items)})
    n = 40000
    test = pd.DataFrame({"SessionId": np.repeat(np.arange(n // 5), 5),
                         "ItemId": rng.integers(0, n_items, n).astype(str), "Time": np.arange(n)})
    return train, test


def large(n_items, rounds):
    import contextlib
    import numpy as np
    from gru4rec import GRU4Rec
    from gru4rec.ops import cpu_kernels
    train, test = large_data(n_items)
    model = GRU4Rec(**LARGE_PARAMS)
    model.fit(train)
    train_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds, m = warm_seconds(model, test, runs=1)
    eval_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"seconds": seconds, "predictions": m.n, "items": n_items, "train_peak_mib": train_peak,
              "eval_excess_mib": eval_peak - train_peak}
    sides = {"one pass": contextlib.nullcontext, "two passes": cpu_kernels.turned_off}
    times, ranks = {name: [] for name in sides}, {}
    for r in range(rounds + 1):  # round 0 compiles
        for name, ctx in sides.items():
            with ctx():
                t0 = time.perf_counter()
                ranks[name] = model.evaluate(test, cut_off=[20], mode="conservative", return_ranks=True).ranks
                if r:
                    times[name].append(time.perf_counter() - t0)
    if rounds:
        result["passes"] = {"seconds": times, "median": {k: float(np.median(v)) for k, v in times.items()},
                            "ranks_differing": int((ranks["one pass"] != ranks["two passes"]).sum()),
                            "largest_rank_difference": float(np.abs(ranks["one pass"] - ranks["two passes"]).max())}
    return result


def port(args):
    """The port's evaluation seconds on the large case, from its own run.py."""
    sys.path.insert(0, str(ROOT / "bench"))
    import faithfulness as fb
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f for f in ("train.tsv", "test.tsv")]
        for frame, f in zip(large_data(args.items), files):
            frame.to_csv(f, sep="\t", index=False)
        out = fb.run_command(fb.peer_command(args.port_python, args.port, *files, LARGE_PARAMS, "conservative"),
                             "port")
    return fb.parse_output(out)["eval_time_s"]


def child(case, n_items, rounds):
    sys.path.insert(0, str(ROOT))
    result = small() if case == "small" else large(n_items, rounds)
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "eval_scale.json")
    ap.add_argument("--port", help="checkout of hidasib/GRU4Rec_PyTorch_Official (optional side)")
    ap.add_argument("--port-python", default="python", help="Python with torch for the port")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of one pass against two (0: none)")
    ap.add_argument("--child", choices=["small", "large"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.items, args.rounds)
    results = {}
    for case in ("small", "large"):
        if case == "small" and not SMALL.exists():
            print(f"small: skipped, {SMALL} not found")
            continue
        r = subprocess.run([sys.executable, __file__, "--child", case, "--items", str(args.items),
                            "--rounds", str(args.rounds)],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"{case} failed:\n{r.stderr[-3000:]}")
        results[case] = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"| {'case':40} | {'predictions':>11} | {'seconds':>8} | {'memory over training':>20} |")
    print(f"|{'-' * 42}|{'-' * 13}|{'-' * 10}|{'-' * 22}|")
    if "small" in results:
        s = results["small"]
        print(f"| {'yoochoose-100k test set (2,933 items)':40} | {s['predictions']:11,} | {s['seconds']:8.3f} | {'':>20} |")
    g = results["large"]
    label = f"generated, {g['items']:,} items"
    print(f"| {label:40} | {g['predictions']:11,} | {g['seconds']:8.1f} | {g['eval_excess_mib']:16,.0f} MiB |")
    if "passes" in g:
        med = g["passes"]["median"]
        print(f"\none pass / two passes, {args.rounds} rounds in turn (medians): {med['one pass']:.1f} / "
              f"{med['two passes']:.1f} s = {med['one pass'] / med['two passes']:.2f}x; ranks differing: "
              f"{g['passes']['ranks_differing']:,} of {g['predictions']:,}, by up to "
              f"{g['passes']['largest_rank_difference']:g}\n")
    if args.port:
        results["large_port_seconds"] = port(args)
        print(f"| {'the same, official PyTorch port':40} | {g['predictions']:11,} | "
              f"{results['large_port_seconds']:8.1f} | {'':>20} |")
    record = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "python": platform.python_version(), "results": results}
    args.out.write_text(json.dumps(record, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
