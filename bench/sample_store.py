"""Time to draw one sample store: the table search of gru4rec.sampling against a plain binary
search of the CDF, on the popularity of real data sets.

    python bench/sample_store.py [--data ../shared/data] [--rounds 3] [--out bench/results/sample_store.json]

For each data set (Diginetica and yoochoose-100k training sets) and sample_alpha: the default
store (10,000,000 ids in rows of 2048), drawn --rounds times each way from the same seed, the
two in turn; prints the best seconds of each and checks that both gave the same block. The
training loop waits for every regenerated store, and `run.py` for the first one, which also
waits for the table to be built (once per fit: its best time of --rounds is printed too).
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

from gru4rec.data import load  # noqa: E402
from gru4rec.sampling import InverseCdf, SampleStore  # noqa: E402

SETS = {"diginetica": "diginetica/train_full.tsv.gz", "yoochoose-100k": "yoochoose-100k/train_full.tsv.gz"}


def binary_search_block(store, seed):
    """The block as one np.searchsorted of all the uniforms (the code before the table)."""
    u = np.random.default_rng(seed).random(store.n_rows * store.n_sample)
    return np.searchsorted(store.inverse.cdf, u, side="right").astype(np.int32).reshape(store.n_rows, -1)


def time_both(pop, alpha, rounds, seed=42):
    store = SampleStore(pop, 2048, alpha, 10_000_000, 32, np.random.default_rng(seed))
    best = {"table": float("inf"), "binary search": float("inf"), "building the table": float("inf")}
    for _ in range(rounds):
        t0 = time.perf_counter()
        InverseCdf(store.inverse.cdf)
        best["building the table"] = min(best["building the table"], time.perf_counter() - t0)
        store.rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        table = store.generate()
        best["table"] = min(best["table"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        plain = binary_search_block(store, seed)
        best["binary search"] = min(best["binary search"], time.perf_counter() - t0)
    return best, bool(np.array_equal(table, plain)), float(np.mean(store.inverse.table < 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sample_store.json")
    args = ap.parse_args()
    rows = []
    for name, rel in SETS.items():
        if not (args.data / rel).exists():
            sys.exit(f"error: {args.data / rel} not found (--data names the folder of the data sets)")
        pop = load(args.data / rel)["ItemId"].value_counts().to_numpy()
        for alpha in (0.4, 0.75):
            best, same, searched = time_both(pop, alpha, args.rounds)
            rows.append({"data": name, "items": len(pop), "sample_alpha": alpha, "seconds": best,
                         "same_block": same, "searched_buckets": searched})
    print("| data | items | sample_alpha | table, s | binary search, s | speed-up | building the table once, s "
          "| same block | buckets searched |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["seconds"]
        print(f"| {r['data']} | {r['items']:,} | {r['sample_alpha']} | {s['table']:.3f} | {s['binary search']:.3f} "
              f"| {s['binary search'] / s['table']:.1f}x | {s['building the table']:.3f} "
              f"| {'yes' if r['same_block'] else 'NO'} | {r['searched_buckets']:.1%} |")
    record = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "versions": {"python": platform.python_version(), "numpy": np.__version__},
              "settings": {"rounds": args.rounds, "store_size": 10_000_000, "n_sample": 2048}, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"written to {args.out}")
    if not all(r["same_block"] for r in rows):
        sys.exit("error: the table search gave a different block")


if __name__ == "__main__":
    main()
