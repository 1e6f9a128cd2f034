"""The CPU kernel of the BPR-max loss (gru4rec/ops/bpr_max.cc): the loss values of spec 21 and
the float64 reference's loss and numerical gradient on masked problems, extreme scores
included; in the compiled training call on the CPU only, for BPR-max only."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gru4rec import GRU4Rec, backend
from gru4rec.ops import cpu_kernels

from . import reference as ref
from .xlahelpers import record_training_programs

pytestmark = pytest.mark.skipif(cpu_kernels.compiler() is None, reason="needs a C++ compiler to build the kernel")


def kernel(R, rowmask, colmask, alpha, bpreg):
    """(loss, dR) of the kernel, as float64 arrays."""
    backend.mode_for("jax")  # float32 before PyTensor's JAX dispatch is imported
    from gru4rec.ops.jax_dispatch import bpr_max_scores
    assert cpu_kernels.target("gru4rec_bpr_max") is not None
    fn = jax.jit(lambda *a: bpr_max_scores(*a, alpha=alpha, bpreg=bpreg))
    loss, dR = fn(*(jnp.asarray(a, jnp.float32) for a in (R, rowmask, colmask)))
    return float(loss), np.asarray(dR, np.float64)


def reference(R, rowmask, colmask, act, bpreg):
    """(loss, dloss/dR) in float64: spec 6 on the active rows and columns (tests/reference.py),
    differentiated numerically."""
    rows, cols = np.flatnonzero(rowmask), np.flatnonzero(colmask)
    assert list(cols[:len(rows)]) == list(rows)  # the active rows' positives come first
    R = np.asarray(R, np.float64)

    def loss(sub):
        return ref.loss_sum("bpr-max", ref.activation(act)(sub), len(rows), bpreg=bpreg)

    sub = R[np.ix_(rows, cols)].copy()
    grad = np.zeros_like(R)
    grad[np.ix_(rows, cols)] = ref.numerical_grad(lambda: loss(sub), sub)
    return loss(sub), grad


@pytest.mark.parametrize("act,alpha,bpreg,expected", [("elu-1", 1.0, 1.0, 0.726512247499032),
                                                      ("elu-0.5", 0.5, 1.95, 0.7381184491705041),
                                                      ("linear", None, 0.0, 0.46399675749429314)])
def test_spec_21_values(act, alpha, bpreg, expected):
    R = np.array([[1.0, -0.5, 0.3], [0.2, 2.0, -1.0]])
    ones = np.ones(3)
    loss, dR = kernel(R, ones[:2], ones, alpha, bpreg)
    assert loss == pytest.approx(expected, rel=1e-6)
    ref_loss, ref_grad = reference(R, ones[:2], ones, act, bpreg)
    assert ref_loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(dR, ref_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 40.0], ids=["moderate", "extreme"])
@pytest.mark.parametrize("act,alpha,bpreg", [("elu-0.5", 0.5, 1.95), ("linear", None, 0.5)])
def test_masked_problem_matches_the_reference(act, alpha, bpreg, scale):
    """Inactive rows (and their in-batch columns) get neither loss nor gradient; scores of
    +-100 and more neither overflow nor lose the softmax's or the sigmoid's limits."""
    rng = np.random.default_rng(5)
    B, S = 7, 11
    rowmask = np.array([1, 1, 0, 1, 0, 1, 1], np.float64)
    colmask = np.r_[rowmask, np.ones(S)]
    R = rng.normal(0, scale, (B, B + S))
    loss, dR = kernel(R, rowmask, colmask, alpha, bpreg)
    ref_loss, ref_grad = reference(R, rowmask, colmask, act, bpreg)
    assert np.isfinite(loss) and loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(dR, ref_grad, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(ref_grad).max()))
    assert not dR[rowmask == 0].any() and not dR[:, colmask == 0].any()


def test_rows_without_negatives_and_all_inactive_rows():
    """A row whose only active column is its positive has the loss -log(1e-24) and no
    gradient (no 0/0); a step with no active row gives 0."""
    R = np.array([[0.5, 2.0], [1.0, -3.0]])
    loss, dR = kernel(R, np.array([1.0, 0.0]), np.array([1.0, 0.0]), 0.5, 1.0)
    assert loss == pytest.approx(-np.log(1e-24), rel=1e-6) and not dR.any()
    loss, dR = kernel(R, np.zeros(2), np.zeros(2), 0.5, 1.0)
    assert loss == 0 and not dR.any()


def test_only_bpr_max_training_on_the_cpu_calls_the_kernel(synthetic_train, monkeypatch):
    """A BPR-max fit's training call calls the kernel, a cross-entropy fit's never, nor a BPR-max
    fit's with the kernel turned off."""
    train = synthetic_train.head(2000)
    kw = dict(layers=[8], batch_size=8, n_sample=16, n_epochs=1, seed=3)
    programs = record_training_programs(monkeypatch)
    GRU4Rec(loss="bpr-max", final_act="elu-0.5", steps_per_call=4, **kw).fit(train)
    GRU4Rec(loss="cross-entropy", final_act="softmax", steps_per_call=4, **kw).fit(train)
    with cpu_kernels.turned_off("gru4rec_bpr_max"):
        GRU4Rec(loss="bpr-max", final_act="elu-0.5", steps_per_call=4, **kw).fit(train)
    calls = [text.count('custom_call_target="gru4rec_bpr_max"') for text in programs]
    assert calls[0] >= 1 and calls[1:] == [0, 0]


def score_loss_fn(alpha):
    """The JAX function of ScoreLoss (BPR-max, ELU with parameter alpha), and its argument shapes."""
    backend.mode_for("jax")
    import pytensor.tensor as pt
    from pytensor.link.jax.dispatch import jax_funcify

    from gru4rec import ops
    h, O = pt.matrix("h", dtype="float32"), pt.matrix("O", dtype="float32")
    b, lq, r, c = (pt.vector(n, dtype="float32") for n in "blrc")
    node = ops.ScoreLoss("bpr-max", "elu", alpha, 1.95)(h, O, b, lq, r, c)[0].owner
    S = jax.ShapeDtypeStruct
    args = [S((4, 3), jnp.float32), S((10, 3), jnp.float32)] + [S((10,), jnp.float32)] * 2 + \
        [S((4,), jnp.float32), S((10,), jnp.float32)]
    return jax.jit(jax_funcify(node.op, node=node)), args


def test_gpu_program_keeps_xla_loss():
    fn, args = score_loss_fn(0.5)
    cpu = fn.lower(*args).as_text()
    cuda = jax.export.export(fn, platforms=["cuda"])(*args).mlir_module()
    assert "gru4rec_bpr_max" in cpu and "gru4rec_bpr_max" not in cuda

