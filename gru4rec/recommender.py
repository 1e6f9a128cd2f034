"""The public `GRU4Rec` class: parameters, training (spec 3, through gru4rec.training), save
and load."""
import logging
import sys
import textwrap
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from . import params as P
from . import serialization
from .backend import mode_for, parse_device
from .data import check_batch_size, prepare
from .model import Network, check_weights
from .sampling import SampleStore
from .training import Trainer, whole_windows

log = logging.getLogger(__name__)


class GRU4Rec:
    """Session-based recommender with a GRU (Hidasi et al. 2016, 2018).

    GRU4Rec(loss='cross-entropy', final_act='softmax', layers=[100], ...) takes every
    hyperparameter of the original as a keyword (listed below, each documented in
    `gru4rec.params.Params`, the type of `model.params`, where they are read:
    `model.params.layers`); values may also be strings, as in a parameter string. `device`
    ('cpu', 'gpu', 'cuda0') and `backend` ('jax', 'numba', 'c') choose where and how the graph
    runs, and `steps_per_call` how many minibatches one compiled call trains (rounded up to a
    multiple of the parameter `bptt`); `fused_ops` (default on) trains with the fused Ops of
    `gru4rec.ops` where they cover the loss and optimizer; `precision` ('float32', the
    default, or 'tf32') is the matrix-product precision of the JAX backend on a GPU for
    training, evaluation and prediction (the original multiplies in full float32; TF32 is
    faster on A100/H100 GPUs but rounds every product's inputs).

    The library reports progress (SET lines, epochs, ...) through logging, not print: see
    `gru4rec.messages` to show or silence it.
    """

    # Every field of gru4rec.params.Params in its order, with its default (tests/test_params.py
    # keeps the two in sync); lists are tuples here so that no call can change a default.
    def __init__(self, *, loss: str = "bpr-max", final_act: str = "linear", hidden_act: str = "tanh",
                 layers: Sequence[int] | str = (100,), n_epochs: int = 10, batch_size: int = 32,
                 dropout_p_hidden: float = 0.0, dropout_p_embed: float = 0.0, learning_rate: float = 0.1,
                 momentum: float = 0.0, lmbd: float = 0.0, embedding: int | str = 0, n_sample: int = 2048,
                 sample_alpha: float = 0.75, smoothing: float = 0.0, constrained_embedding: bool = False,
                 adapt: str | None = "adagrad", adapt_params: Sequence[float] | str = (),
                 grad_cap: float = 0.0, bpreg: float = 1.0, logq: float = 0.0, sigma: float = 0.0,
                 init_as_normal: bool = False, train_random_order: bool = False, time_sort: bool = True,
                 session_key: str = "SessionId", item_key: str = "ItemId", time_key: str = "Time",
                 elu_param: float | None = None, seed: int = 42, sparse_updates: str = "per-occurrence",
                 bptt: int = 1, negatives: str = "sampled",
                 device: str = "cpu", backend: str = "jax", steps_per_call: int = 32, fused_ops: bool = True,
                 precision: str = "float32"):
        given = locals()
        self.params = P.DEFAULTS
        self._apply([(name, given[name]) for name in P.DEFAULTS], verbose=False)
        self.device = device
        self.backend = backend
        self.precision = precision
        self.fused_ops = bool(fused_ops)
        self.steps_per_call = int(steps_per_call)
        if self.steps_per_call < 1:
            raise ValueError("steps_per_call must be >= 1")
        self.net = None
        self.itemidmap = None
        self.error_during_train = False
        self.history = []  # an EpochRecord per epoch of the last fit
        self.compile_seconds = None  # how long the last fit compiled its training step

    # parameters ------------------------------------------------------------------------------
    def _apply(self, pairs, verbose):
        converted = [(k, P.convert(k, v)) for k, v in pairs]
        self.params = P.updated(self.params, converted)
        if verbose:
            for line in P.format_set_lines(pairs, converted):
                log.info(line)
            if dict(converted).get("embedding") == "layersize":
                resolved = [("embedding", self.params.embedding)]
                log.info(P.format_set_lines(resolved, resolved)[0])

    def set_params(self, **kvargs):
        """Sets parameters from typed values or strings (spec 9.2), logging the SET lines (INFO)."""
        self._apply(list(kvargs.items()), verbose=True)
        return self

    @classmethod
    def from_param_string(cls, s, **kwargs):
        model = cls(**kwargs)
        model._apply(P.parse_param_string(s), verbose=True)
        return model

    @classmethod
    def from_param_file(cls, path, **kwargs):
        model = cls(**kwargs)
        model._apply(list(P.load_param_file(path).items()), verbose=True)
        return model

    def get_params(self):
        """The parameters as an OrderedDict of the original's names (a copy)."""
        return OrderedDict((k, list(v) if isinstance(v, list) else v) for k, v in self.params.items())

    # training --------------------------------------------------------------------------------
    def fit(self, data, sample_store=10000000, store_type="gpu", session_key=None, item_key=None,
            time_key=None, callback=None, show_progress=None):
        """Trains on a DataFrame of events (session id, item id, time) as spec 3 describes.

        Logs (gru4rec.messages) the sort message, the sample store line and one line per epoch
        at INFO, and keeps each epoch's `gru4rec.training.EpochRecord` (loss, seconds,
        mb_per_s, events_per_s) in `self.history`; `callback(record)` is called after every
        epoch. On a NaN it logs the NaN line (WARNING), sets `error_during_train` and stops
        (the aborted epoch has no record). `show_progress` (default: when stdout is a terminal)
        shows a progress bar per epoch.
        `sample_store` is the size of the negative sample store in item ids (spec 5.2);
        `store_type` ('gpu' or 'cpu') is accepted for compatibility with the original and has
        no effect: the store lives on the model's device, which the sample store line reports."""
        td = self._training_data(data, session_key, item_key, time_key)
        trainer, sampler = self._trainer(td, sample_store)
        p = self.params
        order_rng = np.random.RandomState(p.seed) if p.train_random_order else None
        if show_progress is None:
            show_progress = sys.stdout.isatty()
        self.history = []
        for record in trainer.epochs(td, sampler, p.n_epochs, order_rng, show_progress):
            if record is None:
                log.warning("Epoch%d: NaN error!", len(self.history) + 1)
                self.error_during_train = True
                break
            log.info(record.line())
            self.history.append(record)
            if callback is not None:
                callback(record)
        return self

    def _training_data(self, data, session_key, item_key, time_key):
        """The events as TrainingData (spec 2), checked for enough sessions before anything
        is compiled; the column names given here become the model's."""
        p = self.params
        keys = [session_key or p.session_key, item_key or p.item_key, time_key or p.time_key]
        self.params = replace(p, session_key=keys[0], item_key=keys[1], time_key=keys[2])
        self.error_during_train = False
        td = prepare(data, *keys, time_sort=p.time_sort)
        check_batch_size(len(td.base_order), p.batch_size)
        return td

    def _trainer(self, td, sample_store):
        """A fresh network and its compiled Trainer, and the sample store (None without
        samples); logs the sample store line."""
        p = self.params
        n_items = len(td.itemids)
        self.itemidmap = pd.Series(np.arange(n_items, dtype=np.int32), index=td.itemids, name="ItemIdx")
        mode = mode_for(self.backend, self.device, self.precision)
        self.net = Network(p, n_items, pop=td.pop, fused=self.fused_ops)
        K = whole_windows(self.steps_per_call, p.bptt)
        sampler = None
        if p.draws_samples:
            sampler = SampleStore(td.pop, p.n_sample, p.sample_alpha, sample_store, K,
                                  np.random.default_rng(p.seed))
        t0 = time.time()
        trainer = Trainer(self.net, K, mode, seed=p.seed)
        self.compile_seconds = time.time() - t0
        if sampler:
            trainer.set_store(sampler.block)
            log.info("Created sample store with %d batches of samples (type=%s)", sampler.n_rows,
                     parse_device(self.device)[0].upper())
        return trainer, sampler

    # save / load -----------------------------------------------------------------------------
    def save(self, path):
        """Writes the trained model to `path` atomically (see gru4rec.serialization)."""
        if self.net is None:
            raise ValueError("the model is not trained yet; call fit() before save()")
        serialization.save(path, dict(self.params), self.itemidmap.index, self.net.weights(),
                           self.error_during_train)

    @classmethod
    def load(cls, path, device="cpu", backend="jax", precision="float32"):
        """Reads a model written by `save`, onto the given device, backend and precision."""
        params, itemids, weights, error = serialization.load(path)
        model = cls(device=device, backend=backend, precision=precision)
        try:
            model._apply(list(params.items()), verbose=False)
            check_weights(model.params, len(itemids), weights)
            model.net = Network(model.params, len(itemids), weights=weights)
        except (ValueError, KeyError, TypeError) as e:
            raise serialization.ModelFileError(f"{path} holds an inconsistent model: {e}") from None
        model.itemidmap = pd.Series(np.arange(len(itemids), dtype=np.int32), index=itemids, name="ItemIdx")
        model.error_during_train = error
        return model

    # evaluation and live sessions (gru4rec.evaluation, gru4rec.predict) ---------------------
    def evaluate(self, test_data, **kwargs):
        """Recall@k / MRR@k on test sessions; see gru4rec.evaluation.evaluate."""
        from .evaluation import evaluate
        return evaluate(self, test_data, **kwargs)

    def recommend(self, session_items, k=20, exclude=None, candidates=None):
        """Top-k (ItemId, Score) after a session's items; unknown items are skipped."""
        from .predict import live
        return live(self).recommend(session_items, k, exclude, candidates)

    def recommend_next(self, session_ids, item_ids, k=20, exclude=None, candidates=None):
        """Advances each named session by one event and returns its top-k (long DataFrame)."""
        from .predict import live
        return live(self).recommend_next(session_ids, item_ids, k, exclude, candidates)

    def drop_sessions(self, session_ids=None):
        """Forgets the state of the given live sessions (all when None)."""
        from .predict import live
        return live(self).drop(session_ids)


def _parameters_section():
    """The help text's list of the parameters, from their documentation in gru4rec.params."""
    lines = ["", "    Parameters (keyword arguments; default, meaning):", ""]
    for name, default, meaning in P.field_meanings():
        lines.append(textwrap.fill(f"{name}={default!r}: {meaning}", 92, initial_indent="    ",
                                   subsequent_indent="        "))
    return "\n".join(lines) + "\n"


GRU4Rec.__doc__ += _parameters_section()
