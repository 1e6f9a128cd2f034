"""DenseAdagrad (gru4rec/ops/dense_adagrad.py) and the CPU kernel of its update
(gru4rec/ops/dense_update.cc): the Op is Optimizer.dense guarded by `valid` on every backend;
the kernel gives the bits of XLA's compilation of that graph, runs in the training call on the
CPU only, and only where the check at compile time finds XLA's bits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from gru4rec import GRU4Rec, backend, ops
from gru4rec.ops import cpu_kernels
from gru4rec.optimizers import EPS

from .test_ops import SLOW_BACKENDS
from .xlahelpers import record_training_programs

needs_compiler = pytest.mark.skipif(cpu_kernels.compiler() is None, reason="needs a C++ compiler to build the kernel")
TARGET = "gru4rec_dense_update"
KINDS = [(0.0, 0.0), (0.4, 0.0), (0.0, 0.01), (0.3, 0.01)]  # (momentum, lmbd)
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")


def dense_adagrad_fn(momentum, lmbd, ndim):
    """The JAX implementation of DenseAdagrad(lr=0.1), jitted, as the training call traces it."""
    backend.mode_for("jax")  # float32 before PyTensor's JAX dispatch is imported
    from pytensor.link.jax.dispatch import jax_funcify
    n = 4 if momentum > 0 else 3
    ins = [pt.tensor(dtype="float32", shape=(None,) * ndim) for _ in range(n)] + [pt.scalar(dtype="float32")]
    node = ops.DenseAdagrad(lr=0.1, momentum=momentum, lmbd=lmbd)(*ins)[0].owner
    return jax.jit(jax_funcify(node.op, node=node))


def problem(rng, shape, momentum, valid=1.0):
    """P, A, [V,] g, valid: gradients from 1e-6 to 10 (13 columns: a vector of 8 floats and a tail)."""
    g = rng.normal(0, 1, shape) * 10.0 ** rng.integers(-6, 2, shape)
    arrays = [rng.normal(0, 1, shape), rng.random(shape)] + [rng.normal(0, 0.1, shape)] * (momentum > 0)
    return [a.astype(np.float32) for a in arrays + [g]] + [np.float32(valid)]


def reference(args, momentum, lmbd, lr=0.1):
    """The update of spec 7.1-7.3 in float64."""
    P, A, *rest = [np.asarray(a, np.float64) for a in args[:-1]]
    g = rest[-1]
    A = A + g * g
    step = g / np.sqrt(A + EPS)
    if momentum > 0:
        V = momentum * rest[0] - lr * (step + lmbd * P)
        return [P + V, A, V]
    return [P * (1 - lr * lmbd) - lr * step, A]


@needs_compiler
@pytest.mark.parametrize("momentum,lmbd", KINDS)
@pytest.mark.parametrize("shape", [(9, 13), (224, 67), (100,)])
def test_kernel_gives_the_bits_of_xla(momentum, lmbd, shape):
    args = problem(np.random.default_rng(0), shape, momentum)
    kernel = dense_adagrad_fn(momentum, lmbd, len(shape))
    assert TARGET in kernel.lower(*args).as_text()
    got = [np.asarray(a) for a in kernel(*args)]
    with cpu_kernels.turned_off():
        xla = dense_adagrad_fn(momentum, lmbd, len(shape))
    assert TARGET not in xla.lower(*args).as_text()
    for a, b in zip(got, xla(*args)):
        np.testing.assert_array_equal(a, np.asarray(b))
    for a, b in zip(got, reference(args, momentum, lmbd)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@needs_compiler
@pytest.mark.parametrize("momentum,lmbd", KINDS)
def test_all_padding_step_changes_nothing(momentum, lmbd):
    args = problem(np.random.default_rng(1), (9, 13), momentum, valid=0.0)
    kernel = dense_adagrad_fn(momentum, lmbd, 2)
    assert TARGET in kernel.lower(*args).as_text()
    for new, old in zip(kernel(*args), args):
        np.testing.assert_array_equal(np.asarray(new), old)


@pytest.mark.parametrize("backend_name", SLOW_BACKENDS)
@pytest.mark.parametrize("momentum,lmbd", [(0.4, 0.01), (0.0, 0.01)])
def test_op_is_the_textbook_update_on_every_backend(backend_name, momentum, lmbd):
    """The Op's inner graph is Optimizer.dense: the same numbers as the reference on each
    backend (the C VM runs it through `perform`), and nothing where valid is 0."""
    rng = np.random.default_rng(2)
    ins = [pt.matrix(dtype="float32") for _ in range(4 if momentum > 0 else 3)]
    valid = pt.scalar(dtype="float32")
    st = {"acc": ins[1], "vel": ins[2]} if momentum > 0 else {"acc": ins[1]}
    new, ns = ops.dense_adagrad(ins[0], ins[-1], st, valid, 0.1, momentum, lmbd)
    f = pytensor.function(ins + [valid], [new, *ns.values()], mode=backend.mode_for(backend_name))
    args = problem(rng, (6, 5), momentum)
    for a, b in zip(f(*args), reference(args, momentum, lmbd)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    args[-1] = np.float32(0)
    for new, old in zip(f(*args), args):
        np.testing.assert_array_equal(new, old)


@needs_compiler
@pytest.mark.parametrize("momentum,lmbd", [(0.3, 0.0), (0.0, 0.01)])
def test_training_with_the_kernel_trains_the_same_weights(momentum, lmbd, synthetic_train, monkeypatch):
    """A fit on the CPU calls the kernel once per dense weight (Wx0, Wrz0, Wh0, Bh0) and ends
    with the weights of a fit without it, bit for bit."""
    train = synthetic_train.head(4000)
    kw = dict(layers=[16], batch_size=8, n_sample=16, n_epochs=2, momentum=momentum, lmbd=lmbd,
              constrained_embedding=True, loss="bpr-max", final_act="elu-0.5", dropout_p_hidden=0.3, seed=7)
    programs = record_training_programs(monkeypatch)
    with_kernel = GRU4Rec(**kw).fit(train)
    with cpu_kernels.turned_off(TARGET):
        without = GRU4Rec(**kw).fit(train)
    calls = [text.count(f'custom_call_target="{TARGET}"') for text in programs]
    assert calls == [len(with_kernel.net.W) - 2, 0]  # all but Wy and By
    for name, w in with_kernel.net.W.items():
        np.testing.assert_array_equal(w.get_value(), without.net.W[name].get_value(), err_msg=name)


@needs_compiler
def test_kernel_that_rounds_otherwise_is_not_used(monkeypatch):
    from gru4rec.ops import jax_dispatch
    args = problem(np.random.default_rng(3), (9, 13), 0.3)
    monkeypatch.setattr(jax_dispatch, "_checked", {("dense", True, False): False})
    assert TARGET not in dense_adagrad_fn(0.3, 0.0, 2).lower(*args).as_text()


def test_gpu_program_keeps_xla_update():
    """Lowered for CUDA (no GPU needed to lower), the update has no call of the CPU kernel."""
    fn = dense_adagrad_fn(0.3, 0.0, 2)
    S = jax.ShapeDtypeStruct
    args = [S((20, 5), jnp.float32)] * 4 + [S((), jnp.float32)]
    text = jax.export.export(fn, platforms=["cuda"])(*args).mlir_module()
    assert "sqrt" in text and TARGET not in text


def test_inner_graph_compiled_once_per_rank(monkeypatch):
    """Weights of other shapes but the same rates and rank share one compilation of the inner
    graph (each runs PyTensor's rewrites); its shapes come from the inputs, not the inner graph."""
    from gru4rec.ops import jax_dispatch
    monkeypatch.setattr(jax_dispatch, "_inner_of", {})
    backend.mode_for("jax")
    from pytensor.link.jax.dispatch import jax_funcify
    for shape in [(3, 4), (5, 6), (7,)]:
        ins = [pt.tensor(dtype="float32", shape=shape) for _ in range(4)] + [pt.scalar(dtype="float32")]
        out = ops.DenseAdagrad(lr=0.1, momentum=0.3)(*ins)
        assert out[0].type.shape == shape
        jax_funcify(out[0].owner.op, node=out[0].owner)
    assert sorted(k[-1] for k in jax_dispatch._inner_of) == [1, 2]
