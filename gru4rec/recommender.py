"""The public `GRU4Rec` class: parameters, the training loop (spec 3), save and load."""
import sys
import time
from collections import OrderedDict

import numpy as np
import pandas as pd

from . import params as P
from . import serialization
from .backend import mode_for
from .data import check_batch_size, prepare, session_parallel_schedule
from .model import Network
from .sampling import SampleStore


class GRU4Rec:
    """Session-based recommender with a GRU (Hidasi et al. 2016, 2018).

    GRU4Rec(loss='cross-entropy', final_act='softmax', layers=[100], ...) takes every
    hyperparameter of the original (see `gru4rec.params.DEFAULTS`); `device` ('cpu', 'gpu',
    'cuda0') and `backend` ('jax', 'numba', 'c') choose where and how the graph runs, and
    `steps_per_call` how many minibatches one compiled call trains; `fused_ops` (default on)
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
        self.params = OrderedDict((k, list(v) if isinstance(v, list) else v) for k, v in P.DEFAULTS.items())
        self.net = None
        self.itemidmap = None
        self.error_during_train = False
        if params:
            self._apply([(k, v) for k, v in params.items()], verbose=False)

    # parameters ------------------------------------------------------------------------------
    def __getattr__(self, name):
        params = self.__dict__.get("params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(name)

    def _apply(self, pairs, verbose):
        converted = [(k, P.convert(k, v)) for k, v in pairs]
        new = OrderedDict(self.params)
        new.update(converted)
        if new["embedding"] == "layersize":
            new["embedding"] = new["layers"][0]
        P.validate(new)
        self.params = new
        if verbose:
            for line in P.format_set_lines(pairs, converted):
                print(line)
            if dict(converted).get("embedding") == "layersize":
                print(P.format_set_lines([("embedding", new["embedding"])], [("embedding", new["embedding"])])[0])

    def set_params(self, **kvargs):
        """Sets parameters from typed values or strings (spec 9.2), printing the SET lines."""
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
        return OrderedDict(self.params)

    # training --------------------------------------------------------------------------------
    def fit(self, data, sample_store=10000000, store_type="gpu", session_key=None, item_key=None,
            time_key=None, progress=None):
        """Trains on a DataFrame of events (session id, item id, time) as spec 3 describes.

        Prints the sort message, the sample store line and one line per epoch. `progress`
        (default: when stdout is a terminal) shows a progress bar per epoch."""
        p = self.params
        keys = [session_key or p["session_key"], item_key or p["item_key"], time_key or p["time_key"]]
        self.params.update(zip(("session_key", "item_key", "time_key"), keys))
        self.error_during_train = False
        td = prepare(data, *keys, time_sort=p["time_sort"])
        n_items = len(td.itemids)
        B, K, S = p["batch_size"], self.steps_per_call, p["n_sample"]
        n_sessions = len(td.base_order)
        check_batch_size(n_sessions, B)  # before anything is compiled
        self.itemidmap = pd.Series(np.arange(n_items, dtype=np.int32), index=td.itemids, name="ItemIdx")
        mode = mode_for(self.backend, self.device, self.precision)
        self.net = Network(p, n_items, pop=td.pop, fused=self.fused_ops)
        order_rng = np.random.RandomState(p["seed"])
        store = None
        if S:
            store = SampleStore(td.pop, S, p["sample_alpha"], sample_store, K, np.random.default_rng(p["seed"]))
        t0 = time.time()
        train = self.net.compile_train(K, store.n_rows if store else 0, mode, seed=p["seed"])
        self.compile_seconds = time.time() - t0
        if store:
            self.net.store.set_value(store.block)
            kind = "CPU" if store_type == "cpu" else "GPU"
            print(f"Created sample store with {store.n_rows} batches of samples (type={kind})")
        pad = self.net.pad
        if progress is None:
            progress = sys.stdout.isatty()
        for epoch in range(p["n_epochs"]):
            t0 = time.time()
            for h in self.net.H:
                h.set_value(np.zeros(h.get_value().shape, np.float32))
            order = order_rng.permutation(n_sessions) if p["train_random_order"] else td.base_order
            sched = session_parallel_schedule(td.items, td.offsets, order, B, pad, stop_below_two=(S == 0))
            n_steps = sched.n_steps
            sched = sched.padded(K, pad)
            bar = _bar(n_steps, f"Epoch{epoch + 1}") if progress else None
            costs = run_schedule(train, self.net, sched, store, K, self.backend == "jax", bar)
            if bar is not None:
                bar.close()
            if costs is None:
                print(f"Epoch{epoch + 1}: NaN error!")
                self.error_during_train = True
                return self
            costs = costs[:n_steps]
            M = sched.active[:n_steps].sum(axis=1)
            avg = float((costs * M).sum() / M.sum()) if M.sum() else float("nan")
            dt = time.time() - t0
            print(f"Epoch{epoch + 1} --> loss: {avg:.6f} \t({dt:.2f}s) \t"
                  f"[{n_steps / dt:.2f} mb/s | {M.sum() / dt:.0f} e/s]")
        return self

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


def run_schedule(train, net, sched, store, steps_per_call, on_jax, bar=None):
    """Runs a padded schedule through the compiled step, K steps per call; returns the
    per-step costs, or None on a NaN.

    One call stays in flight while the previous one's costs are read: the device never
    idles, and the progress bar and the NaN check follow the real work. With JAX the
    schedule goes to the device once and each call gets views of it."""
    K = steps_per_call
    n_calls = len(sched.x) // K
    chunks = [a.reshape(n_calls, K, -1) for a in (sched.x, sched.y, sched.active, sched.reset)]
    if on_jax:
        import jax
        chunks = [jax.device_put(a) for a in chunks]
    costs, pending = [], None
    for c in range(n_calls + 1):
        launched = None
        if c < n_calls:
            off = 0
            if store:
                off, block = store.take()
                if block is not None:
                    net.store.set_value(block)
            launched = train(*(a[c] for a in chunks), np.asarray(off, np.int32))
        if pending is not None:
            costs.append(np.asarray(pending))
            if np.isnan(costs[-1]).any():
                return None
            if bar is not None:
                bar.update(min(K, bar.total - bar.n))
        pending = launched
    return np.concatenate(costs)


def _bar(total, desc):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="mb", leave=False, file=sys.stderr)
