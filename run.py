"""Train, save, load and evaluate GRU4Rec from the command line, like the original run.py.

    python run.py TRAIN.tsv -ps loss=cross-entropy,layers=100,... -t TEST.tsv -m 1 5 10 20
    python run.py MODEL -l -t TEST.tsv -e conservative

The printed lines follow the original's (spec 13.2) so scripts that parse its output keep
working. Deviations: -ik/-sk/-tk also reach the model (the original used them only for
loading and evaluation), -d/--device and --backend choose where the graphs run, and a
progress bar goes to stderr when stdout is a terminal. Bad input ends the run with one
line on stderr and exit status 1.
"""
import argparse
import importlib
import os
import sys
import time

EXCLUSIVE = ("ERROR. Exactly one of the following parameters must be provided: "
             "--parameter_string, --parameter_file, --load_model")
MIN_TEST_ITEMS = 50000


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and status 1, like every other input error
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        sys.exit(1)


def parse_args(argv):
    p = Parser(prog="run.py", description="Train or load a GRU4Rec model and evaluate it.")
    p.add_argument("path", metavar="PATH", type=str,
                   help="training data (TSV, optionally .gz; .pickle; .parquet) or, with -l, a saved model")
    p.add_argument("-ps", "--parameter_string", metavar="PARAM_STRING", type=str,
                   help="parameters as name=value,name=value,...; lists with '/' (layers=100/100)")
    p.add_argument("-pf", "--parameter_file", metavar="PARAM_PATH", type=str,
                   help="Python file defining gru4rec_params = OrderedDict([...])")
    p.add_argument("-l", "--load_model", action="store_true", help="load PATH as a trained model")
    p.add_argument("-s", "--save_model", metavar="MODEL_PATH", type=str, help="save the model after training")
    p.add_argument("-t", "--test", metavar="TEST_PATH", type=str, nargs="+",
                   help="test file(s), each evaluated separately")
    p.add_argument("-m", "--measure", metavar="AT", type=int, nargs="+", default=[20],
                   help="cut-off(s) of Recall@AT and MRR@AT (default: 20)")
    p.add_argument("-e", "--eval_type", metavar="EVAL_TYPE", type=str, default="standard",
                   choices=["standard", "conservative", "median", "tiebreaking"],
                   help="tie handling: standard, conservative, median or tiebreaking (default: standard)")
    p.add_argument("-ss", "--sample_store_size", metavar="SS", type=int, default=10000000,
                   help="size of the negative sample store in item ids (default: 10000000)")
    p.add_argument("--sample_store_on_cpu", action="store_true",
                   help="legacy flag of the original; only changes the printed store type here")
    p.add_argument("-g", "--gru4rec_model", metavar="GRFILE", type=str, default="gru4rec",
                   help="module to import GRU4Rec from (default: gru4rec)")
    p.add_argument("-d", "--device", metavar="D", type=str, default="cpu",
                   help="cpu, gpu, cuda0, cuda:1, ... (default: cpu)")
    p.add_argument("--backend", type=str, default="jax", choices=["jax", "numba", "c"],
                   help="PyTensor backend (default: jax; only jax runs on a GPU)")
    p.add_argument("--precision", type=str, default="float32", choices=["float32", "tf32"],
                   help="matrix-product precision on a GPU (default: float32, as the original; "
                        "tf32 is faster on A100/H100 but rounds the inputs of every product)")
    p.add_argument("-ik", "--item_key", metavar="IK", type=str, default="ItemId")
    p.add_argument("-sk", "--session_key", metavar="SK", type=str, default="SessionId")
    p.add_argument("-tk", "--time_key", metavar="TK", type=str, default="Time")
    p.add_argument("-pm", "--primary_metric", metavar="METRIC", type=str, default="recall",
                   choices=["recall", "mrr"], help="metric printed by -lpm (default: recall)")
    p.add_argument("-lpm", "--log_primary_metric", action="store_true",
                   help="print PRIMARY METRIC: <value> (first cut-off) at the end")
    p.add_argument("--test_against_items", metavar="N_TEST_ITEMS", type=int,
                   help="rank targets against the N most popular training items only (N >= 50000)")
    return p.parse_args(argv)


def fail(message):
    sys.stderr.write(message.rstrip() + "\n")
    return 1


def load_data(path, args):
    from gru4rec.data import load
    kind = {".pickle": "pickle", ".pkl": "pickle", ".parquet": "parquet"}.get(os.path.splitext(path)[1])
    print(f"Loading data from {kind} file: {path}" if kind else
          f"Loading data from TAB separated file: {path}")
    return load(path, args.session_key, args.item_key, args.time_key)


def run(args):
    if sum([args.parameter_string is not None, args.parameter_file is not None, args.load_model]) != 1:
        return fail(EXCLUSIVE)
    if args.test_against_items is not None:
        if args.test_against_items < MIN_TEST_ITEMS:
            return fail("ERROR. You musn't evaluate positive items agains less than 50000 items.")
        if args.load_model:
            return fail("ERROR. --test_against_items needs the training data: it cannot be used with --load_model.")
    if min(args.measure) < 1:
        return fail(f"error: cut-offs must be positive (-m {' '.join(map(str, args.measure))})")
    try:
        GRU4Rec = importlib.import_module(args.gru4rec_model).GRU4Rec
    except (ImportError, AttributeError) as e:
        return fail(f"ERROR. Cannot import GRU4Rec from module {args.gru4rec_model!r}: {e}")
    from gru4rec.backend import mode_for
    from gru4rec.evaluation import evaluate
    mode_for(args.backend, args.device, args.precision)  # an unknown or missing device fails here, before any work
    # Outputs and test files are checked before training, not found missing after it.
    if args.save_model is not None and not args.load_model:
        from gru4rec.serialization import check_save_path
        check_save_path(args.save_model)
    from gru4rec.data import check_file
    for test_path in args.test or []:
        check_file(test_path, args.session_key, args.item_key, args.time_key)
    keys = dict(session_key=args.session_key, item_key=args.item_key, time_key=args.time_key)
    dev = dict(device=args.device, backend=args.backend, precision=args.precision)
    items = None
    if args.load_model:
        print(f"Loading trained model from file: {args.path}")
        gru = GRU4Rec.load(args.path, **dev)
    else:
        if args.parameter_file:
            print(f"Loaded parameters from file: {os.path.abspath(args.parameter_file)}")
        print("Creating GRU4Rec model")
        if args.parameter_file:
            gru = GRU4Rec.from_param_file(args.parameter_file, **dev)
        else:
            gru = GRU4Rec.from_param_string(args.parameter_string, **dev)
        print("Loading training data...")
        data = load_data(args.path, args)
        if args.test_against_items is not None:
            pop = data.groupby(args.item_key).size().sort_values(ascending=False)
            items = pop.index[:args.test_against_items]
            print(f"WARNING! Targets are ranked against the {len(items)} most popular training items only, "
                  "not against every item; the results are not comparable with full evaluation.")
        store = "cpu" if args.sample_store_on_cpu else "gpu"
        if args.sample_store_on_cpu:
            print("WARNING! The sample store is set to be on the CPU. "
                  "This will make training significantly slower on the GPU.")
        print("Started training")
        t0 = time.time()
        gru.fit(data, sample_store=args.sample_store_size, store_type=store, **keys)
        print(f"Total training time: {time.time() - t0:.2f}s")
        del data
        if args.save_model is not None:
            print(f"Saving trained model to: {args.save_model}")
            gru.save(args.save_model)
    for test_path in args.test or []:
        print("Loading test data...")
        test = load_data(test_path, args)
        print(f"Starting evaluation (cut-off={args.measure}, using {args.eval_type} mode for tiebreaking)")
        t0 = time.time()
        res = evaluate(gru, test, items=items, cut_off=args.measure, batch_size=512, mode=args.eval_type, **keys)
        print(f"Evaluation took {time.time() - t0:.2f}s")
        for c in args.measure:
            print(f"Recall@{c}: {res.recall[c]:.6f} MRR@{c}: {res.mrr[c]:.6f}")
        if args.log_primary_metric:
            metric = res.recall if args.primary_metric == "recall" else res.mrr
            print(f"PRIMARY METRIC: {metric[args.measure[0]]}")
    return 0


def main(argv=None):
    """Runs the command line; returns the exit status. Input problems (ValueError, including
    data.DataError, and OSError) become one line on stderr and status 1."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        return fail(msg if msg.startswith("ERROR.") else f"ERROR. {msg}")
    except KeyboardInterrupt:  # model files are written atomically: nothing half-written remains
        fail("Interrupted.")
        return 130


if __name__ == "__main__":
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines arrive while training
    sys.exit(main())
