"""gru4rec.ops.BandCounts (the counting pass of the one-pass softmax ranking): its NumPy
reference on a hand-made tile, and the CPU kernel (band_counts.cc) and its twin in XLA's
operations (what a GPU runs) against that reference, bit for bit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru4rec import backend
from gru4rec.ops import cpu_kernels
from gru4rec.ops.band_counts import band_counts, reference

needs_compiler = pytest.mark.skipif(cpu_kernels.compiler() is None, reason="needs a C++ compiler to build the kernel")


def band_counts_fn():
    """The JAX implementation of BandCounts, jitted."""
    backend.mode_for("jax")  # float32 before PyTensor's JAX dispatch is imported
    from pytensor.link.jax.dispatch import jax_funcify
    return jax.jit(jax_funcify(band_counts))


def test_reference_by_hand():
    # 5 items x 2 rows; row 0: band [1, 2], target column 1; row 1: band [0, 0], no target here
    R = np.array([[3, 0], [1.5, 0], [2, 5], [np.nan, 0], [1, -1]], np.float32)
    lo, hi = np.array([1, 0], np.float32), np.array([2, 0], np.float32)
    at = np.array([1, 7], np.int32)
    above, band, n = reference(R, lo, hi, at, np.array([10, 0], np.int32), np.full((2, 2), -7, np.float32),
                               np.array([0, 1], np.int32))
    np.testing.assert_array_equal(above, [11, 1])  # row 0: 3 (1.5 is the target's column), row 1: 5
    np.testing.assert_array_equal(n, [2, 4])  # row 1 kept 3 more zeros, but has room for one
    np.testing.assert_array_equal(band, [[2, -7], [1, 0]])


def tile_problem(rng, T=300, B=37, K=76):
    """Scores on a coarse grid (ties with the band's edges), a NaN, targets in and out of the
    tile, bands that overflow, and kept scores already in the band."""
    R = rng.integers(0, 8, (T, B)).astype(np.float32) / 4
    R[3, 4] = np.nan
    lo = rng.integers(0, 8, B).astype(np.float32) / 4
    hi = lo + np.float32(0.25)
    at = rng.integers(-5, T + 5, B).astype(np.int32)
    return (R, lo, hi, at, rng.integers(0, 3, B).astype(np.int32), rng.normal(size=(K, B)).astype(np.float32),
            rng.integers(0, 3, B).astype(np.int32))


@needs_compiler
def test_kernel_and_its_xla_twin_give_the_reference():
    args = tile_problem(np.random.default_rng(0))
    want = reference(*args)
    assert (want[2] > args[5].shape[0]).any() and (want[2] <= args[5].shape[0]).any()  # overflows, and not
    kernel = band_counts_fn()
    assert "gru4rec_band_counts" in kernel.lower(*args).as_text()
    with cpu_kernels.turned_off():
        xla = band_counts_fn()
    assert "gru4rec_band_counts" not in xla.lower(*args).as_text()
    for fn in (kernel, xla):
        for a, b in zip(want, fn(*args)):
            np.testing.assert_array_equal(a, np.asarray(b))


def test_gpu_program_has_no_kernel_call():
    S = jax.ShapeDtypeStruct
    f, i = jnp.float32, jnp.int32
    args = [S((30, 4), f), S((4,), f), S((4,), f), S((4,), i), S((4,), i), S((3, 4), f), S((4,), i)]
    text = jax.export.export(band_counts_fn(), platforms=["cuda"])(*args).mlir_module()
    assert "scatter" in text and "gru4rec_band_counts" not in text
