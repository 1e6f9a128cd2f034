"""The CPU kernels, each an XLA FFI target in a library of its own: scatter_rows.cc
(SparseAdagrad's row scatters), bpr_max.cc (ScoreLoss's BPR-max loss and its gradient w.r.t.
the scores) and band_counts.cc (the counting pass of the one-pass softmax ranking). Each is
built with the machine's C++ compiler the first time it is needed, cached beside the compiled
graphs, and registered with JAX.

Why kernels: XLA's CPU backend runs the three scatters of an update with momentum (parameter,
accumulator, velocity) as three operations, each a loop over all the occurrences; the kernel
does all three in one pass, split among XLA's threads by row, with the same additions in the
same order (the same weights, bit for bit). A RetailRocket training step on Diginetica took
0.89x the time; updates without momentum keep XLA's scatters, which were faster there. XLA
also runs every reduction over a matrix of scores as a pass of its own: the BPR-max loss and
its gradient took some 16 passes (a kernel: four per row, in the cache), the band counts one
more pass over each tile (docs/performance.md).

Where a kernel cannot be built (no C++ compiler, FFI headers of a jaxlib it was not written
for) or the kernels are turned off (environment variable GRU4REC_CPU_KERNEL=0, or
`turned_off`), `target` says so, and XLA's own operations run instead: slower, with the same
results, except for the BPR-max kernel, whose sums and exponentials round differently from
XLA's (the same formulas; the weights differ in the last bits and drift apart over a fit).
GPUs always run XLA's.
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

SOURCES = {"gru4rec_scatter_rows": "scatter_rows.cc", "gru4rec_band_counts": "band_counts.cc",
           "gru4rec_bpr_max": "bpr_max.cc"}  # target: file
# no contraction into fused multiply-adds: every clone of a kernel rounds alike (and as XLA where
# it must give the same bits); no trapping math: lets the compiler vectorise selects
FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-trapping-math"]
_library = {}  # target -> its loaded library, or None where unavailable
_off = []  # the targets of each `turned_off` block being run (empty: all)
_lock = threading.Lock()


def target(name):
    """`name` (a key of SOURCES) once its kernel is registered as an FFI target, built and loaded on
    the first call; None where it is unavailable or turned off (XLA's own operations run instead)."""
    if any(not names or name in names for names in _off) or os.environ.get("GRU4REC_CPU_KERNEL", "1") == "0":
        return None
    with _lock:
        if name not in _library:
            _library[name] = _load(name)
        return name if _library[name] is not None else None


@contextmanager
def turned_off(*names):
    """Functions compiled within the block use XLA's own operations instead of the kernels
    `names` (targets; none: every kernel). Comparisons: bench/ab_xla.py, bench/eval_scale.py."""
    _off.append(set(names))
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
