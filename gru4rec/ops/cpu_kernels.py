"""The CPU kernels, each an XLA FFI target in a library of its own: sparse_update.cc
(SparseAdagrad's update), dense_update.cc (DenseAdagrad's), bpr_max.cc (ScoreLoss's BPR-max loss
and its gradient w.r.t. the scores) and band_counts.cc (the counting pass of the one-pass softmax
ranking), with in_parts.h, how they share out work among XLA's threads, and xla_rsqrt.h, XLA's
reciprocal square root. Each is built with the machine's C++ compiler the first time it is
needed, cached beside the compiled graphs, and registered with JAX.

Why kernels: XLA's CPU backend runs the sparse update as gathers of the accumulator's (and the
velocity's) rows, a pass that computes the steps and two or three scatters (parameter,
accumulator, velocity), each a loop over all the occurrences; the kernel reads and writes each
row once, rounding as XLA does (the same weights, bit for bit; checked when a model is compiled).
The dense weights' update took four passes over each weight; its kernel makes one (the same
bits, checked likewise). And XLA runs every reduction over a matrix of scores as a pass of its
own: the BPR-max loss and its gradient took some 16 passes (a kernel: five per row, in the
cache), the band counts one more pass over each tile (docs/performance.md has the timings).

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
from pathlib import Path

from ..backend import cache_dir

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).parent  # the sources and the headers they share
SOURCES = {"gru4rec_sparse_update": "sparse_update.cc", "gru4rec_dense_update": "dense_update.cc",
           "gru4rec_band_counts": "band_counts.cc", "gru4rec_bpr_max": "bpr_max.cc"}  # target: file
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


def _library_path(name, include_dir):
    """Where target `name`'s shared library is cached: cache_dir()/kernels, named by a hash of its
    source, the headers beside it, the compiler, the jaxlib version (the FFI headers it includes)
    and the flags, so that any change of them builds it anew."""
    source = KERNEL_DIR / SOURCES[name]
    tag = " ".join([compiler(), include_dir, importlib.metadata.version("jaxlib"), *FLAGS])
    text = b"".join(f.read_bytes() for f in [source, *sorted(KERNEL_DIR.glob("*.h"))])
    key = hashlib.sha256(text + tag.encode()).hexdigest()[:16]
    stem = SOURCES[name].removesuffix(".cc")
    return cache_dir() / "kernels" / f"{stem}-{key}{sysconfig.get_config_var('SHLIB_SUFFIX') or '.so'}"


def _build(name, include_dir):
    """The path of target `name`'s shared library, compiled once (`_library_path`); written under a
    temporary name and then renamed, so that concurrent or interrupted builds leave no partial
    library."""
    cxx = compiler()
    if cxx is None:
        raise OSError("no C++ compiler found (set CXX)")
    path = _library_path(name, include_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            proc = subprocess.run([cxx, *FLAGS, "-I", include_dir, str(KERNEL_DIR / SOURCES[name]), "-o", str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or [""])[-1]
                raise subprocess.SubprocessError(f"{cxx} exited with {proc.returncode}: {last}")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path
