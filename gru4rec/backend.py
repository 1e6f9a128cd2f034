"""Compiler set-up: float32, cache folders, and the PyTensor mode for a backend/device pair.

Importing this module changes nothing in the process. `mode_for`, which every compiled
function of the package goes through, first calls `configure()`: float32 graphs, and the
compile caches in one known place (``$GRU4REC_CACHE``, default ``~/.cache/gru4rec``):
PyTensor's compiledir and Numba cache under ``pytensor/``, JAX's persistent compilation
cache under ``jax/``, the CPU kernels of gru4rec.ops.cpu_kernels under ``kernels/``. A cold
cache costs the first run its compile time (see docs/performance.md); later runs reuse it.

The device is a property of each compiled JAX function (its inputs and outputs are placed
there), not JAX's process-wide default device, so models on different devices can share a
process. The warnings PyTensor and JAX give on every compile of these graphs are silenced
only while a graph is compiled or traced.
"""
import functools
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

BACKENDS = ("jax", "numba", "c")
# Matrix-product precision on the GPU: full float32 like the original's cuBLAS SGEMM, or
# TF32 (faster on A100/H100, about 3 fewer decimal digits in every product) on request.
PRECISIONS = {"float32": "float32", "tf32": "tensorfloat32"}
# XLA options of every program compiled for a platform (jax.jit's compiler_options). On the
# CPU, copy insertion with region analysis proves that the training loop's dense weights and
# optimizer states can be updated in their own buffers; without it XLA copied all of them at
# the start of every step. A RetailRocket step (224 units) is 10 % faster with it, an RSC15
# step (100 units) 4 % slower (bench/ab_xla.py; docs/performance.md, "Where the time goes").
COMPILER_OPTIONS = {"cpu": {"xla_cpu_copy_insertion_use_region_analysis": True}}
_configured = {"pytensor": False, "jax": False}


def cache_dir():
    """The root of the compile caches: $GRU4REC_CACHE, default ~/.cache/gru4rec."""
    return Path(os.environ.get("GRU4REC_CACHE", Path.home() / ".cache" / "gru4rec"))


def configure():
    """Sets PyTensor up for this package's graphs, once: floatX float32 (Python float
    constants in the graphs would otherwise turn float32 expressions into float64 ones)
    and the compile caches under cache_dir()/pytensor. `mode_for` calls it; call it
    yourself before building graphs of your own from the package's pieces."""
    if _configured["pytensor"]:
        return
    import pytensor
    pytensor.config.floatX = "float32"
    _place_pytensor_cache(pytensor.config, cache_dir() / "pytensor")
    _configured["pytensor"] = True


def _place_pytensor_cache(config, path):
    """Points PyTensor's base_compiledir (the root of its compiledir and its Numba cache) at
    `path`, as base_compiledir in PYTENSOR_FLAGS would have done when PyTensor was imported.

    PyTensor reads that option at import and refuses changes afterwards, so the value it
    read is replaced, and only while nothing has used it: not when the user chose
    base_compiledir or compiledir (PYTENSOR_FLAGS, .pytensorrc), nor once a compiledir or
    the Numba cache (PyTensor's Numba dispatch) has been set up from the old value."""
    base, compiledir = type(config).base_compiledir, type(config).compiledir
    if not base.is_default or "val" in vars(compiledir) or "pytensor.link.numba.cache" in sys.modules:
        return
    del base.val
    config.base_compiledir = path


def _configure_jax():
    """JAX's persistent compilation cache under cache_dir()/jax, once. Every program is
    cached, however fast it compiles: an evaluation compiles about ten small ones (0.45 s
    together on the yoochoose-100k test set, whose ranking itself takes 0.12 s)."""
    if _configured["jax"]:
        return
    import jax
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _configured["jax"] = True


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


def jax_device(device):
    """The jax.Device a device name ('cpu', 'gpu', 'cuda:1', ...) means; ValueError when
    JAX has no such device."""
    kind, index = parse_device(device)
    _configure_jax()
    import jax
    try:
        return jax.devices(kind)[index]
    except (RuntimeError, IndexError) as e:
        raise ValueError(f"device {device!r} is not available to JAX ({e})") from None


def on_device(value, mode):
    """`value` as an array on the device of `mode` where `mode` compiles with JAX (mode_for's
    JAX modes name their device; others mean JAX's default one), else `value` as it is.

    Why: a compiled JAX function copies every host array it is given to the device at every
    call; an array put there once is handed over as it is."""
    from pytensor.link.jax.linker import JAXLinker
    if not isinstance(mode.linker, JAXLinker):
        return value
    import jax
    return jax.device_put(value, getattr(mode.linker, "device", None))


def rows(value, start, n):
    """value[start:start + n] along the first axis, for a host array (a view) or a JAX array
    (on its device, by a dynamic slice compiled once per shape and n).

    Why: slicing a JAX array with Python numbers runs JAX's indexing code on the host at every
    call (0.15-0.35 ms a slice on the CPU, against 0.03 ms for the compiled slice): with the
    five such slices of each training call, the launches of a yoochoose-100k epoch took
    0.085-0.145 s of host time, 0.031-0.077 s without (docs/performance.md)."""
    import numpy as np
    if isinstance(value, np.ndarray):
        return value[start:start + n]
    return _dynamic_rows(n)(value, start)


@functools.cache
def _dynamic_rows(n):
    import jax
    return jax.jit(lambda value, start: jax.lax.dynamic_slice_in_dim(value, start, n))


def keep_on_device(variables, mode):
    """Puts the values of shared variables that hold host arrays on the device of `mode`
    (`on_device`), in place.

    Why: a shared variable that no function updates keeps its host array, which JAX copies at
    every call: the weights of a loaded model during evaluation (38 MB per call for the
    RetailRocket model of Diginetica). PyTensor's set_value would turn a device array back
    into a host array, so the value goes into the variable's container, where a function's
    update puts it too."""
    import numpy as np
    for v in variables:
        value = v.get_value(borrow=True, return_internal_type=True)
        if isinstance(value, np.ndarray):
            v.container.storage[0] = on_device(value, mode)


def mode_for(backend, device="cpu", precision="float32"):
    """The PyTensor compilation mode for a backend name ('jax', 'numba', 'c') on a device.

    Only the JAX backend can run on a GPU; its functions keep their inputs and outputs
    (weights, optimizer state, sample store, schedule) on that device and trace every
    matrix product with the given precision ('float32' or 'tf32'; the CPU computes in
    float32 either way). Calls configure() before it hands out a mode.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    kind, _ = parse_device(device)
    if backend == "jax":
        dev = jax_device(device)
    elif kind != "cpu":
        raise ValueError(f"the {backend} backend runs on the CPU only; use backend='jax' for {device!r}")
    configure()
    from . import ops
    ops.register_backend(backend)  # reads floatX and the cache location: after configure()
    from pytensor.compile.mode import Mode, get_mode
    if backend == "jax":
        return Mode(linker=_donating_jax_linker(PRECISIONS[precision], dev),
                    optimizer=get_mode("JAX").provided_optimizer)
    if backend == "numba":
        return get_mode("NUMBA")
    # FAST_RUN's default linker is Numba in PyTensor 3; ask for the C virtual machine
    return Mode(linker="cvm", optimizer="fast_run")


@contextmanager
def _compile_warnings_silenced():
    """Silences, for one compile or trace, what PyTensor and JAX say about every one of
    these graphs: the JAX linker copies RandomType shared variables (the dropout
    generator), and JAX without x64 computes PyTensor's internal float64 casts in float32,
    as intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The RandomType SharedVariables")
        warnings.filterwarnings("ignore", message="Explicitly requested dtype float64")
        yield


def _donating_jax_linker(precision, device):
    """PyTensor's JAX linker, but compiling for `device` (a jax.Device: inputs are moved
    there, outputs stay there), tracing every matrix product with `precision` (a JAX
    precision name), and donating the buffers of the shared variables a function updates:
    the new weights are written where the old ones were, instead of into a copy of every
    item matrix per call."""
    import jax
    from jax.sharding import SingleDeviceSharding
    from pytensor.link.jax.linker import JAXLinker

    placement = SingleDeviceSharding(device)

    class DonatingJAXLinker(JAXLinker):
        def fgraph_convert(self, *args, **kwargs):
            with _compile_warnings_silenced():
                return super().fgraph_convert(*args, **kwargs)

        def jit_compile(self, fn):
            def traced(*args):
                with _compile_warnings_silenced(), jax.default_matmul_precision(precision):
                    return fn(*args)

            donate = sorted(set((self.fgraph.update_mapping or {}).values()))
            static = self.scalar_shape_inputs
            jitted = jax.jit(traced, donate_argnums=donate, static_argnums=static,
                             in_shardings=placement, out_shardings=placement,
                             compiler_options=COMPILER_OPTIONS.get(device.platform))
            if not static:
                return jitted
            return lambda *args: jitted(*(int(a) if i in static else a for i, a in enumerate(args)))

    linker = DonatingJAXLinker()
    linker.device = device  # where the callers put their inputs (gru4rec.training.Trainer)
    return linker
