"""Train, save, load and evaluate GRU4Rec from the command line, like the original run.py;
installed as `gru4rec-run` (`python run.py` in a checkout and `python -m gru4rec.cli` run
the same).

    gru4rec-run TRAIN.tsv -ps loss=cross-entropy,layers=100,... -t TEST.tsv -m 1 5 10 20
    gru4rec-run MODEL -l -t TEST.tsv -e conservative
    gru4rec-run OUT/train.tsv -ps ... -t OUT/valid.tsv --history -m 10 20   # sequence-aware
    gru4rec-run MODEL -l -t OUT/test.tsv --history OUT/train.tsv OUT/valid.tsv -m 10 20

The printed lines follow the original's (spec 13.2) so scripts that parse its output keep
working. Deviations: -ik/-sk/-tk also reach the model (the original used them only for
loading and evaluation), -d/--device and --backend choose where the graphs run, and a
progress bar goes to stderr when stdout is a terminal. Bad input ends the run with one
line on stderr and exit status 1. --history (the sequence-aware setting of
gru4rec.leave_one_out) ranks each user's target from the user's state after the history
files (gru4rec.sequence_eval) and prints HR, NDCG and MRR instead of the original's lines.
"""
import importlib
import os
import sys
import time

from . import messages
from .backend import PRECISIONS
from .cli_args import (PRIMARY_METRICS, Parser, add_evaluation_options, add_model_options,
                       add_selection_options, add_sequence_options, run_as_command)

EXCLUSIVE = ("ERROR. Exactly one of the following parameters must be provided: "
             "--parameter_string, --parameter_file, --load_model")
MIN_TEST_ITEMS = 50000


def parse_args(argv):
    p = Parser(description="Train or load a GRU4Rec model and evaluate it.")
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
    p.add_argument("-ss", "--sample_store_size", metavar="SS", type=int, default=10000000,
                   help="size of the negative sample store in item ids (default: 10000000)")
    p.add_argument("--sample_store_on_cpu", action="store_true",
                   help="accepted for compatibility with the original (and passed on to a -g model); "
                        "no effect here: the store lives on the -d device")
    add_model_options(p)
    p.add_argument("--precision", type=str, default="float32", choices=list(PRECISIONS),
                   help="matrix-product precision on a GPU (default: float32, as the original; "
                        "tf32 is faster on A100/H100 but rounds the inputs of every product)")
    add_evaluation_options(p, metric_help="metric printed by -lpm: recall (= hr), mrr or ndcg (default: recall)")
    p.add_argument("-lpm", "--log_primary_metric", action="store_true",
                   help="print PRIMARY METRIC: <value> (first cut-off) at the end; without -t, the "
                        "best epoch's value on --valid")
    p.add_argument("--test_against_items", metavar="N_TEST_ITEMS", type=int,
                   help="rank targets against the N most popular training items only (N >= 50000)")
    add_sequence_options(p)
    p.add_argument("--valid", metavar="VALID_PATH", type=str,
                   help="validation file: with --valid-every, the epoch is chosen on it (with --history: "
                        "each user's target ranked from the training data)")
    add_selection_options(p)
    return p.parse_args(argv)


def fail(message):
    sys.stderr.write(message.rstrip() + "\n")
    return 1


def load_data(path, args):
    from .data import load
    kind = {".pickle": "pickle", ".pkl": "pickle", ".parquet": "parquet"}.get(os.path.splitext(path)[1])
    print(f"Loading data from {kind} file: {path}" if kind else
          f"Loading data from TAB separated file: {path}")
    return load(path, args.session_key, args.item_key, args.time_key)


def keys(args):
    return dict(session_key=args.session_key, item_key=args.item_key, time_key=args.time_key)


def run(args):
    """What the original's run.py does: train a model (or load one), then evaluate it on each
    test file. Returns the exit status."""
    refusal = argument_problem(args)
    if refusal:
        return fail(refusal)
    try:
        model_class = importlib.import_module(args.gru4rec_model).GRU4Rec
    except (ImportError, AttributeError) as e:
        return fail(f"ERROR. Cannot import GRU4Rec from module {args.gru4rec_model!r}: {e}")
    check_before_work(args)
    items = data = best = None
    if args.load_model:
        print(f"Loading trained model from file: {args.path}")
        gru = model_class.load(args.path, device=args.device, backend=args.backend, precision=args.precision)
    else:
        gru, items, data, best = train(model_class, args)
    if args.log_primary_metric and not args.test and best is not None and best.epoch is not None:
        print(f"PRIMARY METRIC: {best.value}")  # the validation file is the test file
    history = None if args.history is None else load_history(args, data)
    for test_path in args.test or []:
        if history is None:
            evaluate_file(gru, test_path, items, args)
        else:
            evaluate_sequence_file(gru, test_path, history, args)
    return 0


def argument_problem(args):
    """The message refusing a combination of arguments, or None."""
    if sum([args.parameter_string is not None, args.parameter_file is not None, args.load_model]) != 1:
        return EXCLUSIVE
    if args.test_against_items is not None:
        if args.test_against_items < MIN_TEST_ITEMS:
            return "ERROR. You musn't evaluate positive items agains less than 50000 items."
        if args.load_model:
            return "ERROR. --test_against_items needs the training data: it cannot be used with --load_model."
    if min(args.measure) < 1:
        return f"error: cut-offs must be positive (-m {' '.join(map(str, args.measure))})"
    return sequence_problem(args) or selection_problem(args)


def selection_problem(args):
    """The message refusing --valid/--valid-every as given, or None."""
    if (args.valid is None) != (args.valid_every is None):
        return "ERROR. --valid and --valid-every go together: the validation file and how often to measure on it."
    if args.valid_every is not None and args.valid_every < 1:
        return f"ERROR. --valid-every must be >= 1, got {args.valid_every}."
    if args.valid is not None and args.load_model:
        return "ERROR. --valid chooses the epoch while training: it cannot be used with --load_model."
    return None


def sequence_problem(args):
    """The message refusing a combination with (or of) --history, or None."""
    if args.history is None:
        if args.keep_seen:
            return "ERROR. --keep-seen needs --history (it only changes the sequence-aware evaluation)."
        return None
    if args.test_against_items is not None:
        return "ERROR. --test_against_items cannot be used with --history (targets are ranked against all items)."
    if args.load_model and not args.history:
        return "ERROR. --history without files means the training data, which --load_model does not have: name the files."
    return None


def check_before_work(args):
    """ValueError for a PATH, -pf, -t or --history file that is missing, a directory,
    unreadable or lacks a column, an -s that cannot be written, or an unknown or missing
    device: found before training, not after it."""
    from .backend import mode_for
    from .data import check_file
    from .params import load_param_file
    if args.load_model:
        from .serialization import check_model_path
        check_model_path(args.path)
    else:
        check_file(args.path, args.session_key, args.item_key, args.time_key)
    if args.parameter_file is not None:
        load_param_file(args.parameter_file)
    if args.save_model is not None and not args.load_model:
        from .serialization import check_save_path
        check_save_path(args.save_model)
    for test_path in (args.test or []) + (args.history or []) + ([args.valid] if args.valid else []):
        check_file(test_path, args.session_key, args.item_key, args.time_key)
    mode_for(args.backend, args.device, args.precision)


def create_model(model_class, args):
    """The model of -pf or -ps, with the original's lines (the SET lines come from the model)."""
    if args.parameter_file:
        print(f"Loaded parameters from file: {os.path.abspath(args.parameter_file)}")
    print("Creating GRU4Rec model")
    dev = dict(device=args.device, backend=args.backend, precision=args.precision)
    if args.parameter_file:
        return model_class.from_param_file(args.parameter_file, **dev)
    return model_class.from_param_string(args.parameter_string, **dev)


def train(model_class, args):
    """Creates the model, trains it on PATH and saves it (-s); returns it, the items targets
    are ranked against (--test_against_items; None: all), the training data (the history
    of --history without files) and the BestEpoch of --valid (or None)."""
    gru = create_model(model_class, args)
    print("Loading training data...")
    data = load_data(args.path, args)
    items = None if args.test_against_items is None else most_popular(data, args)
    if args.sample_store_on_cpu:
        print("WARNING! --sample_store_on_cpu has no effect here: the sample store lives on the -d device.")
    best, callback = epoch_selection(gru, data, args)
    print("Started training")
    t0 = time.time()
    gru.fit(data, sample_store=args.sample_store_size, store_type="cpu" if args.sample_store_on_cpu else "gpu",
            callback=callback, **keys(args))
    print(f"Total training time: {time.time() - t0:.2f}s")
    if best is not None and not gru.error_during_train:
        best.restore()
        print(f"Best epoch by validation {args.primary_metric}@{args.measure[0]}: {best.epoch} "
              f"({best.value:.6f}); the model keeps its weights")
    if args.save_model is not None:
        print(f"Saving trained model to: {args.save_model}")
        gru.save(args.save_model)
    return gru, items, data, best


def epoch_selection(gru, data, args):
    """(BestEpoch, fit() callback): the callback measures -pm@(first -m) on --valid every
    --valid-every epochs, prints each measurement and keeps the best epoch's weights in the
    BestEpoch; (None, None) without --valid."""
    if args.valid is None:
        return None, None
    from .selection import BestEpoch
    print("Loading validation data...")
    valid = load_data(args.valid, args)
    c, name = args.measure[0], PRIMARY_METRICS[args.primary_metric]

    def score(model):
        if args.history is None:
            from .evaluation import evaluate
            res = evaluate(model, valid, cut_off=[c], batch_size=512, mode=args.eval_type, **keys(args))
        else:
            from .sequence_eval import evaluate_next_item
            res = evaluate_next_item(model, data, valid, cut_off=[c], exclude_seen=not args.keep_seen,
                                     mode=args.eval_type, **keys(args))
        return getattr(res, name)[c]

    best = BestEpoch(gru, score, args.valid_every)

    def callback(record):
        best(record)
        if best.curve and best.curve[-1][0] == record.epoch:
            print(f"Validation {args.primary_metric}@{c} after epoch {record.epoch}: {best.curve[-1][1]:.6f} "
                  f"(best: epoch {best.epoch})")
    return best, callback


def most_popular(data, args):
    """The --test_against_items most popular training items, with the original's warning."""
    pop = data.groupby(args.item_key).size().sort_values(ascending=False)
    items = pop.index[:args.test_against_items]
    print(f"WARNING! Targets are ranked against the {len(items)} most popular training items only, "
          "not against every item; the results are not comparable with full evaluation.")
    return items


def evaluate_file(gru, test_path, items, args):
    """Evaluates on one test file and prints the original's lines (and PRIMARY METRIC with -lpm)."""
    from .evaluation import evaluate
    print("Loading test data...")
    test = load_data(test_path, args)
    print(f"Starting evaluation (cut-off={args.measure}, using {args.eval_type} mode for tiebreaking)")
    t0 = time.time()
    res = evaluate(gru, test, items=items, cut_off=args.measure, batch_size=512, mode=args.eval_type, **keys(args))
    print(f"Evaluation took {time.time() - t0:.2f}s")
    for c in args.measure:
        print(f"Recall@{c}: {res.recall[c]:.6f} MRR@{c}: {res.mrr[c]:.6f}")
    print_primary_metric(res, args)


def load_history(args, data):
    """The --history files concatenated, or the training data when none are named: loaded once
    for all -t files."""
    import pandas as pd
    if not args.history:
        return data
    return pd.concat([load_data(path, args) for path in args.history], ignore_index=True)


def evaluate_sequence_file(gru, test_path, history, args):
    """Ranks each user's target in one -t file from the user's state after the history
    (gru4rec.sequence_eval) and prints HR, NDCG and MRR per cut-off (and PRIMARY METRIC with -lpm)."""
    from .sequence_eval import evaluate_next_item
    print("Loading test data...")
    test = load_data(test_path, args)
    print(f"Starting evaluation (cut-off={args.measure}, using {args.eval_type} mode for tiebreaking)")
    c = ",".join(map(str, args.measure))
    seen = "kept" if args.keep_seen else "excluded"
    print(f"Measuring HR@{c}, NDCG@{c} and MRR@{c} from each user's history (seen items {seen})")
    t0 = time.time()
    res = evaluate_next_item(gru, history, test, cut_off=args.measure, exclude_seen=not args.keep_seen,
                             mode=args.eval_type, **keys(args))
    print(f"Evaluation took {time.time() - t0:.2f}s")
    for c in args.measure:
        print(f"HR@{c}: {res.recall[c]:.6f} NDCG@{c}: {res.ndcg[c]:.6f} MRR@{c}: {res.mrr[c]:.6f}")
    print_primary_metric(res, args)


def print_primary_metric(res, args):
    """PRIMARY METRIC: <value of -pm at the first cut-off>, the line paropt reads (with -lpm)."""
    if args.log_primary_metric:
        metric = getattr(res, PRIMARY_METRICS[args.primary_metric])
        print(f"PRIMARY METRIC: {metric[args.measure[0]]}")


def main(argv=None):
    """Runs the command line; returns the exit status. Input problems (ValueError, including
    data.DataError, and OSError) become one line on stderr and status 1."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    messages.to_stdout()  # the library's lines (SET, epochs, ...) among the command's own, as the original printed them
    try:
        return run(args)
    except (ValueError, OSError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        return fail(msg if msg.startswith("ERROR.") else f"ERROR. {msg}")
    except KeyboardInterrupt:  # model files are written atomically: nothing half-written remains
        fail("Interrupted.")
        return 130


def script():
    """The gru4rec-run command (and run.py, and python -m gru4rec.cli)."""
    run_as_command(main)


if __name__ == "__main__":
    script()
