"""Hyperparameter optimisation of GRU4Rec with Optuna, like the original paropt.py (spec 14).

The command is `gru4rec-paropt` (`python paropt.py` in a checkout); its modules, one job
each: `space` (the parameter space file, its printed block, the check against
gru4rec.params), `storage` (where a study lives), `study` (opening a shared study),
`trials` (the training processes of the trials), `report` (summary and plots) and `cli`
(the command line). The names below are the ones scripts and tests use.
"""
from .cli import checks_gru4rec_params, main, parse_args
from .space import Param, SpaceError, check_space, format_space, load_space, param_string
from .storage import open_storage

__all__ = ["Param", "SpaceError", "check_space", "checks_gru4rec_params", "format_space", "load_space",
           "main", "open_storage", "param_string", "parse_args"]
