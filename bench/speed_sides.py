"""Training and evaluation speed of this package beside the official PyTorch port and the
original Theano code: one run after another on the same files with the same parameters.

    python bench/speed_sides.py [--config rsc15 retailrocket] [--runs 2]
        [--port DIR --port-python PY] [--original DIR --original-python PY]
        [--out bench/results/speed_sides.json]

Each side runs its own run.py as a subprocess (bench/faithfulness.py builds the commands and
reads the output; the port and the original are set up as docs/faithfulness.md describes):
the epoch lines give mb/s, "Evaluation took" the evaluation seconds as each run.py measures
them. This package's evaluation seconds include building and compiling the evaluation graph
(from its compile cache after the first run); the original's include Theano's compilation of
its evaluation function (from its cache likewise); the port compiles nothing. The table holds
each side's mean mb/s over its runs' epochs, its fastest evaluation, and this package's speed
as a multiple of each other side's. The sides take turns: run it on an otherwise idle machine.

Configurations:
  rsc15         yoochoose-100k, the RSC15 README parameters (cross-entropy, 100 units, batch 32),
                2 epochs, standard ties
  retailrocket  diginetica, paramfiles/retailrocket_bprmax_shared_best.py (BPR-max, 224 units,
                batch 80), 1 epoch, conservative ties
  synthetic-200k  a large catalogue, not run by default: `python -m gru4rec.synthetic DIR
                --sessions 2000000 --items 200000 --days 30` (7.7M training events, 200K items;
                generated into the temporary folder), the RSC15 README parameters with batch 256,
                1 epoch, standard ties
"""
import argparse
import json
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faithfulness as fb  # noqa: E402  (bench/ is not a package)

CONFIGS = OrderedDict([
    ("rsc15", dict(data="yoochoose-100k", eval_type="standard", params=OrderedDict(fb.XE_README, n_epochs=2))),
    ("retailrocket", dict(data="diginetica", eval_type="conservative",
                          param_file="paramfiles/retailrocket_bprmax_shared_best.py", overrides={"n_epochs": 1})),
    ("synthetic-200k", dict(synthetic=["--sessions", "2000000", "--items", "200000", "--days", "30"],
                            data="generated", eval_type="standard",
                            params=OrderedDict(fb.XE_README, batch_size=256, n_epochs=1))),
])
DEFAULT_CONFIGS = ["rsc15", "retailrocket"]


def input_files(args, cfg, tmp, key):
    """The uncompressed (train, test) files of a configuration, generated for synthetic ones."""
    if "synthetic" in cfg:
        folder = Path(tmp) / key
        cmd = [sys.executable, "-m", "gru4rec.synthetic", str(folder), *cfg["synthetic"]]
        if subprocess.run(cmd, cwd=fb.ROOT, capture_output=True).returncode:
            raise fb.BenchError(f"generating the {key} data failed: {' '.join(cmd)}")
        return folder / "train.tsv", folder / "test.tsv"
    return fb.decompressed(fb.data_files(args.data, cfg["data"]), tmp)


def side_runs(name, args, train, test, params, eval_type):
    """The parsed runs of one side (None when that side was not given)."""
    n = params["n_epochs"]
    if name == "self":
        return fb.run_side("this package", lambda i: fb.self_command(train, test, params, eval_type, 42),
                           args.runs, n, cwd=fb.ROOT)
    if name == "peer" and args.port:
        return fb.run_side("port", lambda i: fb.peer_command(args.port_python, args.port, train, test, params,
                                                             eval_type), args.runs, n)
    if name == "original" and args.original:
        return fb.run_side("original", lambda i: fb.original_command(args.original_python, args.original, train,
                                                                     test, params, eval_type),
                           args.runs, n, env_of=lambda i: fb.original_env(42))
    return None


def summary(runs):
    speeds = [s for r in runs for s in r["mb_per_s"]]
    return dict(mb_per_s=sum(speeds) / len(speeds), mb_per_s_range=[min(speeds), max(speeds)],
                eval_s=min(r["eval_time_s"] for r in runs))


def format_table(key, sides):
    """One row per side: mean mb/s (range), fastest evaluation, this package's multiple."""
    ours = sides["self"]["summary"]
    lines = [f"== {key} ==",
             "| side | mb/s (range over epochs and runs) | evaluation s | this package's mb/s x | evaluation x |",
             "|---|---|---|---|---|"]
    for name, side in sides.items():
        s = side["summary"]
        lo, hi = s["mb_per_s_range"]
        lines.append(f"| {fb.SIDES[name]} | {s['mb_per_s']:.1f} ({lo:.1f}-{hi:.1f}) | {s['eval_s']:.2f} | "
                     f"{ours['mb_per_s'] / s['mb_per_s']:.2f} | {s['eval_s'] / ours['eval_s']:.2f} |")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    p.add_argument("--runs", type=int, default=2, help="runs of each side (default: 2; the first warms caches)")
    p.add_argument("--data", default=str(fb.DEFAULT_DATA), help="data folder (default: ../shared/data)")
    p.add_argument("--port", help="checkout of hidasib/GRU4Rec_PyTorch_Official")
    p.add_argument("--port-python", default="python", help="Python with torch for the port")
    p.add_argument("--original", help="checkout of hidasib/GRU4Rec prepared for the CPU (docs/faithfulness.md)")
    p.add_argument("--original-python", default="python", help="Python 3.8 with theano 1.0.5 for the original")
    p.add_argument("--out", default=str(fb.ROOT / "bench" / "results" / "speed_sides.json"))
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = dict(machine=fb.machine(), argv=sys.argv if argv is None else argv, versions={}, configs={})
    try:
        report["versions"]["self"] = fb.self_versions()
        if args.port:
            report["versions"]["peer"] = fb.side_versions(args.port_python, args.port, ["torch", "numpy", "pandas"])
        if args.original:
            report["versions"]["original"] = fb.side_versions(
                args.original_python, args.original, ["theano", "numpy", "scipy", "pandas"], fb.original_env(42))
        with tempfile.TemporaryDirectory(prefix="gru4rec_speed_") as tmp:
            for key in args.config:
                cfg = CONFIGS[key]
                params = fb.config_params(cfg)
                train, test = input_files(args, cfg, tmp, key)  # one input for all sides
                sides = OrderedDict()
                for name in fb.SIDES:
                    runs = side_runs(name, args, train, test, params, cfg["eval_type"])
                    if runs:
                        sides[name] = dict(runs=runs, summary=summary(runs))
                report["configs"][key] = dict(data=cfg["data"], eval_type=cfg["eval_type"],
                                              params=fb.to_param_string(params), sides=sides)
                print(format_table(key, sides), flush=True)
    except fb.BenchError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
