"""The public `GRU4Rec` class: parameters, the training loop (spec 3), save and load."""
import sys
import time
from collections import OrderedDict

import numpy as np
import pandas as pd

from . import params as P
from .backend import mode_for
from .data import DataError, prepare, session_parallel_schedule
from .model import Network
from .sampling import SampleStore


class GRU4Rec:
    """Session-based recommender with a GRU (Hidasi et al. 2016, 2018).

    GRU4Rec(loss='cross-entropy', final_act='softmax', layers=[100], ...) takes every
    hyperparameter of the original (see `gru4rec.params.DEFAULTS`); `device` ('cpu', 'gpu',
    'cuda0') and `backend` ('jax', 'numba', 'c') choose where and how the graph runs, and
    `steps_per_call` how many minibatches one compiled call trains.
    """

    def __init__(self, device="cpu", backend="jax", steps_per_call=32, **params):
        self.device = device
        self.backend = backend
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
        if n_sessions < B:
            raise DataError(f"the data has {n_sessions} sessions, fewer than batch_size={B}; "
                            "lower batch_size or add data")
        self.itemidmap = pd.Series(np.arange(n_items, dtype=np.int32), index=td.itemids, name="ItemIdx")
        mode = mode_for(self.backend, self.device)
        self.net = Network(p, n_items, pop=td.pop)
        order_rng = np.random.RandomState(p["seed"])
        store = None
        if S:
            store = SampleStore(td.pop, S, p["sample_alpha"], sample_store, K, np.random.default_rng(p["seed"]))
        train = self.net.compile_train(K, store.n_rows if store else 0, mode, seed=p["seed"])
        if store:
            kind = "CPU" if store_type == "cpu" else "GPU"
            print(f"Created sample store with {store.n_rows} batches of samples (type={kind})")
        if progress is None:
            progress = sys.stdout.isatty()
        pad = self.net.pad
        for epoch in range(p["n_epochs"]):
            t0 = time.time()
            for h in self.net.H:
                h.set_value(np.zeros(h.get_value().shape, np.float32))
            order = order_rng.permutation(n_sessions) if p["train_random_order"] else td.base_order
            sched = session_parallel_schedule(td.items, td.offsets, order, B, pad, stop_below_two=(S == 0))
            n_steps = sched.n_steps
            sched = sched.padded(K, pad)
            costs = []
            bar = _bar(n_steps, f"Epoch{epoch + 1}") if progress else None
            for c in range(len(sched.x) // K):
                sl = slice(c * K, (c + 1) * K)
                off = 0
                if store:
                    off, block = store.take()
                    if block is not None:
                        self.net.store.set_value(block)
                costs.append(train(sched.x[sl], sched.y[sl], sched.active[sl], sched.reset[sl], np.int32(off)))
                if bar is not None:
                    bar.update(min(K, n_steps - c * K))
            if bar is not None:
                bar.close()
            costs = np.concatenate([np.asarray(c) for c in costs])[:n_steps]
            M = sched.active[:n_steps].sum(axis=1)
            if np.isnan(costs).any():
                print(f"Epoch{epoch + 1}: NaN error!")
                self.error_during_train = True
                return self
            avg = float((costs * M).sum() / M.sum()) if M.sum() else float("nan")
            dt = time.time() - t0
            print(f"Epoch{epoch + 1} --> loss: {avg:.6f} \t({dt:.2f}s) \t"
                  f"[{n_steps / dt:.2f} mb/s | {M.sum() / dt:.0f} e/s]")
        return self


def _bar(total, desc):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="mb", leave=False, file=sys.stderr)
