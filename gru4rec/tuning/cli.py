"""Hyperparameter optimisation of GRU4Rec with Optuna, like the original paropt.py (spec 14);
installed as `gru4rec-paropt` (`python paropt.py` in a checkout runs the same).

    gru4rec-paropt TRAIN VALID -opf paramspaces/gru4rec_xe_standard_parspace.json \\
        -fp loss=cross-entropy,final_act=softmax,constrained_embedding=True,logq=1.0,n_sample=2048,n_epochs=10 \\
        -pm mrr -m 20 -fm 1 5 10 20 -e conservative -nt 200

Every trial trains in its own process (`python -m gru4rec.cli ... -lpm`, the original's
run.py); the first `PRIMARY METRIC: <value>` line of the child is the trial's value. A trial
whose child crashes, exits non-zero, prints no metric or a NaN is recorded as FAILED (reason
in the trial's user attribute `fail_reason`) and the study goes on.

Additions to the original interface:
  -d/--device, --backend  passed to the trials (they replace the original's -tf/--theano_flags)
  --storage URL           shared study: sqlite:///f.db, postgresql://user:pw@host/db or
                          journal:///path/f.log (default: in memory, as in the original)
  --study-name NAME       the study the workers share; re-running resumes it
  --n-jobs N              trials run in parallel threads of this process (one process each)
  --seed S                seed of the TPE sampler
  --plot DIR              optimisation-history and parameter-importance plots (PNG with
                          matplotlib, which --plot needs, and HTML with plotly)
  --enqueue PARAMS        a trial (name=value,... of the space) to run first; repeatable
  --save-best FILE        the best trial's parameters as a parameter file (run.py -pf FILE)
  --prune                 with --valid-every: a trial whose validation value after an epoch is
                          below the median of earlier trials' after that epoch stops (PRUNED)
  --trial-timeout S       a trial running longer than S seconds is killed and recorded as failed
  --run-script, --python  another script the trials run instead of gru4rec.cli, and their interpreter
  --history [FILE ...], --keep-seen
                          passed to the trials (and the final run): sequence-aware evaluation of
                          TEST_PATH from each user's history, e.g. tuning on valid.tsv of
                          gru4rec.leave_one_out with --history (= the training data, train.tsv);
                          -pm hr, ndcg or mrr. Never tune on test.tsv.
  --valid-every N         every trial (and the final run) chooses its epoch on TEST_PATH: -pm
                          measured every N epochs, the best epoch's value is the trial's
-nt counts the trials this process adds (several workers add up); -fm with no values skips the
final evaluation (e.g. on all but one worker).

Input that would make every trial fail, or the end of the study, is refused before the first
trial with one line on stderr and status 1: a parameter name GRU4Rec does not know, a range
end or option outside a parameter's valid values (checked with the -fp parameters, as run.py
checks them; skipped when -g or --run-script point elsewhere), an unsupported storage URL, a
missing database driver, a sqlite/journal file in a missing or unwritable directory, a
data file or -opf that is missing, a directory or unreadable, --plot without matplotlib or
into a file or unwritable directory.
"""
import os
import sys
from pathlib import Path

from ..cli_args import (Parser, add_evaluation_options, add_model_options, add_selection_options,
                        add_sequence_options, run_as_command)
from .report import check_plot_dir, save_best, save_plots, summary
from .space import check_space, enqueued_params, fixed_names, format_space, load_space, param_string
from .storage import check_storage, driver_hint, mask_url
from .study import completed_trials, open_study, ordered_params
from .trials import Runner, TrialFailed


def parse_args(argv):
    p = _parser()
    args = p.parse_args(argv)
    if args.measure < 1 or any(c < 1 for c in args.final_measure):
        p.error("cut-offs must be positive")
    if args.ntrials < 0:
        p.error("-nt must be >= 0")
    if args.n_jobs < 1:
        p.error("--n-jobs must be >= 1")
    if args.prune and args.valid_every is None:
        p.error("--prune needs --valid-every (it stops trials by their validation values)")
    if args.trial_timeout is not None and args.trial_timeout <= 0:
        p.error("--trial-timeout must be > 0")
    if args.storage is not None and not args.study_name:
        p.error("--storage needs --study-name (the name the workers share and a re-run resumes)")
    return args


def _parser():
    p = Parser(description="Optimise GRU4Rec hyperparameters with Optuna; every trial runs run.py in its own process.")
    p.add_argument("path", metavar="PATH", type=str, help="training data of the optimisation (e.g. train_tr)")
    p.add_argument("test_path", metavar="TEST_PATH", type=str, help="validation data (e.g. train_valid)")
    add_model_options(p)
    p.add_argument("-fp", "--fixed_parameters", metavar="PARAM_STRING", type=str, default="",
                   help="fixed training parameters as name=value,name=value,... (lists with '/')")
    p.add_argument("-opf", "--optuna_parameter_file", metavar="PATH", type=str, required=True,
                   help="parameter space: JSON lines with name, dtype (int/float/categorical), values, "
                        "optional step and log")
    p.add_argument("-m", "--measure", metavar="AT", type=int, nargs="?", const=20, default=20,
                   help="the single cut-off used during the optimisation (default: 20)")
    p.add_argument("-nt", "--ntrials", metavar="NT", type=int, nargs="?", const=50, default=50,
                   help="number of trials this process adds to the study (default: 50)")
    p.add_argument("-fm", "--final_measure", metavar="AT", type=int, nargs="*", default=[20],
                   help="cut-off(s) of the final run with the best parameters (default: 20); "
                        "-fm without values skips the final run")
    add_evaluation_options(p, metric_help="objective: recall (= hr), mrr or ndcg (default: recall)")
    add_sequence_options(p)
    add_selection_options(p)
    _add_study_options(p)
    return p


def _add_study_options(p):
    p.add_argument("--storage", metavar="URL", type=str, default=None,
                   help="Optuna storage shared by workers: sqlite:///study.db (one machine), "
                        "postgresql://user:password@host:5432/db (many machines) or journal:///path/study.log "
                        "(default: in memory)")
    p.add_argument("--study-name", metavar="NAME", type=str, default=None,
                   help="name of the study; workers with the same storage and name share it, and a re-run resumes it")
    p.add_argument("--n-jobs", metavar="N", type=int, default=1,
                   help="trials run in parallel by this process, each in its own run.py (default: 1)")
    p.add_argument("--seed", metavar="S", type=int, default=None,
                   help="seed of the TPE sampler (default: none); give each worker of a shared study its own")
    p.add_argument("--plot", metavar="DIR", type=str, default=None,
                   help="save optimisation-history and parameter-importance plots into DIR (HTML with plotly, PNG)")
    p.add_argument("--enqueue", metavar="PARAMS", action="append", default=[],
                   help="a trial to run before the sampler's, as name=value,... of the space's parameters "
                        "(the others drawn); repeat for several, e.g. to start from known good settings")
    p.add_argument("--save-best", metavar="FILE", type=str, default=None,
                   help="write the best trial's parameters (-fp and the drawn ones; with --valid-every, "
                        "n_epochs = its chosen epoch) as a parameter file for run.py -pf")
    p.add_argument("--prune", action="store_true",
                   help="with --valid-every: stop a trial whose validation value after an epoch is below the "
                        "median of the earlier trials' after the same epoch (Optuna's MedianPruner, from the "
                        "5th completed trial on); it is recorded as pruned")
    p.add_argument("--trial-timeout", metavar="SECONDS", type=float, default=None,
                   help="kill a trial's run.py after this many seconds and record the trial as failed")
    p.add_argument("--run-script", metavar="PATH", type=str, default=None,
                   help="a script the trials run (with run.py's arguments) instead of gru4rec.cli, "
                        "the original's run.py (default)")
    p.add_argument("--python", metavar="EXE", type=str, default=sys.executable,
                   help="interpreter of the trials (default: the one running paropt.py)")


def checks_gru4rec_params(args):
    """The space is checked against gru4rec's parameters when the trials run gru4rec.cli with
    the gru4rec package; another -g module or --run-script may take other ones."""
    return args.gru4rec_model == "gru4rec" and args.run_script is None


def refuse_before_trials(args, space):
    """Raises ValueError for whatever would fail every trial, or the study's end."""
    both = sorted(set(fixed_names(args.fixed_parameters)) & {p.name for p in space})
    if both:
        raise ValueError(f"Parameter(s) {', '.join(both)} are both fixed (-fp) and in the parameter space")
    for label, path in (("training data", args.path), ("validation data", args.test_path),
                        ("run script", args.run_script), *(("history", h) for h in args.history or [])):
        if path is not None and not Path(path).exists():
            raise ValueError(f"The {label} {path} does not exist")
    if args.valid_every is not None and args.valid_every < 1:
        raise ValueError(f"--valid-every must be >= 1, got {args.valid_every}")
    if args.history is None and args.keep_seen:
        raise ValueError("--keep-seen needs --history (it only changes the sequence-aware evaluation)")
    _check_readable_files(args)
    if checks_gru4rec_params(args):
        check_space(space, args.fixed_parameters, args.optuna_parameter_file)
    if args.storage is not None:
        check_storage(args.storage)
    if args.plot is not None:
        check_plot_dir(args.plot)
    if args.save_best is not None:
        _check_writable_file(args.save_best, "--save-best")
    for text in args.enqueue:
        enqueued_params(text, space)


def _check_writable_file(path, what):
    """ValueError unless `path` names a file that can be written (in an existing, writable folder)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a file")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"{what} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{what} {path}: the folder {folder} is not writable")


def _check_readable_files(args):
    """ValueError for a data file, history file or run script that is a directory or unreadable."""
    from ..data import check_readable
    for label, path in (("training data", args.path), ("validation data", args.test_path),
                        ("run script", args.run_script), *(("history", h) for h in args.history or [])):
        if path is not None and Path(path).is_dir():
            raise ValueError(f"The {label} {path} is a directory, not a file")
        if path is not None:
            check_readable(path)  # permissions


def main(argv=None):
    """Runs the command line; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        space = load_space(args.optuna_parameter_file)
        refuse_before_trials(args, space)
    except ValueError as e:
        print(e if str(e).startswith("ERROR.") else f"ERROR. {e}", file=sys.stderr)
        return 1
    print(format_space(space), flush=True)
    study = _open_study(args, space)
    if study is None:
        return 1
    for text in args.enqueue:
        study.enqueue_trial(enqueued_params(text, space), user_attrs={"enqueued": text})
    runner = Runner(args)
    if not _optimize(study, runner, space, args):
        return 130
    have_best = bool(completed_trials(study))
    if args.plot:
        save_plots(study, args.plot)
    if args.save_best and have_best:
        save_best(study, space, args)
    status = _final_eval(study, runner, space, args, have_best) if args.final_measure else 0
    print(summary(study, space, args), flush=True)
    return status


def _open_study(args, space):
    """The study, or None after one line on stderr saying why it cannot be opened."""
    try:
        return open_study(args, space)
    except ImportError as e:
        print(f"ERROR. Cannot open the storage {mask_url(args.storage)}: the database driver is missing "
              f"({' '.join(str(e).split())}); {driver_hint(args.storage)}", file=sys.stderr)
    except Exception as e:
        msg = " ".join(str(e).split())
        where = f" {mask_url(args.storage)}" if args.storage else ""
        print(f"ERROR. Cannot open the study{where}: {msg}", file=sys.stderr)
    return None


def _optimize(study, runner, space, args):
    """Adds this worker's -nt trials; False when interrupted (after the summary so far)."""
    try:
        if args.ntrials > 0:
            study.optimize(runner.objective(space), n_trials=args.ntrials, n_jobs=args.n_jobs,
                           catch=(TrialFailed,))
    except KeyboardInterrupt:
        runner.stop_all()
        print("Interrupted; the study keeps the trials finished so far.", file=sys.stderr)
        print(summary(study, space, args))
        return False
    finally:
        runner.stop_all()
    return True


def _final_eval(study, runner, space, args, have_best):
    """Trains with the best parameters and evaluates at the -fm cut-offs; the exit status."""
    if not have_best:
        print("ERROR. No trial completed, there are no best parameters to evaluate.", file=sys.stderr)
        return 1
    print(f"Running final eval @{args.final_measure}:", flush=True)
    ps = param_string(args.fixed_parameters, ordered_params(study.best_trial, space))
    cuts, choice = args.final_measure, []
    if args.valid_every is not None:  # the run chooses its epoch by -pm at its first cut-off, as the trials did
        cuts = [args.measure] + [c for c in cuts if c != args.measure]
        choice = ["-pm", args.primary_metric, "-t", args.test_path]
    cmd = runner.base_command() + ["-ps", ps, "-m"] + [str(c) for c in cuts] + choice + runner.keys()
    rc, _, last, _, _ = runner.run(cmd)
    if rc != 0:
        print(f"ERROR. The final run exited with status {rc}" + (f": {last}" if last else ""), file=sys.stderr)
        return 1
    return 0


def script():
    """The gru4rec-paropt command (and paropt.py)."""
    run_as_command(main)
