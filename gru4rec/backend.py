"""Compiler set-up: float32, cache folders, and the PyTensor mode for a backend/device pair.

Imported first by the package so that PyTensor sees its flags before it is imported.
The compile caches live in one known place (``$GRU4REC_CACHE``, default
``~/.cache/gru4rec``): PyTensor's compiledir and JAX's persistent compilation cache.
A cold cache costs the first run its compile time (see README); later runs reuse it.
"""
import os
import warnings
from pathlib import Path

CACHE_DIR = Path(os.environ.get("GRU4REC_CACHE", Path.home() / ".cache" / "gru4rec"))

if "base_compiledir" not in os.environ.get("PYTENSOR_FLAGS", ""):
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    os.environ["PYTENSOR_FLAGS"] = ",".join(
        f for f in (flags, f"base_compiledir={CACHE_DIR / 'pytensor'}") if f)

import pytensor  # noqa: E402
from pytensor.compile.mode import Mode, get_mode  # noqa: E402

pytensor.config.floatX = "float32"
# PyTensor's JAX linker copies RandomType shared variables and says so on every compile.
warnings.filterwarnings("ignore", message="The RandomType SharedVariables")
# JAX without x64 truncates PyTensor's internal float64 casts to float32, as intended.
warnings.filterwarnings("ignore", message="Explicitly requested dtype float64")

BACKENDS = ("jax", "numba", "c")
# Matrix-product precision on the GPU: full float32 like the original's cuBLAS SGEMM, or
# TF32 (faster on A100/H100, about 3 fewer decimal digits in every product) on request.
PRECISIONS = {"float32": "float32", "tf32": "tensorfloat32"}
_jax_ready = False


def _setup_jax():
    global _jax_ready
    if _jax_ready:
        return
    import jax
    jax.config.update("jax_compilation_cache_dir", str(CACHE_DIR / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _jax_ready = True


def parse_device(device):
    """'cpu' -> 'cpu'; 'gpu', 'cuda', 'cuda0', 'cuda:1' -> ('gpu', index)."""
    d = str(device).strip().lower()
    if d == "cpu":
        return "cpu", 0
    for prefix in ("cuda:", "cuda", "gpu:", "gpu"):
        if d.startswith(prefix):
            rest = d[len(prefix):]
            if rest == "" or rest.isdigit():
                return "gpu", int(rest or 0)
    raise ValueError(f"unknown device {device!r}: use cpu, gpu, cuda0, cuda:1, ...")


def mode_for(backend, device="cpu", precision="float32"):
    """The PyTensor compilation mode for a backend name ('jax', 'numba', 'c') on a device.

    Only the JAX backend can run on a GPU; for it the default JAX device is set so that
    shared variables (weights, optimizer state, sample store, schedule) live there, and
    every matrix product is traced with the given precision ('float32' or 'tf32'; the CPU
    computes in float32 either way).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    kind, index = parse_device(device)
    if backend == "jax":
        _setup_jax()
        import jax
        try:
            dev = jax.devices(kind)[index]
        except (RuntimeError, IndexError) as e:
            raise ValueError(f"device {device!r} is not available to JAX ({e})") from None
        jax.config.update("jax_default_device", dev)
    elif kind != "cpu":
        raise ValueError(f"the {backend} backend runs on the CPU only; use backend='jax' for {device!r}")
    if backend == "jax":
        return Mode(linker=_donating_jax_linker(PRECISIONS[precision]),
                    optimizer=get_mode("JAX").provided_optimizer)
    if backend == "numba":
        return get_mode("NUMBA")
    # FAST_RUN's default linker is Numba in PyTensor 3; ask for the C virtual machine
    return Mode(linker="cvm", optimizer="fast_run")


def _donating_jax_linker(precision):
    """PyTensor's JAX linker, but tracing every matrix product with `precision` (a JAX
    precision name) and donating the buffers of the shared variables a function updates:
    the new weights are written where the old ones were, instead of into a copy of every
    item matrix per call."""
    from pytensor.link.jax.linker import JAXLinker

    class DonatingJAXLinker(JAXLinker):
        def jit_compile(self, fn):
            import jax

            def traced(*args):
                with jax.default_matmul_precision(precision):
                    return fn(*args)

            donate = sorted(set((self.fgraph.update_mapping or {}).values()))
            static = self.scalar_shape_inputs
            jitted = jax.jit(traced, donate_argnums=donate, static_argnums=static)
            if not static:
                return jitted
            return lambda *args: jitted(*(int(a) if i in static else a for i, a in enumerate(args)))

    return DonatingJAXLinker()
