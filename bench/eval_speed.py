"""Evaluation speed on Diginetica: 60,858 test predictions ranked against all 43,097 items.

    PYTHONPATH=. python bench/eval_speed.py [--model PATH] [--steps 1 4] [--batch-size 512] [--rounds 3]

Trains one epoch with the RetailRocket parameters (spec 16.1) unless the model file exists,
then times `evaluate` (conservative ties, cut-offs 1/5/10/20). The first run of each setting
includes compilation (`cold s`); then --rounds warm runs alternate with runs of the floor;
`cpu s` is the process's CPU time (all threads) of the last warm run, a check on wall times
taken while other work shares the machine. Writes bench/results/eval_speed.json.

The floor is the time of the evaluation's matrix products alone: the schedule's number of
steps of warm products of the step's shape (slots x layer size times layer size x padded
items, the items' weights laid out as the evaluation passes them, the output written), one
after another. The machine's speed drifts (by up to 2x within an hour on this project's
shared CPUs), so each round times the evaluation and the floor back to back, in alternating
order; `x floor` is the median over rounds of the warm time over that round's floor, `warm s`
and `floor s` the medians of each.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytensor  # noqa: E402

from gru4rec import GRU4Rec  # noqa: E402
from gru4rec.data import load  # noqa: E402
from gru4rec.evaluation import (eval_schedule, eval_slots, evaluate, known_sessions,  # noqa: E402
                                padded_items)

DATA = ROOT.parent / "shared" / "data" / "diginetica"
PARAMS = ("loss=bpr-max,final_act=elu-0.5,layers=224,batch_size=80,dropout_p_embed=0.5,"
          "dropout_p_hidden=0.05,learning_rate=0.05,momentum=0.4,n_sample=2048,sample_alpha=0.4,"
          "bpreg=1.95,constrained_embedding=True,embedding=0,n_epochs=1")


def product_floor(model, test, batch_size):
    """(run, steps, slots): run() times the products of an evaluation of `test` alone (module doc)."""
    p = model.params
    items, offsets = known_sessions(model, test, p.session_key, p.item_key, p.time_key)
    slots = eval_slots(offsets, batch_size, model.net.n_items)
    steps = len(eval_schedule(items, offsets, slots, model.net.pad)[0])
    Wy = jnp.asarray(model.net.W["Wy"].get_value()[:model.net.n_items])
    WyT = jnp.pad(Wy, ((0, padded_items(model.net.n_items)[0] - Wy.shape[0]), (0, 0))).T
    H = jnp.asarray(np.random.default_rng(0).standard_normal((slots, Wy.shape[1]), np.float32))
    product = jax.jit(lambda h, w: jnp.dot(h, w, precision="highest"))  # D x items, as PaddedOutput
    product(H, WyT).block_until_ready()

    def run():
        t0 = time.perf_counter()
        for _ in range(steps):
            product(H, WyT).block_until_ready()
        return time.perf_counter() - t0

    return run, steps, slots


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "bench" / "results" / "diginetica_rr_1epoch.npz"))
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3, help="warm runs, each beside a run of the floor")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eval_speed.json"))
    a = ap.parse_args()
    model_path = Path(a.model)
    train_seconds = None
    if model_path.exists():
        model = GRU4Rec.load(model_path, device=a.device)
    else:
        model = GRU4Rec.from_param_string(PARAMS, device=a.device)
        t0 = time.time()
        model.fit(load(DATA / "train_full.tsv.gz"))
        train_seconds = time.time() - t0
        model_path.parent.mkdir(parents=True, exist_ok=True)
        model.save(model_path)
    test = load(DATA / "test.tsv.gz")
    load_before = os.getloadavg()
    floor, floor_steps, slots = product_floor(model, test, a.batch_size)
    rows = []
    for steps in a.steps:
        def timed():
            t0, c0 = time.time(), time.process_time()
            res = evaluate(model, test, cut_off=[1, 5, 10, 20], batch_size=a.batch_size,
                           mode="conservative", steps=steps, progress=False)
            return time.time() - t0, time.process_time() - c0, res

        cold = timed()[0]
        warm, floors = [], []
        for r in range(a.rounds):
            if r % 2:
                floors.append(floor())
            seconds, cpu, res = timed()
            warm.append(seconds)
            if not r % 2:
                floors.append(floor())
        ratios = np.array(warm) / np.array(floors)
        rows.append({"steps_per_call": steps, "batch_size": a.batch_size, "cold_s": cold,
                     "warm_s": float(np.median(warm)), "floor_s": float(np.median(floors)),
                     "x_floor": float(np.median(ratios)), "rounds": {"warm_s": warm, "floor_s": floors},
                     "warm_cpu_s": cpu, "predictions": res.n, "predictions_per_s": res.n / np.median(warm),
                     "recall@20": res.recall[20], "mrr@20": res.mrr[20]})
    n_items = model.net.n_items
    print(f"\n{'steps/call':>10} {'batch':>6} {'cold s':>8} {'warm s':>8} {'floor s':>8} {'x floor':>8} "
          f"{'cpu s':>8} {'pred/s':>9} {'Recall@20':>10} {'MRR@20':>8}")
    for r in rows:
        print(f"{r['steps_per_call']:>10} {r['batch_size']:>6} {r['cold_s']:>8.2f} {r['warm_s']:>8.2f} "
              f"{r['floor_s']:>8.2f} {r['x_floor']:>8.2f} {r['warm_cpu_s']:>8.2f} {r['predictions_per_s']:>9.0f} "
              f"{r['recall@20']:>10.6f} {r['mrr@20']:>8.6f}")
    print(f"floor: {floor_steps} products of {slots} x {model.net.W['Wy'].get_value().shape[1]} by the "
          f"padded items; x floor: median over {a.rounds} rounds of warm s / floor s")
    out = {
        "benchmark": "evaluation speed, diginetica test vs all items",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "jax_devices": [str(d) for d in jax.devices()],
                    # other work on the machine slows every number here; the load says how much
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "versions": {"python": platform.python_version(), "pytensor": pytensor.__version__,
                     "jax": jax.__version__, "numpy": np.__version__, "pandas": pd.__version__},
        "settings": {"params": PARAMS, "model": str(model_path), "train_seconds": train_seconds,
                     "n_items": n_items, "mode": "conservative", "backend": model.backend,
                     "device": str(model.device), "cutoffs": [1, 5, 10, 20]},
        "results": rows,
        "product_floor": {"steps": floor_steps, "slots": slots},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
