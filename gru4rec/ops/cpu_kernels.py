"""The CPU kernels, each an XLA FFI target in a library of its own: scatter_rows.cc
(SparseAdagrad's row scatters) and band_counts.cc (the counting pass of the one-pass softmax
ranking). Each is built with the machine's C++ compiler the first time it is needed, cached
beside the compiled graphs, and registered with JAX.

Why kernels: XLA's CPU backend runs the three scatters of an update with momentum (parameter,
accumulator, velocity) as three operations, each a loop over all the occurrences; the kernel
does all three in one pass, split among XLA's threads by row, with the same additions in the
same order (the same weights, bit for bit). A RetailRocket training step on Diginetica took
0.89x the time; updates without momentum keep XLA's scatters, which were faster there. XLA
also runs every further reduction over a tile of scores as a pass of its own, where the band
counts need one (docs/performance.md).

Where a kernel cannot be built (no C++ compiler, FFI headers of a jaxlib it was not written
for) or the kernels are turned off (environment variable GRU4REC_CPU_KERNEL=0, or
`turned_off`), `target` says so, and XLA's own operations run instead: slower, with
the same results. GPUs always run XLA's.
"""
import ctypes
import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sysconfig
import threading
from contextlib import contextmanager

from ..backend import cache_dir

log = logging.getLogger(__name__)

SOURCES = {"gru4rec_scatter_rows": "scatter_rows.cc", "gru4rec_band_counts": "band_counts.cc"}  # target: file
FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off"]
_library = {}  # target -> its loaded library, or None where unavailable
_off = []  # one entry per `turned_off` block being run
_lock = threading.Lock()


def target(name):
    """`name` (a key of SOURCES) once its kernel is registered as an FFI target, built and loaded on
    the first call; None where it is unavailable or turned off (XLA's own operations run instead)."""
    if _off or os.environ.get("GRU4REC_CPU_KERNEL", "1") == "0":
        return None
    with _lock:
        if name not in _library:
            _library[name] = _load(name)
        return name if _library[name] is not None else None


@contextmanager
def turned_off():
    """Functions compiled within the block use XLA's own operations (comparisons: bench/ab_xla.py,
    bench/eval_scale.py)."""
    _off.append(True)
    try:
        yield
    finally:
        _off.pop()


def _load(name):
    """The built library of target `name`, registered with JAX; None (and one warning) on failure."""
    import jax
    try:
        lib = ctypes.cdll.LoadLibrary(str(_build(name, jax.ffi.include_dir())))
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    except (OSError, subprocess.SubprocessError, AttributeError) as e:
        log.warning("the CPU kernel %s is unavailable, XLA's own operations run instead (same results, "
                    "slower): %s", SOURCES[name], e)
        return None
    return lib


def compiler():
    """The C++ compiler the kernels are built with: $CXX, else the first of c++, g++, clang++ on
    the PATH; None without one."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _build(name, include_dir):
    """The path of target `name`'s shared library, compiled once per source, compiler and jaxlib
    version (the FFI headers it includes) into cache_dir()/kernels; written under a temporary
    name and then renamed, so that concurrent or interrupted builds leave no partial library."""
    cxx = compiler()
    if cxx is None:
        raise OSError("no C++ compiler found (set CXX)")
    source = os.path.join(os.path.dirname(__file__), SOURCES[name])
    with open(source, "rb") as f:
        tag = " ".join([cxx, include_dir, importlib.metadata.version("jaxlib"), *FLAGS])
        key = hashlib.sha256(f.read() + tag.encode()).hexdigest()[:16]
    stem = SOURCES[name].removesuffix(".cc")
    path = cache_dir() / "kernels" / f"{stem}-{key}{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            proc = subprocess.run([cxx, *FLAGS, "-I", include_dir, source, "-o", str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or [""])[-1]
                raise subprocess.SubprocessError(f"{cxx} exited with {proc.returncode}: {last}")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path
