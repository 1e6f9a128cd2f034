"""Choosing the number of epochs by validation: `BestEpoch`, a `GRU4Rec.fit` callback that
measures the model on validation data every few epochs and keeps the weights of the best
measurement, so that a model trained for n_epochs ends as the model of its best epoch (the
way the sequential-recommendation papers report their epochs)."""
import numpy as np


class BestEpoch:
    """fit() callback: `score(model) -> float` (higher is better) after every `every`-th
    epoch and after the last one; the weights of the best score are kept.

        best = BestEpoch(model, lambda m: evaluate_next_item(m, train, valid, cut_off=[10]).ndcg[10])
        model.fit(train, callback=best)
        best.restore()   # the model now holds the weights of best.epoch

    `curve` holds every (epoch, score) measured, for the validation curve; `epoch` and
    `value` the best one (ties keep the earlier epoch). Only the weights are kept, not the
    optimizer state: training on from a restored model starts a new optimizer, as every fit()
    does.
    """

    def __init__(self, model, score, every=1):
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.model, self.score, self.every = model, score, int(every)
        self.curve = []
        self.epoch, self.value, self._weights = None, -np.inf, None

    def __call__(self, record):
        if record.epoch % self.every and record.epoch != self.model.params.n_epochs:
            return
        value = float(self.score(self.model))
        self.curve.append((record.epoch, value))
        if value > self.value:
            self.epoch, self.value, self._weights = record.epoch, value, self.model.net.weights()

    def restore(self):
        """Puts the best epoch's weights back into the model; returns the model."""
        if self._weights is None:
            raise ValueError("no epoch was measured yet: pass this object to fit(callback=...) first")
        self.model.net.set_weights(self._weights)
        return self.model
