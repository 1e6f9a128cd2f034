"""JAX implementations of `SparseAdagrad`, `DenseAdagrad`, `BandCounts` and `ScoreLoss` (CPU and GPU; ScoreLoss
runs its inner graph through PyTensor's OpFromGraph dispatch, except for BPR-max on the CPU). Imported by
`register_backend("jax")`: importing PyTensor's JAX dispatch sets JAX's x64 mode from floatX,
so it must come after `gru4rec.backend.configure()`."""
import inspect
import logging

import jax
import jax.numpy as jnp
import numpy as np
from pytensor.compile.builders import OpFromGraph
from pytensor.link.jax.dispatch import jax_funcify

from ..optimizers import EPS
from . import cpu_kernels
from .band_counts import BandCounts, masks, slots
from .score_loss import ScoreLoss
from .dense_adagrad import DenseAdagrad
from .sparse_adagrad import SparseAdagrad

log = logging.getLogger(__name__)


def _index_kwargs():
    """The indices are valid rows (inactive slots point at the padding row): no clamping, no
    wrapping of negative indices (about a quarter of the update's time on the CPU)."""
    kw = dict(mode="promise_in_bounds")
    if "wrap_negative_indices" in inspect.signature(type(jnp.zeros(1).at[0]).get).parameters:
        kw["wrap_negative_indices"] = False
    return kw


def _after(read, add):
    """`add`, made to depend on `read` (rows gathered from the matrix the add is scattered
    into; `add` exactly, unless a read value is NaN, which the row keeps anyway). Without the
    dependency XLA may schedule the gather after the scatter and so copies the whole matrix
    before every update (Diginetica's Wy accumulator: 13 ms instead of 0.4 ms per step on
    the CPU, which halved the training speed)."""
    return jnp.where(jnp.isnan(read), read, add)


@jax_funcify.register(SparseAdagrad)
def jax_funcify_SparseAdagrad(op, **kwargs):
    """XLA's gathers, arithmetic and scatters; for a float32 matrix on the CPU, the kernel of
    sparse_update.cc, which reads and writes each row once (the RetailRocket step:
    docs/performance.md), where it gives XLA's bits (`_same_bits`)."""
    lr, mom, lmbd = op.lr, op.momentum, op.lmbd
    kw = _index_kwargs()

    def xla(P, A, *rest):
        V = rest[0] if mom > 0 else None
        idx, g = rest[-2], rest[-1]
        old = A.at[idx].get(**kw)
        acc = old + g * g
        step = g / jnp.sqrt(acc + EPS)
        if lmbd > 0:
            step = step + lmbd * P.at[idx].get(**kw)
        step = (lr * step).astype(P.dtype)
        d = (mom * V.at[idx].get(**kw) - step).astype(P.dtype) if mom > 0 else -step
        A = A.at[idx].add(_after(old, g * g), **kw)
        new = (P.at[idx].add(d, **kw), A)
        return new + ((V.at[idx].set(d, **kw),) if V is not None else ())

    target = cpu_kernels.target("gru4rec_sparse_update")
    if target is None:
        return xla

    def kernel(P, A, *rest):
        idx, g = rest[-2], rest[-1]
        return _in_place(target, P, A, rest, mom, idx.astype(jnp.int32), g, lr=lr, mom=mom, lmbd=lmbd, eps=EPS)

    if not _same_bits(("sparse", mom > 0, lmbd > 0), kernel, xla, _sparse_problem(mom > 0)):
        return xla

    def update(P, A, *rest):
        if P.dtype != jnp.float32 or P.ndim != 2:
            return xla(P, A, *rest)
        return jax.lax.platform_dependent(P, A, *rest, cpu=kernel, default=xla)

    return update


def _in_place(target, P, A, rest, momentum, *inputs, **rates):
    """(P', A'[, V']) from the CPU kernel `target`, which updates P, A and V in place (its outputs
    alias them): V is rest[0] with momentum, an empty array without; `inputs` follow them and
    the rates go as float32 attributes."""
    V = rest[0] if momentum > 0 else jnp.zeros(0, P.dtype)
    call = jax.ffi.ffi_call(target, tuple(jax.ShapeDtypeStruct(s.shape, s.dtype) for s in (P, A, V)),
                            input_output_aliases={0: 0, 1: 1, 2: 2})
    new = call(P, A, V, *inputs, **{k: np.float32(v) for k, v in rates.items()})
    return tuple(new[:3 if momentum > 0 else 2])


def _update_problem(state_shape, g_shape, velocity):
    """P, A[, V] of `state_shape` and g of `g_shape` (float32) for `_same_bits`, with gradients
    from 1e-6 to 10 and a g^2 that overflows; and the generator, for the rest of a problem."""
    rng = np.random.default_rng(0)
    g = rng.normal(size=g_shape) * 10.0 ** rng.integers(-6, 2, g_shape)
    g[0, 0] = 1e20
    arrays = [rng.normal(size=state_shape), rng.random(state_shape)] + [rng.normal(0, 0.1, state_shape)] * velocity
    return [a.astype(np.float32) for a in arrays], g.astype(np.float32), rng


def _sparse_problem(velocity):
    """SparseAdagrad's inputs for `_same_bits`: repeated rows, a row length that is not a
    multiple of the vector width."""
    N, D, n = 8, 11, 24
    arrays, g, rng = _update_problem((N, D), (n, D), velocity)
    return arrays + [rng.integers(0, N, n).astype(np.int32), g]


@jax_funcify.register(DenseAdagrad)
def jax_funcify_DenseAdagrad(op, node=None, **kwargs):
    """The inner graph (`Optimizer.dense`), compiled by PyTensor's OpFromGraph dispatch; for
    float32 on the CPU, the kernel of dense_update.cc, one pass over the weight instead of
    XLA's four, where it gives the inner graph's bits (`_same_bits`)."""
    inner = _dense_inner(op, node, **kwargs)
    target = cpu_kernels.target("gru4rec_dense_update")
    if target is None:
        return inner
    lr, mom, lmbd = op.lr, op.momentum, op.lmbd

    def kernel(P, A, *rest):
        g, valid = rest[-2], rest[-1]
        return _in_place(target, P, A, rest, mom, g, valid.astype(jnp.float32), lr=lr, mom=mom, lmbd=lmbd,
                         decay=1 - lr * lmbd, eps=EPS)

    if not _same_bits(("dense", mom > 0, lmbd > 0), kernel, inner, _dense_problem(mom > 0)):
        return inner

    def update(P, *rest):
        if P.dtype != jnp.float32:
            return inner(P, *rest)
        return jax.lax.platform_dependent(P, *rest, cpu=kernel, default=inner)

    return update


_inner_of = {}  # (rates, dtype, rank) -> the JAX function of DenseAdagrad's inner graph


def _dense_inner(op, node, **kwargs):
    """The JAX function of `op`'s inner graph, compiled once per rates, dtype and rank (from an
    Op whose inputs have no static shape), not once per weight: each compilation of the little
    graph runs PyTensor's rewrites (0.09 s)."""
    P = node.inputs[0].type
    key = (op.lr, op.momentum, op.lmbd, P.dtype, P.ndim)
    if key not in _inner_of:
        types = [v.type.clone(shape=(None,) * v.type.ndim) for v in node.inputs]
        generic = DenseAdagrad(types, lr=op.lr, momentum=op.momentum, lmbd=op.lmbd)
        _inner_of[key] = jax_funcify.dispatch(OpFromGraph)(generic, **kwargs)
    return _inner_of[key]


def _dense_problem(velocity):
    """DenseAdagrad's inputs for `_same_bits`: a size that is not a multiple of the vector
    width, valid 1."""
    arrays, g, _ = _update_problem((9, 13), (9, 13), velocity)
    return arrays + [g, np.float32(1)]


_checked = {}  # (kernel, momentum or not, L2 or not) -> whether the kernel gives XLA's bits here


def _same_bits(kind, kernel, xla, problem):
    """Whether `kernel` computes the inputs `problem` bit for bit as `xla` does on this CPU
    with this jaxlib; once per process and `kind` (the kernel, with a velocity or not, with L2
    or not: the operations, not the rates, decide the rounding). XLA's 1/sqrt is the
    processor's estimate refined by Newton steps, whose number has changed between jaxlib
    versions: a kernel that rounds otherwise, or fails, is not used (one log message), so the
    weights never depend on it. Costs one small compilation (0.15-0.3 s)."""
    if kind not in _checked:
        try:
            cpu = jax.devices("cpu")[0]
        except RuntimeError:  # a process without a CPU backend never runs the kernel
            return False
        try:
            ours, theirs = jax.jit(lambda *a: (kernel(*a), xla(*a)))(*jax.device_put(problem, cpu))
            _checked[kind] = all(np.array_equal(a, b) for a, b in zip(ours, theirs))
            why = "does not round as this jaxlib's XLA does"
        except Exception as e:  # noqa: BLE001 (a kernel that cannot run is one that is not used)
            _checked[kind], why = False, f"failed ({e})"
        if not _checked[kind]:
            log.info("the CPU kernel %s_update.cc %s: XLA's own %s update runs", kind[0], why, kind[0])
    return _checked[kind]


@jax_funcify.register(BandCounts)
def jax_funcify_BandCounts(op, **kwargs):
    """On the CPU the kernel of band_counts.cc (one pass over the tile); elsewhere, or without
    it, XLA's operations: the same results."""
    target = cpu_kernels.target("gru4rec_band_counts")

    def xla(R, lo, hi, at, above, band, n):
        up, inside = masks(R, lo, hi, at, jnp)
        K, B = band.shape
        band = band.at[slots(inside, n, K, jnp), jnp.arange(B, dtype=jnp.int32)[None, :]].set(R, mode="drop")
        return (above + up.sum(axis=0, dtype=jnp.int32), band, n + inside.sum(axis=0, dtype=jnp.int32))

    def kernel(R, lo, hi, at, above, band, n):
        call = jax.ffi.ffi_call(target, tuple(jax.ShapeDtypeStruct(s.shape, s.dtype) for s in (above, band, n)),
                                input_output_aliases={4: 0, 5: 1, 6: 2})
        return tuple(call(R, lo, hi, at, above, band, n))

    def band_counts(*args):
        if target is None:
            return xla(*args)
        return jax.lax.platform_dependent(*args, cpu=kernel, default=xla)

    return band_counts


def bpr_max_scores(R, rowmask, colmask, alpha, bpreg):
    """(summed loss, dloss/dR) of BPR-max on raw scores R (B x K) by the CPU kernel of bpr_max.cc;
    alpha: the ELU parameter, None for a linear final activation."""
    shapes = (jax.ShapeDtypeStruct((), jnp.float32), jax.ShapeDtypeStruct(R.shape, jnp.float32))
    call = jax.ffi.ffi_call("gru4rec_bpr_max", shapes)
    return call(R, rowmask, colmask, elu=alpha is not None, alpha=np.float32(alpha or 0), bpreg=np.float32(bpreg))


@jax_funcify.register(ScoreLoss)
def jax_funcify_ScoreLoss(op, node=None, **kwargs):
    """The inner graph (gru4rec.losses, differentiated), compiled by PyTensor's OpFromGraph
    dispatch; for BPR-max on the CPU, the products around the kernel of bpr_max.cc, which
    computes the loss and its gradient w.r.t. the scores (the same formulas, rounded
    differently: docs/performance.md)."""
    inner = jax_funcify.dispatch(OpFromGraph)(op, node=node, **kwargs)
    if op.loss != "bpr-max" or cpu_kernels.target("gru4rec_bpr_max") is None:
        return inner
    alpha = op.alpha if op.act == "elu" else None

    def kernel(h, O, b, lq, rowmask, colmask):
        R = jnp.dot(h, O.T) + b[None, :]
        if op.logq:
            R = R - op.logq * lq[None, :]
        loss, dR = bpr_max_scores(R, rowmask, colmask, alpha, op.bpreg)
        return loss, jnp.dot(dR, O), jnp.dot(dR.T, h), dR.sum(axis=0)

    def score_loss(h, O, b, lq, rowmask, colmask):
        if h.dtype != jnp.float32:
            return inner(h, O, b, lq, rowmask, colmask)
        return jax.lax.platform_dependent(h, O, b, lq, rowmask, colmask, cpu=kernel, default=inner)

    return score_loss
