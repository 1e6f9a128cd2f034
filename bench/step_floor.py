"""How far a training step is from its floor on this machine: the step's matrix products and the
item matrix's sparse update, each timed alone, beside the step as training runs it.

    python bench/step_floor.py [--config retailrocket rsc15] [--epochs 5] [--sessions 30000]

Trains `--epochs` epochs of a configuration of bench/profile.py (one GRU layer, constrained
embedding: the RetailRocket and the RSC15 parameters) on the first `--sessions` sessions of its
data. After every epoch it times, warm and back to back (the machine's speed drifts within an
hour, so each epoch is compared with the floor measured right after it):
- products: every matrix product of one step, in one jax.jit that may run them side by side as
  the step does: the GRU's three and the scores forward; backward the scores' two, and two for
  each GRU product except the gradient w.r.t. the carried hidden state, which the step does not
  take (it enters as a constant);
- update: SparseAdagrad's update of the item matrix (the CPU kernel where it runs) on one
  step's rows: B inputs and B targets drawn as often as the items occur, n_sample samples
  from the training's SampleStore (support ** sample_alpha); a different draw on every call.
The floor is products + update: the update reads and writes the rows in main memory (weights,
accumulator, velocity) and needs every gradient, so it cannot overlap the products. Prints a
row per epoch after the first (a warm-up): the step's ms from the epoch's mb/s, the
products' ms and GFLOP/s, the update's ms, step / floor; then the medians. Writes JSON.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import faithfulness as fb
from profile import CONFIGS, cpu_name, load_config

ROOT = Path(__file__).resolve().parents[1]


def product_shapes(B, H, L, K):
    """(lhs, rhs) shapes of one step's products: input H, layer L, K score columns."""
    forward = [((B, H), (H, 3 * L)), ((B, L), (L, 2 * L)), ((B, L), (L, L)), ((B, L), (L, K))]
    scores = [((B, K), (K, L)), ((K, B), (B, L))]
    gru = [((H, B), (B, 3 * L)), ((B, 3 * L), (3 * L, H)), ((L, B), (B, 2 * L)), ((L, B), (B, L)),
           ((B, L), (L, L))]  # dWx, dx, dWrz, dWh, d(r h)
    return forward + scores + gru


def products_timer(shapes, calls=100):
    """() -> seconds per step of the products `shapes`, computed together in one jax.jit."""
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(0)
    args = [jnp.asarray(rng.standard_normal(s, np.float32)) for pair in shapes for s in pair]
    run = jax.jit(lambda *a: [jnp.dot(a[i], a[i + 1], precision="highest") for i in range(0, len(a), 2)])
    jax.block_until_ready(run(*args))

    def timed():
        t0 = time.perf_counter()
        for _ in range(calls):
            out = run(*args)
        jax.block_until_ready(out)
        return (time.perf_counter() - t0) / calls

    return timed


def update_timer(model, draws=64, rounds=3):
    """() -> seconds per call of the item matrix's SparseAdagrad update on `draws` different
    steps' rows (module doc), on copies of the model's weights."""
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify
    from gru4rec.ops.sparse_adagrad import SparseAdagrad
    from gru4rec.sampling import SampleStore
    p, net = model.params, model.net
    Wy = jnp.asarray(net.W["Wy"].get_value())
    rng = np.random.default_rng(0)
    samples = SampleStore(net.pop, p.n_sample, p.sample_alpha, draws * p.n_sample, 1, rng).block
    freq = net.pop.astype(np.float64) / net.pop.sum()
    events = rng.choice(net.n_items, (draws, 2 * p.batch_size), p=freq)  # inputs and targets
    idx = [jnp.asarray(np.concatenate([e, s]).astype(np.int32)) for e, s in zip(events, samples)]
    g = jnp.asarray(rng.standard_normal((len(idx[0]), Wy.shape[1]), np.float32) * 0.01)
    state = [Wy.copy(), jnp.ones_like(Wy)] + [jnp.zeros_like(Wy)] * (p.momentum > 0)
    update = jax.jit(jax_funcify(SparseAdagrad(p.learning_rate, p.momentum, p.lmbd)),
                     donate_argnums=tuple(range(len(state))))  # updated in place, as in training
    state = list(update(*state, idx[0], g))

    def timed():
        nonlocal state
        t0 = time.perf_counter()
        for _ in range(rounds):
            for i in idx:
                state = list(update(*state, i, g))
        jax.block_until_ready(state)
        return (time.perf_counter() - t0) / (rounds * len(idx))

    return timed


def run_config(name, args):
    """Trains configuration `name`, timing the floor after every epoch; prints and returns the rows."""
    import contextlib
    import io
    from gru4rec import GRU4Rec
    train, _, params = load_config(name, args.sessions)
    model = GRU4Rec.from_param_string(params + f",n_epochs={args.epochs}")
    p = model.params
    if len(p.layers) != 1 or not p.constrained_embedding:
        raise SystemExit(f"{name}: this floor covers one GRU layer with constrained embedding")
    shapes = product_shapes(p.batch_size, p.layers[0], p.layers[0], p.batch_size + p.n_sample)
    gflop = sum(2 * a[0] * a[1] * b[1] for a, b in shapes) / 1e9
    rows, timers = [], {}

    def after_epoch(record):
        if not timers:  # the model's weights exist once fit has started
            timers.update(products=products_timer(shapes), update=update_timer(model))
        if record.epoch > 1:
            rows.append({"epoch": record.epoch, "step_ms": 1e3 / record.mb_per_s,
                         "products_ms": timers["products"]() * 1e3, "update_ms": timers["update"]() * 1e3})

    with contextlib.redirect_stdout(io.StringIO()):
        model.fit(train, callback=after_epoch, show_progress=False)
    for r in rows:
        r["floor_ms"] = r["products_ms"] + r["update_ms"]
        r["x_floor"] = r["step_ms"] / r["floor_ms"]
    medians = {k: float(np.median([r[k] for r in rows])) for k in rows[0] if k != "epoch"}
    print(f"\n{name}: {model.net.n_items} items, {len(shapes)} products of {gflop:.3f} GFLOP a step")
    print("| epoch | step ms | products ms | GFLOP/s | update ms | floor ms | x floor | floor mb/s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows + [dict(medians, epoch="median")]:
        print(f"| {r['epoch']} | {r['step_ms']:.3f} | {r['products_ms']:.3f} | {gflop / r['products_ms'] * 1e3:.0f} "
              f"| {r['update_ms']:.3f} | {r['floor_ms']:.3f} | {r['x_floor']:.2f} | {1e3 / r['floor_ms']:.0f} |")
    return {"items": model.net.n_items, "gflop_per_step": gflop, "products": shapes, "epochs": rows,
            "medians": medians, "loss": [rec.loss for rec in model.history]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", default=["retailrocket", "rsc15"],
                    choices=[c for c in CONFIGS if c != "beauty-full"])
    ap.add_argument("--epochs", type=int, default=5, help="the first warms up; each later one is a row")
    ap.add_argument("--sessions", type=int, default=30000, help="train on the first N sessions (0: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "step_floor.json")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    load_before, started = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {name: run_config(name, args) for name in args.config}
    record = {"machine": {"platform": platform.platform(), "processor": cpu_name(), "cpus": os.cpu_count(),
                          "load_average_before": load_before, "load_average_after": os.getloadavg()},
              "versions": fb.self_versions(), "started": started,
              "settings": vars(args) | {"out": str(args.out)}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
