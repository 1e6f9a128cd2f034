"""The sample store of popularity-weighted negatives (spec 5).

Rows of `n_sample` item indices are drawn ahead, p(i) ~ support_i ** sample_alpha, and kept
on the training device (`Trainer.set_store`); every training step uses the next row, and each
compiled call gets its K rows as a slice of the stored block.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

BUCKETS = 1 << 20  # of [0, 1) in `InverseCdf`'s table (4 MiB)
CHUNK = 1 << 20  # uniforms drawn and searched at a time


class InverseCdf:
    """np.searchsorted(cdf, u, side="right") for many uniforms u in [0, 1), exactly, in a
    tenth of its time.

    Why: a binary search of 10M random keys takes 0.6-1.4 s on the CPU (mostly mispredicted
    branches), and the training loop waits for every regenerated store. [0, 1) is cut into
    BUCKETS equal buckets; where no cdf entry lies in a bucket, every u in it has the same
    answer, read from a table; the rest (about n_items / BUCKETS of the keys) are searched.
    u * BUCKETS is exact (a power of two), so each u finds its own bucket."""

    def __init__(self, cdf):
        self.cdf = cdf
        bounds = np.searchsorted(cdf, np.arange(BUCKETS + 1) / BUCKETS, side="right")
        self.table = np.where(bounds[:-1] == bounds[1:], bounds[:-1], -1).astype(np.int32)

    def __call__(self, u):
        s = self.table[(u * BUCKETS).astype(np.int64)]
        open_ = np.flatnonzero(s < 0)
        s[open_] = np.searchsorted(self.cdf, u[open_], side="right")
        return s


class SampleStore:
    def __init__(self, pop, n_sample, alpha, store_size, steps_per_call, rng):
        self.n_sample = n_sample
        self.rng = rng
        w = pop.astype(np.float64) ** alpha
        cdf = np.cumsum(w) / w.sum()
        cdf[-1] = 1.0  # so every u < 1 finds an item
        self.n_items = len(cdf)
        self.inverse = InverseCdf(cdf) if alpha else None
        # The store keeps at least one call's worth of rows (and two, like the original's
        # GPU store needs) so a call never straddles a regeneration.
        self.n_rows = max(store_size // n_sample if n_sample else 0, steps_per_call, 2)
        self.steps_per_call = steps_per_call
        self.ptr = 0
        self._first = _in_background(self.generate)

    @property
    def block(self):
        """The first block, drawn on a thread of its own since the store was made: it is ready
        when the training graph has compiled, on the core that the compilation (Python) leaves
        idle, since NumPy releases the GIL while it draws and searches (0.2-0.3 s for the
        default store of 10M samples on the project's CPUs: docs/performance.md)."""
        return self._first.result()

    def generate(self):
        """A fresh (n_rows, n_sample) int32 block, uniforms searched in the CDF with
        side='right' (the original's GPU store); uniform sampling when alpha == 0. The
        uniforms are drawn CHUNK at a time, the same stream as drawing them at once."""
        n = self.n_rows * self.n_sample
        if self.inverse is None:
            return self.rng.integers(0, self.n_items, n).astype(np.int32).reshape(self.n_rows, self.n_sample)
        block = np.empty(n, np.int32)
        for i in range(0, n, CHUNK):
            block[i:i + CHUNK] = self.inverse(self.rng.random(min(CHUNK, n - i)))
        return block.reshape(self.n_rows, self.n_sample)

    def take(self):
        """Row offset for the next call, and a new block when the current one is used up.

        Returns (offset, new block or None); the first block is `self.block`. Rows persist
        across epochs (spec 5.2); the remainder of a block shorter than one call is skipped,
        which does not change the distribution of the samples."""
        block = None
        if self.ptr + self.steps_per_call > self.n_rows:
            self._first.result()  # the generator's stream in order: the first block's draw is done
            block, self.ptr = self.generate(), 0
        off = self.ptr
        self.ptr += self.steps_per_call
        return off, block


def _in_background(fn):
    """A Future of fn() run on a new thread that ends with it."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="gru4rec-samples")
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return future
