"""The CPU kernel of SparseAdagrad's row scatters (scatter_rows.cc): built with the machine's C++
compiler on first use, cached beside the compiled graphs, and registered as an XLA FFI target.

Why a kernel: XLA's CPU backend runs the three scatters of an update with momentum (parameter,
accumulator, velocity) as three operations, each a loop over all the occurrences; the kernel
does all three in one pass, split among XLA's threads by row, with the same additions in the
same order (the same weights, bit for bit). A RetailRocket training step on Diginetica took
0.89x the time; updates without momentum keep XLA's scatters, which were faster there
(docs/performance.md).

Where the kernel cannot be built (no C++ compiler, FFI headers of a jaxlib it was not written
for) or is turned off (environment variable GRU4REC_CPU_KERNEL=0, read once per process),
`target` says so, and the update runs XLA's scatters: slower, with the same results. GPUs
always run XLA's.
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

SOURCE = os.path.join(os.path.dirname(__file__), "scatter_rows.cc")
TARGET = "gru4rec_scatter_rows"
FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off"]
_library = {}
_lock = threading.Lock()


def target():
    """The name of the registered FFI target, or None where the kernel is unavailable or turned
    off (XLA's scatters run instead)."""
    return TARGET if _loaded() is not None else None


@contextmanager
def turned_off():
    """Functions compiled within the block use XLA's scatters (comparisons: bench/ab_xla.py)."""
    saved = _loaded()
    _library["lib"] = None
    try:
        yield
    finally:
        _library["lib"] = saved


def _loaded():
    """The library, loaded on the first call (None where unavailable)."""
    with _lock:
        if "lib" not in _library:
            _library["lib"] = _load()
        return _library["lib"]


def _load():
    """The built library, its target registered with JAX; None (and one warning) on failure."""
    if os.environ.get("GRU4REC_CPU_KERNEL", "1") == "0":
        return None
    import jax
    try:
        lib = ctypes.cdll.LoadLibrary(str(_build(jax.ffi.include_dir())))
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(getattr(lib, TARGET)), platform="cpu")
    except (OSError, subprocess.SubprocessError, AttributeError) as e:
        log.warning("the CPU kernel of the sparse update is unavailable, XLA's scatters run instead "
                    "(same results, slower): %s", e)
        return None
    return lib


def compiler():
    """The C++ compiler the kernel is built with: $CXX, else the first of c++, g++, clang++ on
    the PATH; None without one."""
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _build(include_dir):
    """The shared library's path, compiled once per source, compiler and jaxlib version (the
    FFI headers it includes) into cache_dir()/kernels; written under a temporary name and then
    renamed, so that concurrent or interrupted builds leave no partial library."""
    cxx = compiler()
    if cxx is None:
        raise OSError("no C++ compiler found (set CXX)")
    with open(SOURCE, "rb") as f:
        tag = " ".join([cxx, include_dir, importlib.metadata.version("jaxlib"), *FLAGS])
        key = hashlib.sha256(f.read() + tag.encode()).hexdigest()[:16]
    path = cache_dir() / "kernels" / f"scatter_rows-{key}{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            proc = subprocess.run([cxx, *FLAGS, "-I", include_dir, SOURCE, "-o", str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or [""])[-1]
                raise subprocess.SubprocessError(f"{cxx} exited with {proc.returncode}: {last}")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path
