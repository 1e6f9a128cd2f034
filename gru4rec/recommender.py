"""The public `GRU4Rec` class: parameters, training (spec 3, through gru4rec.training), save
and load."""
import logging
import sys
import time
from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pandas as pd

from . import params as P
from . import serialization
from .backend import mode_for
from .data import check_batch_size, prepare
from .model import Network
from .sampling import SampleStore
from .training import Trainer, whole_windows

log = logging.getLogger(__name__)


class GRU4Rec:
    """Session-based recommender with a GRU (Hidasi et al. 2016, 2018).

    GRU4Rec(loss='cross-entropy', final_act='softmax', layers=[100], ...) takes every
    hyperparameter of the original (each documented in `gru4rec.params.Params`, the type of
    `model.params`); `device` ('cpu', 'gpu',
    'cuda0') and `backend` ('jax', 'numba', 'c') choose where and how the graph runs, and
    `steps_per_call` how many minibatches one compiled call trains (rounded up to a multiple
    of the parameter `bptt`); `fused_ops` (default on)
    trains with the fused Ops of `gru4rec.ops` where they cover the loss and optimizer;
    `precision` ('float32', the default, or 'tf32') is the matrix-product precision of the
    JAX backend on a GPU for training, evaluation and prediction (the original multiplies in
    full float32; TF32 is faster on A100/H100 GPUs but rounds every product's inputs).
    """

    def __init__(self, device="cpu", backend="jax", steps_per_call=32, fused_ops=True,
                 precision="float32", **params):
        self.device = device
        self.backend = backend
        self.precision = precision
        self.fused_ops = bool(fused_ops)
        self.steps_per_call = int(steps_per_call)
        if self.steps_per_call < 1:
            raise ValueError("steps_per_call must be >= 1")
        self.params = P.DEFAULTS
        self.net = None
        self.itemidmap = None
        self.error_during_train = False
        self.history = []  # an EpochRecord per epoch of the last fit
        if params:
            self._apply([(k, v) for k, v in params.items()], verbose=False)

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
            time_key=None, progress=None, callback=None, show_progress=None):
        """Trains on a DataFrame of events (session id, item id, time) as spec 3 describes.

        Logs (gru4rec.messages) the sort message, the sample store line and one line per epoch
        at INFO, and keeps each epoch's `gru4rec.training.EpochRecord` (loss, seconds, mb_per_s, events_per_s) in
        `self.history`; `callback(record)` is called after every epoch. On a NaN it logs
        the NaN line (WARNING), sets `error_during_train` and stops (the aborted epoch has no record).
        `show_progress` (or its older name `progress`; default: when stdout is a terminal)
        shows a progress bar per epoch."""
        td = self._training_data(data, session_key, item_key, time_key)
        trainer, sampler = self._trainer(td, sample_store, store_type)
        p = self.params
        order_rng = np.random.RandomState(p.seed) if p.train_random_order else None
        if show_progress is None:
            show_progress = sys.stdout.isatty() if progress is None else progress
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

    def _trainer(self, td, sample_store, store_type):
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
        trainer = Trainer(self.net, K, mode, store_rows=sampler.n_rows if sampler else 0, seed=p.seed)
        self.compile_seconds = time.time() - t0
        if sampler:
            trainer.store.set_value(sampler.block)
            log.info("Created sample store with %d batches of samples (type=%s)", sampler.n_rows,
                     "CPU" if store_type == "cpu" else "GPU")
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


def _read_only(name):
    return property(lambda self: getattr(self.params, name),
                    doc=f"The parameter {name} (read-only: see gru4rec.params.Params; change it with set_params).")


# The original's model object has its parameters as attributes (gru.layers, gru.loss, ...);
# here they are read-only views of `params`.
for _name in P.Params.__dataclass_fields__:
    setattr(GRU4Rec, _name, _read_only(_name))

