"""The CPU kernel of SparseAdagrad's update (gru4rec/ops/sparse_update.cc): the bits
of XLA's gathers, arithmetic and scatters, in the compiled training call on the CPU only, used
only where a check at compile time finds XLA's bits, built once into the cache, and a fallback
to XLA's update, with one warning, where it cannot be built."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru4rec import GRU4Rec, backend, ops
from gru4rec.ops import cpu_kernels

from .xlahelpers import record_training_programs

needs_compiler = pytest.mark.skipif(cpu_kernels.compiler() is None, reason="needs a C++ compiler to build the kernel")
TARGET = "gru4rec_sparse_update"


def sparse_adagrad_fn(momentum, lmbd=0.0):
    """The JAX implementation of SparseAdagrad, jitted, as the training call traces it."""
    backend.mode_for("jax")  # float32 before PyTensor's JAX dispatch is imported
    from pytensor.link.jax.dispatch import jax_funcify
    return jax.jit(jax_funcify(ops.SparseAdagrad(0.1, momentum, lmbd)))


def update_problem(rng, N=40, D=13, n=300):
    """Item matrices and an update whose indices repeat (a third of them hit rows 0-4), with
    gradients from 1e-6 to 10 (D = 13: a vector of 8 floats and a tail)."""
    idx = np.r_[rng.integers(0, 5, n // 3), rng.integers(0, N, n - n // 3)].astype(np.int32)
    rng.shuffle(idx)
    g = rng.normal(0, 1, (n, D)) * 10.0 ** rng.integers(-6, 2, (n, D))
    return [rng.normal(0, 1, (N, D)).astype(np.float32), rng.random((N, D)).astype(np.float32),
            rng.normal(0, 0.1, (N, D)).astype(np.float32), idx, g.astype(np.float32)]


@needs_compiler
@pytest.mark.parametrize("momentum", [0.0, 0.3])
@pytest.mark.parametrize("lmbd", [0.0, 0.01])
@pytest.mark.parametrize("D", [13, 64])
def test_kernel_gives_the_bits_of_xla(momentum, lmbd, D):
    args = update_problem(np.random.default_rng(0), D=D)
    if momentum == 0:
        del args[2]  # no velocity
    P, idx = args[0], args[-2]
    kernel = sparse_adagrad_fn(momentum, lmbd)
    assert TARGET in kernel.lower(*args).as_text()
    with_kernel = [np.asarray(a) for a in kernel(*args)]
    with cpu_kernels.turned_off():
        xla = sparse_adagrad_fn(momentum, lmbd)
    assert TARGET not in xla.lower(*args).as_text()
    for a, b in zip(with_kernel, xla(*args)):
        np.testing.assert_array_equal(a, np.asarray(b))
    # and the NumPy statement of the Op (exact square roots: within a few float32 roundings)
    out = [[None] for _ in with_kernel]
    ops.SparseAdagrad(0.1, momentum, lmbd).perform(None, args, out)
    for a, (b,) in zip(with_kernel, out):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # untouched rows keep their values, touched ones changed
    touched = np.zeros(len(P), bool)
    touched[idx] = True
    for new, old in zip(with_kernel, args):
        np.testing.assert_array_equal(new[~touched], old[~touched])
        assert (new[touched] != old[touched]).any(axis=1).all()


@needs_compiler
@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_training_with_the_kernel_trains_the_same_weights(momentum, synthetic_train, monkeypatch):
    """A fit on the CPU calls the kernel for its item matrix (Wy; the By vector keeps XLA's
    update) and ends with the weights of a fit without it, bit for bit."""
    train = synthetic_train.head(4000)
    kw = dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2, momentum=momentum, constrained_embedding=True,
              loss="bpr-max", final_act="elu-0.5", dropout_p_hidden=0.3, seed=7)
    programs = record_training_programs(monkeypatch)
    with_kernel = GRU4Rec(**kw).fit(train)
    with cpu_kernels.turned_off(TARGET):
        without = GRU4Rec(**kw).fit(train)
    calls = [text.count(f'custom_call_target="{TARGET}"') for text in programs]
    assert calls == [1, 0]
    for name, w in with_kernel.net.W.items():
        np.testing.assert_array_equal(w.get_value(), without.net.W[name].get_value(), err_msg=name)


@needs_compiler
def test_kernel_that_rounds_otherwise_is_not_used(monkeypatch, caplog):
    """The check at compile time: a kernel whose results differ from XLA's in one bit, or that
    fails, is refused (one log message each), and the update compiles to XLA's operations."""
    from gru4rec.ops import jax_dispatch
    monkeypatch.setattr(jax_dispatch, "_checked", {})
    P, A, V, idx, g = update_problem(np.random.default_rng(4), n=40)
    with cpu_kernels.turned_off():
        xla = sparse_adagrad_fn(0.3)

    def off_by_one_bit(*args):
        P, A, V = xla(*args)
        return P, A, V.at[1, 2].set(jnp.nextafter(V[1, 2], jnp.inf))

    def failing(*args):
        raise ValueError("no such kernel")

    problem = jax_dispatch._sparse_problem(True)
    with caplog.at_level(logging.INFO, logger="gru4rec.ops.jax_dispatch"):
        assert not jax_dispatch._same_bits(("sparse", True, False), off_by_one_bit, xla, problem)
        assert jax_dispatch._same_bits(("sparse", True, True), xla, xla, problem)
        assert not jax_dispatch._same_bits(("sparse", "a key of its own"), failing, xla, problem)
    assert [("does not round as" in m, "failed (no such kernel)" in m)
            for m in (r.getMessage() for r in caplog.records)] == [(True, False), (False, True)]
    monkeypatch.setattr(jax_dispatch, "_checked", {("sparse", True, False): False})
    assert TARGET not in sparse_adagrad_fn(0.3).lower(P, A, V, idx, g).as_text()


def test_gpu_program_keeps_xla_update():
    """Lowered for CUDA (no GPU needed to lower), the update has no call of the CPU kernel."""
    fn = sparse_adagrad_fn(0.3)
    S = jax.ShapeDtypeStruct
    args = [S((20, 5), jnp.float32)] * 3 + [S((12,), jnp.int32), S((12, 5), jnp.float32)]
    text = jax.export.export(fn, platforms=["cuda"])(*args).mlir_module()
    assert "scatter" in text and TARGET not in text


@needs_compiler
def test_kernel_is_built_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRU4REC_CACHE", str(tmp_path))
    build = lambda: cpu_kernels._build(TARGET, jax.ffi.include_dir())  # noqa: E731
    first = build()
    assert first.parent == tmp_path / "kernels" and first.exists()
    stamp = first.stat().st_mtime_ns
    assert build() == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]


@needs_compiler
def test_library_name_follows_the_shared_header(tmp_path, monkeypatch):
    """A kernel includes in_parts.h: a changed header names (and so builds) a new library."""
    for f in [*cpu_kernels.KERNEL_DIR.glob("*.cc"), *cpu_kernels.KERNEL_DIR.glob("*.h")]:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(cpu_kernels, "KERNEL_DIR", tmp_path)
    path = lambda: cpu_kernels._library_path(TARGET, jax.ffi.include_dir())  # noqa: E731
    before = path()
    (tmp_path / "in_parts.h").write_text((tmp_path / "in_parts.h").read_text() + "\n// changed\n")
    assert path() != before
    (tmp_path / "bpr_max.cc").write_text("// another kernel changed\n")
    after = path()
    assert after == path() and after.name.startswith("sparse_update-")


# a compiler that writes part of its output file (the argument after -o) and then fails
PARTIAL_COMPILER = """#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = -o ] && echo partial > "$2"; shift; done
exit 1
"""


@pytest.mark.parametrize("env", [{"CXX": PARTIAL_COMPILER}, {"CXX": "no-such-compiler-here"},
                                 {"GRU4REC_CPU_KERNEL": "0"}],
                         ids=["compiler-fails", "compiler-missing", "turned-off"])
def test_unavailable_kernel_falls_back_to_xla(env, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRU4REC_CACHE", str(cache))
    for k, v in env.items():
        if v == PARTIAL_COMPILER:
            v = tmp_path / "cxx"
            v.write_text(PARTIAL_COMPILER)
            v.chmod(0o755)
        monkeypatch.setenv(k, str(v))
    monkeypatch.setattr(cpu_kernels, "_library", {})
    with caplog.at_level(logging.WARNING, logger="gru4rec.ops.cpu_kernels"):
        assert cpu_kernels.target(TARGET) is None
    warnings = [r.getMessage() for r in caplog.records]
    if "CXX" in env:
        assert len(warnings) == 1 and "XLA's own operations run instead" in warnings[0]
    else:
        assert warnings == []
    assert not [p for p in cache.rglob("*") if p.is_file()]  # no partial library left
    P, A, V, idx, g = update_problem(np.random.default_rng(1), n=40)
    fn = sparse_adagrad_fn(0.3)
    assert TARGET not in fn.lower(P, A, V, idx, g).as_text()


@needs_compiler
def test_kernel_refuses_a_row_out_of_range():
    """XLA's gathers and scatters are told the indices are in range (no check); the kernel checks
    them rather than write outside the matrix."""
    P, A, V, idx, g = update_problem(np.random.default_rng(2), n=40)
    idx[7] = len(P)
    with pytest.raises(Exception, match="out of range"):
        jax.block_until_ready(sparse_adagrad_fn(0.3)(P, A, V, idx, g))
