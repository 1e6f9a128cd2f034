"""What a study reports at its end: the SUMMARY block (states, best trials, failure reasons),
the plots and the best parameters as a parameter file."""
import warnings
from pathlib import Path

from .space import RULE
from .study import completed_trials, ordered_params

METRIC_NAMES = {"recall": "Recall", "hr": "HR", "mrr": "MRR", "ndcg": "NDCG"}  # -pm -> the name printed
PLOTS = [("optimization_history", "plot_optimization_history", 1),  # name, Optuna function,
         ("param_importances", "plot_param_importances", 2),        # completed trials it needs
         ("intermediate_values", "plot_intermediate_values", 1)]    # --valid-every: the curves


def summary(study, space, args, top=5):
    """The SUMMARY block of the whole study (all workers)."""
    trials = study.get_trials(deepcopy=False)
    counts = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    state_text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"
    lines = [RULE, f"SUMMARY of study {study.study_name}: {len(trials)} trials ({state_text})"]
    lines += _best_lines(study, space, args, top) + _failure_lines(trials) + [RULE]
    return "\n".join(lines)


def _best_lines(study, space, args, top):
    done = sorted(completed_trials(study), key=lambda t: t.value, reverse=True)
    if not done:
        return ["No trial has completed."]
    metric = f"{METRIC_NAMES[args.primary_metric]}@{args.measure}"
    epochs = args.valid_every is not None  # each trial's epoch chosen by validation
    lines = [f"Best {min(top, len(done))} trials by {metric}:",
             f"{'rank':>4}  {'trial':>5}  {'value':>10}  {'duration':>9}  " + ("epoch  " if epochs else "")
             + "parameters"]
    for rank, t in enumerate(done[:top], 1):
        dur = f"{t.duration.total_seconds():.1f}s" if t.duration is not None else "-"
        epoch = f"{t.user_attrs.get('best_epoch', '-'):>5}  " if epochs else ""
        ps = ",".join(f"{k}={v}" for k, v in ordered_params(t, space).items())
        lines.append(f"{rank:>4}  {t.number:>5}  {t.value:>10.6f}  {dur:>9}  {epoch}{ps}")
    return lines


def _failure_lines(trials, shown=5):
    import optuna
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if not failed:
        return []
    lines = [f"Failed trials ({len(failed)}):"]
    lines += [f"  trial {t.number}: {t.user_attrs.get('fail_reason', 'unknown reason')}" for t in failed[:shown]]
    if len(failed) > shown:
        lines.append(f"  ... and {len(failed) - shown} more")
    return lines


def save_best(study, space, args):
    """Writes the best trial's parameters (-fp, then the drawn ones) as a parameter file
    (--save-best), atomically; with --valid-every, n_epochs is the trial's chosen epoch, so
    that training with the file alone gives the weights the trial measured."""
    from ..params import param_file_text, parse_param_string
    best = study.best_trial
    drawn = ordered_params(best, space)
    epoch = best.user_attrs.get("best_epoch") if args.valid_every is not None else None
    if epoch is not None:
        drawn["n_epochs"] = epoch
    pairs = [(k, v) for k, v in parse_param_string(args.fixed_parameters, what="-fp") if k not in drawn]
    metric = f"{METRIC_NAMES[args.primary_metric]}@{args.measure}"
    comment = (f"paropt.py --save-best: trial {best.number} of study {study.study_name}, "
               f"{metric} {best.value:.6f} on {Path(args.test_path).name}"
               + (f", epoch {epoch} chosen by it" if epoch is not None else ""))
    path = Path(args.save_best)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(param_file_text(pairs + list(drawn.items()), comment))
        tmp.replace(path)
    except BaseException:  # a full disk or Ctrl-C: no half-written temporary file stays behind
        tmp.unlink(missing_ok=True)
        raise
    print(f"Saved the best parameters to: {path}")


def check_plot_dir(path):
    """--plot needs matplotlib (the PNG plots) and a directory it can create or write into."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError("--plot needs matplotlib, which is not installed: pip install matplotlib "
                         "(or pip install -e \".[plot]\"), or leave out --plot") from None
    from ..data import check_output_dir
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--plot {path}: not a directory")
    check_output_dir(path, "--plot folder")


def save_plots(study, outdir):
    """Optimisation history, parameter importances and, where trials reported validation
    values (--valid-every), their curves, as HTML (plotly) and PNG (matplotlib)."""
    import optuna
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    n_done = len(completed_trials(study))
    writers = _html_writer() + _png_writer()
    written = []
    curves = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
    for name, fn, need in PLOTS if curves else PLOTS[:2]:
        if n_done < need:
            print(f"Skipped the {name} plot: it needs at least {need} completed trial(s), the study has {n_done}")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for suffix, write in writers:
                path = outdir / f"{name}.{suffix}"
                try:
                    write(fn, study, path)
                    written.append(path)
                except Exception as e:  # a plot must never lose the study's results
                    print(f"Skipped {path.name}: {type(e).__name__}: {e}")
    for path in written:
        print(f"Saved plot: {path}")
    return written


def _html_writer():
    """[('html', write)] with plotly, else [] and a message."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        print("plotly is not installed: writing the PNG plots only (pip install plotly for the HTML ones)")
        return []
    from optuna import visualization

    def write(fn, study, path):
        getattr(visualization, fn)(study).write_html(str(path))
    return [("html", write)]


def _png_writer():
    """[('png', write)] with matplotlib, else [] and a message."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as visualization
    except ImportError:
        print("matplotlib is not installed: no PNG plots (pip install matplotlib)")
        return []

    def write(fn, study, path):
        ax = getattr(visualization, fn)(study)
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.savefig(str(path), dpi=100, bbox_inches="tight")
        plt.close(fig)
    return [("png", write)]
