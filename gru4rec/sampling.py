"""The sample store of popularity-weighted negatives (spec 5).

Rows of `n_sample` item indices are drawn ahead, p(i) ~ support_i ** sample_alpha, and kept
on the training device (`Trainer.set_store`); every training step uses the next row, and each
compiled call gets its K rows as a slice of the stored block.
"""
import numpy as np


class SampleStore:
    def __init__(self, pop, n_sample, alpha, store_size, steps_per_call, rng):
        self.n_sample = n_sample
        self.alpha = alpha
        self.rng = rng
        w = pop.astype(np.float64) ** alpha
        self.cdf = np.cumsum(w) / w.sum()
        self.cdf[-1] = 1.0
        # The store keeps at least one call's worth of rows (and two, like the original's
        # GPU store needs) so a call never straddles a regeneration.
        self.n_rows = max(store_size // n_sample if n_sample else 0, steps_per_call, 2)
        self.steps_per_call = steps_per_call
        self.block = self.generate()
        self.ptr = 0

    def generate(self):
        """A fresh (n_rows, n_sample) int32 block, searched in the CDF with side='right'
        (the original's GPU store); uniform sampling when alpha == 0."""
        n = self.n_rows * self.n_sample
        if self.alpha == 0:
            s = self.rng.integers(0, len(self.cdf), n)
        else:
            s = np.searchsorted(self.cdf, self.rng.random(n), side="right")
            np.minimum(s, len(self.cdf) - 1, out=s)
        return s.astype(np.int32).reshape(self.n_rows, self.n_sample)

    def take(self):
        """Row offset for the next call, and a new block when the current one is used up.

        Returns (offset, new block or None); the first block is `self.block`. Rows persist
        across epochs (spec 5.2); the remainder of a block shorter than one call is skipped,
        which does not change the distribution of the samples."""
        block = None
        if self.ptr + self.steps_per_call > self.n_rows:
            block, self.ptr = self.generate(), 0
        off = self.ptr
        self.ptr += self.steps_per_call
        return off, block
