"""The Optuna study: created or joined (a shared storage is resumed, and refused when it
optimises another objective), and the queries the summary and the final run need."""
import sys

from .storage import open_storage

# What must match for the values of two workers' trials to be comparable.
OBJECTIVE_KEYS = ("fixed_parameters", "measure", "primary_metric", "eval_type")


def objective_signature(args, space):
    return {"fixed_parameters": args.fixed_parameters, "measure": args.measure,
            "primary_metric": args.primary_metric, "eval_type": args.eval_type,
            "space": [p.as_dict() for p in space]}


def open_study(args, space):
    """The study of --storage/--study-name (in memory without --storage), maximising the metric."""
    import optuna
    storage = open_storage(args.storage)
    sampler = optuna.samplers.TPESampler(seed=args.seed)
    # --prune: a trial whose validation value after an epoch is below the median of the
    # earlier trials' after the same epoch stops there (from the 5th completed trial on).
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5) if args.prune else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=args.study_name,
                                direction="maximize", load_if_exists=storage is not None)
    if storage is not None:
        _claim_objective(study, objective_signature(args, space), args.study_name)
    return study


def _claim_objective(study, mine, name):
    """Records this worker's objective in a new shared study, or checks it against the one
    recorded: ValueError when it differs, a warning when only the space does."""
    theirs = study.user_attrs.get("paropt")
    if theirs is None:
        study.set_user_attr("paropt", mine)
        return
    diff = [k for k in OBJECTIVE_KEYS if theirs.get(k) != mine[k]]
    if diff:
        raise ValueError(f"Study {name!r} optimises a different objective "
                         f"({', '.join(f'{k}={theirs.get(k)!r}' for k in diff)}); "
                         "use the same -fp/-m/-pm/-e or another --study-name")
    if theirs.get("space") != mine["space"]:
        print(f"WARNING! The parameter space differs from the one study {name!r} "
              "was started with.", file=sys.stderr)


def completed_trials(study):
    import optuna
    return [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]


def ordered_params(trial, space):
    """A trial's parameters in the order of the space file (then any others)."""
    names = [p.name for p in space if p.name in trial.params]
    names += [k for k in trial.params if k not in names]
    return {k: trial.params[k] for k in names}
