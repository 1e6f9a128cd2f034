"""What the two commands (`gru4rec-run`/run.py and `gru4rec-paropt`/paropt.py) parse alike:
the parser that ends a bad command line with one line, and the options both hand to a
training run. Imports neither PyTensor nor JAX, so a command line is checked before the
heavy imports.
"""
import argparse
import sys

from .backend import BACKENDS
from .params import TIE_MODES

PRIMARY_METRICS = {"recall": "recall", "hr": "recall", "mrr": "mrr", "ndcg": "ndcg"}  # -pm -> Metrics field


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 1, like every
    other input error of the commands (argparse's own are a usage block and status 2)."""

    def error(self, message):
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        sys.exit(1)


def add_model_options(p):
    """-g (the module GRU4Rec comes from), -d and --backend (where and how the graphs run)."""
    p.add_argument("-g", "--gru4rec_model", metavar="GRFILE", type=str, default="gru4rec",
                   help="module to import GRU4Rec from (default: gru4rec)")
    p.add_argument("-d", "--device", metavar="D", type=str, default="cpu",
                   help="cpu, gpu, cuda0, cuda:1, ... (default: cpu)")
    p.add_argument("--backend", type=str, default="jax", choices=list(BACKENDS),
                   help="PyTensor backend (default: jax; only jax runs on a GPU)")


def add_evaluation_options(p, metric_help):
    """-pm (what it is for differs per command), -e (tie handling) and the column names
    -ik/-sk/-tk. hr is recall under the sequence-aware name (both evaluations compute all
    three metrics; the session evaluation's lines show no NDCG, -lpm can)."""
    p.add_argument("-pm", "--primary_metric", metavar="METRIC", type=str, default="recall",
                   choices=list(PRIMARY_METRICS), help=metric_help)
    p.add_argument("-e", "--eval_type", metavar="EVAL_TYPE", type=str, default="standard",
                   choices=list(TIE_MODES),
                   help="tie handling: standard, conservative, median or tiebreaking (default: standard)")
    for flag, name, default, what in (("-ik", "item_key", "ItemId", "item IDs"),
                                      ("-sk", "session_key", "SessionId", "session IDs"),
                                      ("-tk", "time_key", "Time", "timestamps")):
        p.add_argument(flag, f"--{name}", metavar=flag[1:].upper(), type=str, default=default,
                       help=f"column of the {what} (default: {default})")


def add_sequence_options(p):
    """--history and --keep-seen: the sequence-aware evaluation of gru4rec.sequence_eval,
    where each -t target is ranked from its user's state after the user's history."""
    p.add_argument("--history", metavar="FILE", type=str, nargs="*", default=None,
                   help="rank each -t file's targets from each user's state after these files' events "
                        "(concatenated; no FILE: the training data), e.g. train.tsv for valid.tsv of "
                        "gru4rec.leave_one_out; prints HR, NDCG and MRR")
    p.add_argument("--keep-seen", action="store_true",
                   help="with --history: rank the items of a user's history too (default: excluded)")


def add_selection_options(p):
    """--valid-every: choose the epoch by the validation metric during training
    (gru4rec.selection.BestEpoch)."""
    p.add_argument("--valid-every", metavar="N", type=int, default=None,
                   help="measure -pm at the first -m cut-off on the validation file every N epochs "
                        "(and after the last) and keep the best epoch's weights")


def run_as_command(main):
    """Runs main() as the program: stdout line-buffered (progress lines arrive while training,
    also through a pipe), and main's return value as the exit status."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main())
