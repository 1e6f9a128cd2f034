"""Training speed: one epoch on Diginetica with the RetailRocket best parameters.

Prints a table (mb/s, e/s, compile seconds with a cold and a warm cache, peak memory) and
writes it as JSON. The cold-cache figure comes from a fresh cache folder in a child process,
the warm one from a second child reusing it.

    python bench/train_speed.py [--data ../shared/data/diginetica/train_full.tsv.gz] [--backend jax]
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
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "diginetica" / "train_full.tsv.gz"
RETAILROCKET = ("loss=bpr-max,constrained_embedding=True,embedding=0,final_act=elu-0.5,layers=224,"
                "batch_size=80,dropout_p_embed=0.5,dropout_p_hidden=0.05,learning_rate=0.05,momentum=0.4,"
                "n_sample=2048,sample_alpha=0.4,bpreg=1.95,logq=0.0,n_epochs=1")


def child(args):
    """Runs one training in this process and prints one JSON line with the figures."""
    sys.path.insert(0, str(ROOT))
    from gru4rec import GRU4Rec
    from gru4rec.data import load
    df = load(args.data)
    model = GRU4Rec.from_param_string(args.params, backend=args.backend, device=args.device,
                                      steps_per_call=args.steps_per_call)
    t0 = time.time()
    model.fit(df, show_progress=False)
    total = time.time() - t0
    epoch = model.history[0]
    print(json.dumps({"epoch_seconds": epoch.seconds, "mb_per_s": epoch.mb_per_s,
                      "events_per_s": epoch.events_per_s, "compile_seconds": model.compile_seconds,
                      "fit_seconds": total, "loss": epoch.loss,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(args, cache):
    env = dict(os.environ, GRU4REC_CACHE=cache)
    cmd = [sys.executable, __file__, "--child", "--data", str(args.data), "--backend", args.backend,
           "--device", args.device, "--params", args.params, "--steps-per-call", str(args.steps_per_call)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"benchmark run failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--params", default=RETAILROCKET)
    ap.add_argument("--steps-per-call", type=int, default=32)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_speed.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as cache:
        cold = run_child(args, cache)
        warm = run_child(args, cache)
    import numpy, pytensor, jax
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count()},
              "versions": {"python": platform.python_version(), "pytensor": pytensor.__version__,
                           "jax": jax.__version__, "numpy": numpy.__version__},
              "settings": {"data": str(args.data), "params": args.params, "backend": args.backend,
                           "device": args.device, "steps_per_call": args.steps_per_call},
              "cold_cache": cold, "warm_cache": warm}
    rows = [("mb/s", "mb_per_s", "{:.1f}"), ("e/s", "events_per_s", "{:.0f}"),
            ("epoch seconds", "epoch_seconds", "{:.1f}"), ("compile seconds", "compile_seconds", "{:.1f}"),
            ("peak memory MiB", "peak_rss_mib", "{:.0f}"), ("epoch loss", "loss", "{:.6f}")]
    print(f"{'':18}{'cold cache':>12}{'warm cache':>12}")
    for label, key, fmt in rows:
        print(f"{label:18}{fmt.format(cold[key]):>12}{fmt.format(warm[key]):>12}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
