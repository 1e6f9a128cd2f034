"""The fused Ops of gru4rec.ops against the unfused graphs they replace.

ScoreLoss: value and gradients (pytensor.grad through the Op versus through losses.loss_sum)
in every backend, with masked rows and columns and the logQ term; its inner graph is the
loss of gru4rec.losses, and the C backend runs it compiled by the C VM. SparseAdagrad: against
Optimizer.sparse and a NumPy statement of spec 7.4 with repeated indices, out of place and
in place. Then one Network.step and a short fit with and without the fused Ops.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.link.vm import VMLinker

from gru4rec import GRU4Rec, ops, training
from gru4rec import params as P
from gru4rec.backend import mode_for
from gru4rec.losses import activation, loss_sum
from gru4rec.model import Network, init_weights
from gru4rec.optimizers import Optimizer

from .stephelpers import one_step

try:
    import numba  # noqa: F401
    BACKENDS = ["jax", "c", "numba"]
except ImportError:
    BACKENDS = ["jax", "c"]
# compiling the fused Ops for C and Numba takes tens of seconds per graph
SLOW_BACKENDS = [b if b == "jax" else pytest.param(b, marks=pytest.mark.slow) for b in BACKENDS]


def mode(backend):
    """The compilation mode of the package for a backend ('c' is the C VM linker, where
    ScoreLoss's `perform` runs its inner graph compiled by the C VM and SparseAdagrad's
    `perform` is NumPy)."""
    return mode_for(backend)

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

# (loss, final_act, bpreg, logq)
LOSSES = [
    ("cross-entropy", "softmax", 0.0, 1.0),
    ("cross-entropy", "softmax", 0.0, 0.0),
    ("bpr-max", "elu-0.5", 1.95, 0.0),
    ("bpr-max", "linear", 0.5, 0.7),
]


def score_problem(rng, B=5, S=7, H=4, rowmask=(1, 1, 0, 1, 0)):
    K = B + S
    r = np.asarray(rowmask, np.float32)
    return dict(h=rng.normal(0, 1, (B, H)).astype(np.float32),
                O=rng.normal(0, 1, (K, H)).astype(np.float32),
                b=rng.normal(0, 0.5, K).astype(np.float32),
                lq=np.log(rng.integers(1, 50, K)).astype(np.float32),
                r=r, c=np.r_[r, np.ones(S, np.float32)])


@pytest.mark.parametrize("backend", SLOW_BACKENDS)
@pytest.mark.parametrize("loss,final_act,bpreg,logq", LOSSES, ids=lambda v: str(v))
def test_score_loss_matches_unfused(backend, loss, final_act, bpreg, logq):
    rng = np.random.default_rng(1)
    v = score_problem(rng)
    B, K = len(v["r"]), len(v["c"])
    h, O, b, lq, r, c = (pt.tensor(k, dtype="float32", shape=a.shape) for k, a in v.items())
    fused = ops.score_loss(h, O, b, lq, r, c, loss, final_act, bpreg, logq)
    R = pt.dot(h, O.T) + b[None, :] - logq * lq[None, :]
    plain = loss_sum(loss, activation(final_act)(R, c), r, c, K - B, bpreg)
    # a non-unit incoming gradient, like the 1/B of the training cost
    outs = [fused, plain] + pytensor.grad(fused / 3, [h, O, b]) + pytensor.grad(plain / 3, [h, O, b])
    f = pytensor.function([h, O, b, lq, r, c], outs, mode=mode(backend))
    nodes = f.maker.fgraph.toposort()
    assert sum(isinstance(n.op, ops.ScoreLoss) for n in nodes) == 1  # one fused pass, value and gradient
    got = f(*v.values())
    assert all(np.asarray(a).dtype == np.float32 for a in got)  # no float64 from the inner graph
    assert got[0] == pytest.approx(float(got[1]), rel=1e-5)
    for name, a, e in zip("hOb", got[2:5], got[5:8]):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-6, err_msg=name)
    # masked rows get no gradient, masked in-batch columns neither
    np.testing.assert_array_equal(got[2][v["r"] == 0], 0)
    np.testing.assert_array_equal(got[3][v["c"] == 0], 0)
    np.testing.assert_array_equal(got[4][v["c"] == 0], 0)


@pytest.mark.slow
def test_score_loss_backends_agree_and_all_masked_is_finite():
    """perform, JAX and Numba give the same numbers; an all-padding row set gives 0, not NaN."""
    rng = np.random.default_rng(2)
    v = score_problem(rng, B=4, S=0, rowmask=(0, 0, 0, 0))
    v2 = score_problem(rng, B=4, S=6, rowmask=(1, 0, 1, 1))
    args = [pt.tensor(k, dtype="float32", shape=(None,) * a.ndim) for k, a in v.items()]
    outs = ops.ScoreLoss("bpr-max", "elu", 1.0, 1.0, 0.3)(*args) + ops.ScoreLoss("cross-entropy", "softmax")(*args)
    res = {be: pytensor.function(args, outs, mode=mode(be)) for be in BACKENDS}
    for vals in (v, v2):
        ref = [np.asarray(a) for a in res["c"](*vals.values())]
        if vals is v:
            assert all(np.all(a == 0) for a in ref)
        for be in BACKENDS:
            for a, e in zip(res[be](*vals.values()), ref):
                np.testing.assert_allclose(a, e, rtol=2e-5, atol=1e-6, err_msg=be)


def test_score_loss_gradient_of_gradient_outputs_refused():
    h, O = pt.matrix("h"), pt.matrix("O")
    b, lq, r, c = pt.vector("b"), pt.vector("lq"), pt.vector("r"), pt.vector("c")
    out = ops.ScoreLoss("cross-entropy", "softmax")(h, O, b, lq, r, c)
    with pytest.raises(Exception):
        pytensor.grad(out[1].sum(), h)
    assert not ops.loss_covered("cross-entropy", "softmax", smoothing=0.1)
    assert not ops.loss_covered("bpr-max", "tanh") and not ops.loss_covered("top1-max", "linear")
    assert ops.loss_covered("bpr-max", "elu-1") and ops.loss_covered("cross-entropy", "softmax")
    for loss, act in (("top1-max", "linear"), ("cross-entropy", "elu"), ("bpr-max", "tanh")):
        with pytest.raises(ValueError, match="does not cover"):
            ops.ScoreLoss(loss, act)


def test_score_loss_inner_graph_is_the_loss_of_losses_py():
    """The fused Op holds no formula of its own: its first inner output is losses.loss_sum on
    the scores (the same graph, node for node), the others pytensor.grad of it; the C backend
    compiles that inner graph with the C VM, not with PyTensor's default Numba linker."""
    h, O = pt.matrix("h"), pt.matrix("O")
    b, lq, r, c = pt.vector("b"), pt.vector("lq"), pt.vector("r"), pt.vector("c")
    node = ops.ScoreLoss("bpr-max", "elu", 0.5, 1.95, 0.7)(h, O, b, lq, r, c)[0].owner
    ih, iO, ib, ilq, ir, ic = node.op.inner_inputs
    R = pt.dot(ih, iO.T) + ib[None, :] - 0.7 * ilq[None, :]
    expected = loss_sum("bpr-max", activation("elu-0.5")(R, ic), ir, ic, ic.shape[0] - ir.shape[0], 1.95)
    assert pytensor.graph.basic.equal_computations([node.op.inner_outputs[0]], [expected])
    linker = node.op.fn.maker.linker
    assert isinstance(linker, VMLinker) and linker.c_thunks


# SparseAdagrad ------------------------------------------------------------------------------------

IDX = np.array([1, 2, 2, 5, 1, 1, 0, 6, 2, 7], np.int32)  # repeats, and the padding row 7


def spec_update(P0, A0, V0, idx, g, lr, mom, lmbd):
    """Spec 7.4-7.5 in float64: per-occurrence scaling from the old accumulator, P gets the
    sum of the steps, A every occurrence's g^2; returns P, A and, per occurrence, the
    velocity rows one of which must be stored."""
    P0, A0, V0, g = (np.asarray(a, np.float64) for a in (P0, A0, V0, g))
    step = lr * (g / np.sqrt(A0[idx] + g ** 2 + 1e-6) + lmbd * P0[idx])
    v = mom * V0[idx] - step if mom > 0 else -step
    Pn, An = P0.copy(), A0.copy()
    np.add.at(Pn, idx, v)
    np.add.at(An, idx, g ** 2)
    return Pn, An, v


def adagrad_values(rng, ndim, N=8, D=3):
    shp, gshp = ((N, D), (len(IDX), D)) if ndim == 2 else ((N,), (len(IDX),))
    return [rng.normal(0, 1, shp).astype(np.float32), rng.random(shp).astype(np.float32),
            rng.normal(0, 0.1, shp).astype(np.float32), IDX, rng.normal(0, 1, gshp).astype(np.float32)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mom,lmbd", [(0.4, 0.0), (0.0, 0.01), (0.3, 0.1)])
def test_sparse_adagrad_matches_optimizer(backend, mom, lmbd):
    rng = np.random.default_rng(3)
    lr = 0.05
    for ndim in (2, 1):
        vals = adagrad_values(rng, ndim)
        Pv, Av, Vv = (pt.tensor(n, dtype="float32", shape=(None,) * ndim) for n in "PAV")
        idx, g = pt.ivector("idx"), pt.tensor("g", dtype="float32", shape=(None,) * ndim)
        st = {"acc": Av, "vel": Vv}
        P1, s1 = Optimizer("adagrad", [], lr, mom, lmbd).sparse(Pv, idx, g, st)
        P2, s2 = ops.sparse_adagrad(Pv, idx, g, st, lr, mom, lmbd)
        names = ["acc"] + (["vel"] if mom else [])
        f = pytensor.function([Pv, Av, Vv, idx, g], [P1] + [s1[k] for k in names] + [P2] + [s2[k] for k in names],
                              mode=mode(backend), on_unused_input="ignore")
        assert any(isinstance(n.op, ops.SparseAdagrad) for n in f.maker.fgraph.toposort())
        out = f(*vals)
        n = len(out) // 2
        for name, a, e in zip(["P"] + names, out[n:], out[:n]):
            # the unfused graph keeps the last write of a repeated velocity row as well
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7, err_msg=f"{name} ndim={ndim}")
        Pn, An, v_k = spec_update(*vals, lr, mom, lmbd)
        np.testing.assert_allclose(out[n], Pn, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[n + 1], An, rtol=1e-6, atol=1e-7)
        for row in np.unique(IDX):
            occ = np.flatnonzero(IDX == row)
            if mom:
                assert any(np.allclose(out[n + 2][row], v_k[k], rtol=1e-5, atol=1e-7) for k in occ)
        untouched = np.setdiff1d(np.arange(len(vals[0])), IDX)
        for a, v in zip(out[n:], vals[:3]):
            np.testing.assert_array_equal(a[untouched], v[untouched])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("adapt, adapt_params", [("adagrad", []), ("adam", [0.9, 0.99])])
def test_sparse_updates_do_not_depend_on_the_set_to_inc_rewrite(backend, adapt, adapt_params):
    """Spec 7.4: the accumulators that must sum every occurrence are explicit scatter adds, so
    excluding PyTensor's `local_set_to_inc_subtensor` rewrite changes nothing."""
    rng = np.random.default_rng(5)
    vals = adagrad_values(rng, 2)
    Pv, Av, Mv, Tv, Vv = (pt.matrix(n, dtype="float32") for n in "PAMTV")
    idx, g = pt.ivector("idx"), pt.matrix("g", dtype="float32")
    st = {"acc": Av, "mom": Mv, "t": Tv, "vel": Vv}
    P1, s1 = Optimizer(adapt, adapt_params, 0.05, 0.3, 0.0).sparse(Pv, idx, g, st)
    outs = [P1] + [s1[k] for k in sorted(s1)]
    ins = [Pv, Av, Mv, Tv, Vv, idx, g]
    args = vals[:2] + [np.abs(vals[2]), np.ones_like(vals[0])] + vals[2:]
    with_rw = pytensor.function(ins, outs, mode=mode(backend), on_unused_input="ignore")(*args)
    without = pytensor.function(ins, outs, mode=mode(backend).excluding("local_set_to_inc_subtensor"),
                                on_unused_input="ignore")(*args)
    for a, b in zip(with_rw, without):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_adagrad_in_place_on_shared_variables(backend):
    """As updates of shared variables the C and Numba backends run the in-place variant;
    three calls give the same as three NumPy applications of the spec."""
    rng = np.random.default_rng(4)
    vals = adagrad_values(rng, 2, N=20, D=5)
    Ps, As, Vs = (pytensor.shared(a.copy(), name=n) for a, n in zip(vals[:3], "PAV"))
    idx, g = pt.ivector("idx"), pt.matrix("g", dtype="float32")
    P2, s2 = ops.sparse_adagrad(Ps, idx, g, {"acc": As, "vel": Vs}, 0.1, 0.3, 0.0)
    f = pytensor.function([idx, g], [], updates=[(Ps, P2), (As, s2["acc"]), (Vs, s2["vel"])],
                          mode=mode(backend))
    fops = [n.op for n in f.maker.fgraph.toposort() if isinstance(n.op, ops.SparseAdagrad)]
    assert len(fops) == 1 and fops[0].inplace == (backend != "jax")
    Pr, Ar, Vr = (a.astype(np.float64) for a in vals[:3])
    for _ in range(3):
        ix = rng.integers(0, 20, 12).astype(np.int32)
        ix[3] = ix[7]  # a repeated row
        gv = rng.normal(0, 1, (12, 5)).astype(np.float32)
        f(ix, gv)
        Pr, Ar, v_k = spec_update(Pr, Ar, Vr, ix, gv, 0.1, 0.3, 0.0)
        # the stored velocity: the last write of each repeated row (what all backends do on the CPU)
        Vr[ix] = v_k
    np.testing.assert_allclose(Ps.get_value(), Pr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(As.get_value(), Ar, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Vs.get_value(), Vr, rtol=1e-5, atol=1e-6)


# integration -------------------------------------------------------------------------------------

def make_params(**kw):
    return P.updated(P.DEFAULTS, list({**dict(layers=[6], batch_size=4, n_sample=5, learning_rate=0.1), **kw}.items()))


@pytest.mark.parametrize("case", [
    dict(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True, momentum=0.3, bpreg=1.5),
    dict(loss="cross-entropy", final_act="softmax", embedding=3, logq=1.0, lmbd=0.01),
    dict(loss="bpr-max", final_act="linear", embedding=0, layers=[6, 5], momentum=0.2),
    dict(loss="top1-max", final_act="tanh", constrained_embedding=True, adapt="rmsprop", adapt_params=[0.9]),
], ids=["bprmax-elu-shared", "xe-logq-separate", "bprmax-linear-none", "uncovered"])
def test_step_fused_equals_unfused(case):
    """Network.step with and without the fused Ops: same cost, gradients, weights and states,
    with a masked slot, repeated item indices and non-zero optimizer state."""
    N = 11
    p = make_params(**case)
    B, S = p["batch_size"], p["n_sample"]
    rng = np.random.default_rng(5)
    W = init_weights(N, p)
    W["By"] = rng.normal(0, 0.3, N).astype(np.float32)
    pop = rng.integers(1, 20, N).astype(np.float32)
    x = pt.tensor("x", dtype="int32", shape=(B,))
    y = pt.tensor("y", dtype="int32", shape=(B,))
    s = pt.tensor("s", dtype="int32", shape=(S,))
    act = pt.tensor("a", dtype="float32", shape=(B,))
    H = [pt.tensor(f"h{i}", shape=(B, L)) for i, L in enumerate(p["layers"])]
    logpop = pt.constant(np.r_[np.log(pop), 0].astype(np.float32))
    inputs = [np.array([1, 1, 3, N], np.int32),  # x; slot 3 is inactive (padding)
              np.array([3, 5, 5, N], np.int32),  # y
              np.array([5, 1, 8, 8, 2], np.int32),  # samples
              np.array([1, 1, 1, 0], np.float32)]  # active
    inputs += [rng.normal(0, 0.5, (B, L)).astype(np.float32) * inputs[3][:, None] for L in p["layers"]]
    state, res = None, []
    for fused in (False, True):
        net = Network(p, N, weights=W, pop=pop, fused=fused)
        S = training.optimizer_state(net)
        if state is None:
            state = {}
            for (name, k), var in S.items():
                shape = var.get_value().shape
                v = rng.random(shape) if k == "acc" else rng.normal(0, 0.1, shape)
                v[-1] = 0  # the padding row of an item matrix (harmless for dense ones)
                state[(name, k)] = v.astype(np.float32)
        for key, var in S.items():
            var.set_value(state[key])
        new, cost, g = one_step(net, S, H, x, y, act, s, logpop=logpop)
        f = pytensor.function([x, y, s, act] + H, [cost] + list(g.values()) + list(new.W.values())
                              + list(new.S.values()) + new.H, mode=mode_for("jax"))
        n_fused = sum(isinstance(n.op, (ops.ScoreLoss, ops.SparseAdagrad)) for n in f.maker.fgraph.toposort())
        assert n_fused == fused * (net.fused_loss + len(net.sparse) * net.fused_update)
        res.append(f(*inputs))
    assert (case["loss"] != "top1-max") == (net.fused_loss and net.fused_update)
    for a, e in zip(res[1], res[0]):
        np.testing.assert_allclose(a, e, rtol=2e-5, atol=2e-7)


@pytest.fixture(scope="module")
def events(synthetic_train):
    return synthetic_train.head(3000).copy()


@pytest.mark.slow
@pytest.mark.parametrize("ps", [
    "loss=bpr-max,final_act=elu-0.5,layers=24,constrained_embedding=True,momentum=0.3,bpreg=1.5,"
    "dropout_p_embed=0.2,dropout_p_hidden=0.1",
    "loss=cross-entropy,final_act=softmax,layers=24,embedding=16,logq=1.0,momentum=0.2,dropout_p_hidden=0.2",
], ids=["bpr-max", "cross-entropy"])
def test_same_seed_same_loss_curve(events, ps):
    curves = []
    for fused in (False, True):
        model = GRU4Rec.from_param_string(ps + ",n_epochs=2,batch_size=16,n_sample=64", fused_ops=fused)
        model.fit(events, sample_store=1000)
        curves.append([r.loss for r in model.history])
        assert model.net.fused_loss == model.net.fused_update == fused
    assert len(curves[0]) == 2 and curves[0][1] < curves[0][0]
    np.testing.assert_allclose(curves[1], curves[0], rtol=2e-5)
