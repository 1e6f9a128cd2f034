"""`BandCounts`: the counting half of the one-pass softmax ranking
(`gru4rec.evaluation.softmax_band_counts`), one tile of raw scores at a time.

A softmax score needs its row's maximum and sum, known only after every item has been scored.
But the activation only stretches the raw scores (it never reorders scores that lie apart by
more than its rounding), so one pass can count the raw scores above a band around an
estimate of the target's raw score and keep the few inside it; once the normaliser is known,
only the kept ones are activated and compared with the target's score (the caller checks that
the band's edges activate clearly apart from the target, else it counts again in two passes).

Its `perform` is the NumPy reference (what the C and Numba backends run; the evaluation uses
the one pass only on the JAX backend); the JAX implementation is in jax_dispatch.py (on the
CPU it ends in the C++ kernel of band_counts.cc).
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op


class BandCounts(Op):
    """(above', band', n') = BandCounts()(R, lo, hi, at, above, band, n).

    R: (T, B) float32 raw scores of a tile of T items for B rows; lo, hi: (B,) the band of each
    row; at: (B,) int32, each row's target column within the tile (any other value: none);
    above: (B,) int32 counts; band: (K, B) float32 kept scores; n: (B,) int32 numbers kept.
    For every column j != at[i], in order: R[j, i] > hi[i] adds one to above[i];
    lo[i] <= R[j, i] <= hi[i] writes R[j, i] to band[n[i], i] if n[i] < K, and adds one to
    n[i] (so n[i] > K tells that the band overflowed). NaN is neither. Other slots of band are
    left as they are.
    """

    __props__ = ()

    def make_node(self, R, lo, hi, at, above, band, n):
        ins = [pt.as_tensor_variable(v) for v in (R, lo, hi, at, above, band, n)]
        ranks, dtypes = (2, 1, 1, 1, 1, 2, 1), ("float32",) * 3 + ("int32",) * 2 + ("float32", "int32")
        if tuple(v.ndim for v in ins) != ranks or tuple(v.dtype for v in ins) != dtypes:
            raise TypeError("BandCounts takes R (T, B), lo, hi (B,) float32; at, above (B,) int32; "
                            "band (K, B) float32; n (B,) int32")
        return Apply(self, ins, [ins[4].type(), ins[5].type(), ins[6].type()])

    def perform(self, node, inputs, output_storage):
        above, band, n = reference(*inputs)
        output_storage[0][0], output_storage[1][0], output_storage[2][0] = above, band, n

    def infer_shape(self, fgraph, node, shapes):
        return list(shapes[4:])


def masks(R, lo, hi, at, xp=np):
    """(above, inside): each score above its row's band and within it, the target's column
    excluded; xp: numpy or jax.numpy."""
    other = xp.arange(R.shape[0], dtype=np.int32)[:, None] != at[None, :]
    return other & (R > hi[None, :]), other & (R >= lo[None, :]) & (R <= hi[None, :])


def slots(inside, n, K, xp=np):
    """The row of `band` each kept score goes to (T x B); K for scores not kept."""
    slot = n[None, :] + xp.cumsum(inside, axis=0, dtype=np.int32) - 1
    return xp.where(inside & (slot < K), slot, K)


def reference(R, lo, hi, at, above, band, n):
    """BandCounts in NumPy (new arrays)."""
    up, inside = masks(R, lo, hi, at)
    slot = slots(inside, n, band.shape[0])
    j, i = np.nonzero(slot < band.shape[0])
    band = band.copy()
    band[slot[j, i], i] = R[j, i]
    return (above + up.sum(axis=0, dtype=np.int32), band, n + inside.sum(axis=0, dtype=np.int32))


band_counts = BandCounts()
