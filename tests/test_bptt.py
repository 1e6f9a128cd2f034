"""Truncated BPTT (parameter `bptt`): a window of consecutive minibatches trained as one.

Over a 3-step window against the float64 reference: the per-step costs, the gradients of the
window's summed cost (dense weights, and every step's gathered rows per occurrence, by central
differences through the recurrence), the one optimizer update of the window and the new hidden
states. A reset inside the window cuts the gradient. bptt=1 trains as before bptt existed;
fused and unfused windows agree; training with bptt=2/4 runs for every loss and the loss falls.
"""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from gru4rec import GRU4Rec, ops, training
from gru4rec.backend import mode_for
from gru4rec.model import Network, sparse_names
from gru4rec.synthetic import generate

from . import reference as ref
from .stephelpers import case_id, expanded, make_params, random_weights, ref_cfg, to_ref, with_fused

N = 40  # items: enough that a window's sessions can run on distinct items
K = 3   # steps per window


def window_data(rng, B, S, reset_at=None):
    """x, y, reset (K, B) and samples (K, S) of K consecutive steps: every slot runs through a
    session (a step's target is the next step's input); with `reset_at`, slot 0's session ends
    at that step and the slot continues with a new session."""
    x, y = np.empty((K, B), np.int32), np.empty((K, B), np.int32)
    reset = np.zeros((K, B), np.float32)
    for s in range(B):
        chain = rng.choice(N, K + 2, replace=False)
        for j in range(K):
            skip = int(s == 0 and reset_at is not None and j > reset_at)
            x[j, s], y[j, s] = chain[j + skip], chain[j + skip + 1]
    if reset_at is not None:
        reset[reset_at, 0] = 1
    samples = np.stack([rng.choice(N, S, replace=False) for _ in range(K)]).astype(np.int32)
    return x, y, reset, samples


def compiled_window(p, W, pop, k=K, fused=True):
    """training.train_window over k steps with explicit inputs, all slots active. Returns the
    function f(x_0, y_0, reset_0, samples_0, emb_0, hid_0..., x_1, ..., H...) -> costs (k),
    gradients, new weights, new optimizer states, new H; and the gradient and weight names."""
    net = Network(p, N, weights=W, pop=pop, fused=fused)
    B, S = p["batch_size"], p["n_sample"]
    steps, inputs = [], []
    for j in range(k):
        x, y = (pt.tensor(f"{v}{j}", dtype="int32", shape=(B,)) for v in "xy")
        r = pt.tensor(f"r{j}", dtype="float32", shape=(B,))
        s = pt.tensor(f"s{j}", dtype="int32", shape=(S,)) if S else None
        emb = pt.matrix(f"emb{j}", shape=(B, net.input_size))
        hid = [pt.tensor(f"m{j}_{i}", shape=(B, L)) for i, L in enumerate(p["layers"])]
        steps.append(training.StepInputs(x, y, pt.ones((B,), "float32"), r, s, pt.constant(np.float32(1)),
                                         emb, hid))
        inputs += [x, y, r] + ([s] if S else []) + [emb] + hid
    H = [pt.tensor(f"h{i}", shape=(B, L)) for i, L in enumerate(p["layers"])]
    logpop = pt.constant(np.r_[np.log(pop), 0].astype(np.float32))
    carry, costs, g = training.train_window(net, training.Carry(net.W, training.optimizer_state(net), H),
                                            steps, logpop)
    outs = costs + list(g.values()) + list(carry.W.values()) + list(carry.S.values()) + carry.H
    f = pytensor.function(inputs + H, outs, mode=mode_for("jax"), on_unused_input="ignore")
    return f, list(g), list(carry.W)


def run_window(f, gnames, wnames, data, masks, H, k=K):
    """Calls a compiled window; returns (costs, gradients by name, new weights by name, new H)."""
    x, y, reset, samples = data
    args = []
    for j in range(k):
        args += [x[j], y[j], reset[j]] + ([samples[j]] if samples.shape[1] else []) + [masks[j][0]] + masks[j][1]
    outs = f(*args, *H)
    n_g, n_w = len(gnames), len(wnames)
    grads = dict(zip(gnames, outs[k:k + n_g]))
    new_W = dict(zip(wnames, outs[k + n_g:k + n_g + n_w]))
    return np.array(outs[:k]), grads, new_W, outs[-len(H):]


def reference_window(p, Wr, data, masks, pop, H):
    """The window as the reference sees it: one dict of `ref.forward` arguments per step, with
    a private row per occurrence of an item-matrix index (`expanded`), and the dense weights
    shared by all steps (the same arrays, so that a finite difference moves every step)."""
    x, y, reset, samples = data
    mode = ref.embedding_mode(p)
    cfg = ref_cfg(p, pop)
    steps = []
    for j in range(K):
        E, xe, ye, se, pe = expanded(p, Wr, x[j], y[j], samples[j], pop)
        for key in ("Wh", "Wrz", "Bh"):
            E[key] = Wr[key]
        E["Wx"] = [E["Wx"][0]] + Wr["Wx"][1:] if mode == "none" else Wr["Wx"]
        steps.append(dict(params=E, x=xe, y=ye, samples=se, cfg=dict(cfg, pop=pe), reset=reset[j],
                          masks={"embed": masks[j][0].astype(np.float64) if mode != "none" else None,
                                 "hidden": [m.astype(np.float64) for m in masks[j][1]]}))
    return steps


def reference_gradients(p, Wr, steps, H, names):
    """Central differences of the window's summed cost / B: the dense weights, and per item
    matrix every step's per-occurrence rows concatenated in step order; capped like ours."""
    B = p["batch_size"]

    def loss():
        return sum(ref.forward_window(steps, H)[0]) / B

    grads = {}
    for name in names:
        if name in sparse_names(p):
            per_step = []
            for s in steps:
                g = ref.numerical_grad(loss, s["params"]["Wx"][0] if name == "Wx0" else s["params"][name])
                per_step.append(g[B:] if name == "By" and p["constrained_embedding"] else g)
            grads[name] = np.concatenate(per_step)
        else:
            grads[name] = ref.numerical_grad(loss, Wr[name.rstrip("0123456789")][int(name[-1])])
    if p["grad_cap"]:
        grads = dict(zip(names, ref.grad_cap([grads[n] for n in names], p["grad_cap"])))
    return grads


def occurrences(p, data):
    """The gathered indices of every item matrix, all steps concatenated."""
    x, y, _, samples = data
    out = {"Wy": [], "By": [], "E": [], "Wx0": []}
    for j in range(K):
        out["Wy"].append(np.r_[x[j], y[j], samples[j]] if p["constrained_embedding"] else np.r_[y[j], samples[j]])
        out["By"].append(np.r_[y[j], samples[j]])
        out["E"].append(x[j])
        out["Wx0"].append(x[j])
    return {k: np.concatenate(v) for k, v in out.items()}


CASES = [
    dict(loss="cross-entropy", final_act="softmax", constrained_embedding=True, logq=1.0, momentum=0.3),
    dict(loss="bpr-max", final_act="elu-0.5", embedding=3, layers=[4, 3], bpreg=0.5),
    dict(loss="top1-max", final_act="linear", embedding=0, grad_cap=0.5),
    dict(loss="bpr-max", final_act="elu-1", constrained_embedding=True, momentum=0.2, sparse_updates="summed"),
    dict(loss="xe_logit", final_act="softmax_logit", constrained_embedding=True, adapt="rmsprop",
         adapt_params=[0.9], lmbd=0.01),
    dict(loss="bpr", final_act="linear", embedding=3, n_sample=0),
]


@pytest.mark.parametrize("case, fused", with_fused(CASES), ids=case_id)
def test_window_matches_reference(case, fused):
    """Costs, gradients through the recurrence (a reset inside the window included), the one
    update of the window and the new states, against the float64 reference."""
    rng = np.random.default_rng(17)
    p = make_params(**case)
    B, layers = p["batch_size"], p["layers"]
    W = random_weights(p, rng, N)
    pop = rng.integers(1, 20, N).astype(np.float32)
    data = window_data(rng, B, p["n_sample"], reset_at=1)
    d_in = {"shared": layers[-1], "separate": 3, "none": N}[ref.embedding_mode(p)]
    masks = [((rng.random((B, d_in)) < 0.7).astype(np.float32) / 0.7,
              [(rng.random((B, L)) < 0.8).astype(np.float32) / 0.8 for L in layers]) for _ in range(K)]
    H = [rng.normal(0, 0.5, (B, L)).astype(np.float32) for L in layers]
    f, gnames, wnames = compiled_window(p, W, pop, fused=fused)
    costs, grads, new_W, new_H = run_window(f, gnames, wnames, data, masks, H)

    Wr, H64 = to_ref(W, p), [h.astype(np.float64) for h in H]
    steps = reference_window(p, Wr, data, masks, pop.astype(np.float64), H64)
    losses, ref_H = ref.forward_window(steps, H64)
    np.testing.assert_allclose(costs, np.array(losses) / B, rtol=2e-5, atol=1e-6)
    for a, b in zip(new_H, ref_H):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    ref_grads = reference_gradients(p, Wr, steps, H64, gnames)
    if p["sparse_updates"] == "per-occurrence":  # summed: ours are already summed per row
        for name, g in grads.items():
            np.testing.assert_allclose(g, ref_grads[name], rtol=2e-3, atol=2e-5, err_msg=name)

    cfg = dict(ref_cfg(p, None), sparse_updates=p["sparse_updates"])
    idx = occurrences(p, data)
    for name in wnames:
        if name in sparse_names(p):
            P_ = (Wr["Wx"][0] if name == "Wx0" else Wr[name]).copy()
            ref.sparse_update(P_, {}, idx[name], ref_grads[name], cfg)
            np.testing.assert_allclose(new_W[name][:-1], P_, rtol=2e-3, atol=2e-5, err_msg=name)
        else:
            P_ = Wr[name.rstrip("0123456789")][int(name[-1])].copy()
            ref.dense_update(P_, {}, ref_grads[name], cfg)
            np.testing.assert_allclose(new_W[name], P_, rtol=2e-3, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("fused", [False, True])
def test_reset_cuts_the_gradient(fused):
    """Slot 0's session ends at the window's first step: the gradient of its first input row
    is that of the first step alone, because the later steps start the slot from a zero state.
    Without the reset the later steps add to it."""
    rng = np.random.default_rng(4)
    p = make_params(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True)
    B = p["batch_size"]
    W = random_weights(p, rng, N)
    pop = np.ones(N, np.float32)
    x, y, reset, samples = window_data(rng, B, p["n_sample"], reset_at=0)
    masks = [(np.ones((B, 4), np.float32), [np.ones((B, 4), np.float32)])] * K
    H = [rng.normal(0, 0.5, (B, 4)).astype(np.float32)]
    f3, gnames, wnames = compiled_window(p, W, pop, fused=fused)
    f1, _, _ = compiled_window(p, W, pop, k=1, fused=fused)
    one = run_window(f1, gnames, wnames, (x[:1], y[:1], reset[:1], samples[:1]), masks, H, k=1)[1]["Wy"][0]
    cut = run_window(f3, gnames, wnames, (x, y, reset, samples), masks, H)[1]["Wy"][0]
    through = run_window(f3, gnames, wnames, (x, y, 0 * reset, samples), masks, H)[1]["Wy"][0]
    np.testing.assert_allclose(cut, one, rtol=1e-5, atol=1e-7)
    assert not np.allclose(through, one, rtol=1e-3, atol=1e-6)


def test_fused_window_equals_unfused():
    """A window through the fused Ops (ScoreLoss per step, one sparse Adagrad per item matrix)
    gives what the unfused graph gives."""
    rng = np.random.default_rng(9)
    p = make_params(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True, momentum=0.4,
                    dropout_p_hidden=0.2)
    B = p["batch_size"]
    W = random_weights(p, rng, N)
    pop = rng.integers(1, 20, N).astype(np.float32)
    data = window_data(rng, B, p["n_sample"], reset_at=1)
    masks = [(np.ones((B, 4), np.float32), [(rng.random((B, 4)) < 0.8).astype(np.float32) / 0.8])
             for _ in range(K)]
    H = [rng.normal(0, 0.5, (B, 4)).astype(np.float32)]
    res = []
    for fused in (False, True):
        f, gnames, wnames = compiled_window(p, W, pop, fused=fused)
        kinds = [type(n.op) for n in f.maker.fgraph.toposort()]
        assert kinds.count(ops.ScoreLoss) == fused * K
        assert kinds.count(ops.SparseAdagrad) == fused * len(sparse_names(p))
        res.append(run_window(f, gnames, wnames, data, masks, H))
    (costs, grads, new_W, new_H), (costs_f, grads_f, new_W_f, new_H_f) = res
    np.testing.assert_allclose(costs_f, costs, rtol=2e-5, atol=2e-7)
    for name in grads:
        np.testing.assert_allclose(grads_f[name], grads[name], rtol=2e-5, atol=2e-7, err_msg=name)
    for name in new_W:
        np.testing.assert_allclose(new_W_f[name], new_W[name], rtol=2e-5, atol=2e-7, err_msg=name)
    for a, b in zip(new_H_f, new_H):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-7)


# Epoch losses printed by the per-step training of commit a5eb907, before bptt existed
# (generate(n_sessions=1500, n_items=400, seed=1), batch_size=16, steps_per_call=8, 3 epochs).
BEFORE_BPTT = [
    ("loss=bpr-max,final_act=elu-0.5,layers=32,constrained_embedding=True,dropout_p_embed=0.2,"
     "dropout_p_hidden=0.1,momentum=0.3,n_sample=64", [0.596249, 0.495248, 0.472141]),
    ("loss=cross-entropy,final_act=softmax,layers=24/16,embedding=16,logq=1.0,dropout_p_hidden=0.2,"
     "n_sample=32,sparse_updates=summed", [3.889901, 2.964005, 2.572101]),
    ("loss=top1-max,final_act=linear,layers=16,embedding=0,n_sample=0,adapt=rmsprop,adapt_params=0.9,"
     "train_random_order=True", [0.900790, 0.829252, 0.812499]),
]


@pytest.fixture(scope="module")
def sessions():
    return generate(n_sessions=1500, n_items=400, seed=1)[0]


@pytest.mark.parametrize("ps, before", BEFORE_BPTT, ids=["bpr-max", "cross-entropy", "top1-max"])
def test_bptt1_trains_as_before(sessions, ps, before):
    """bptt=1 is the per-step training: the same epoch losses as before bptt existed (the
    runs were bit-identical; the tolerance leaves room for float rounding of other changes)."""
    model = GRU4Rec.from_param_string(ps + ",n_epochs=3,batch_size=16,bptt=1", steps_per_call=8)
    model.fit(sessions, show_progress=False)
    assert [r.loss for r in model.history] == pytest.approx(before, rel=1e-5)


def test_steps_per_call_rounds_up_to_whole_windows(sessions):
    assert [training.whole_windows(k, 4) for k in (1, 4, 6, 8)] == [4, 4, 8, 8]
    assert training.whole_windows(7, 1) == 7
    model = GRU4Rec(layers=[8], batch_size=8, n_sample=16, n_epochs=1, bptt=4, steps_per_call=6)
    model.fit(sessions.head(2000), show_progress=False)
    assert np.isfinite(model.history[0].loss)


@pytest.mark.parametrize("value", [0, -2, 1.5, "x"])
def test_bad_bptt_is_refused(value):
    with pytest.raises(ValueError, match="bptt"):
        GRU4Rec(bptt=value)


LOSSES = [("cross-entropy", "softmax"), ("xe_logit", "softmax_logit"), ("bpr-max", "elu-0.5"),
          ("top1-max", "linear"), ("bpr", "linear"), ("top1", "tanh")]


@pytest.mark.slow
@pytest.mark.parametrize("bptt", [2, 4])
@pytest.mark.parametrize("loss, act", LOSSES, ids=[l for l, _ in LOSSES])
def test_bptt_trains_every_loss(sessions, loss, act, bptt):
    """Windows of 2 and 4 steps train with every loss (fused where covered) and the loss falls."""
    model = GRU4Rec(loss=loss, final_act=act, layers=[24], batch_size=16, n_sample=32, n_epochs=2,
                    constrained_embedding=True, momentum=0.2, dropout_p_hidden=0.1, bptt=bptt, steps_per_call=8)
    model.fit(sessions, sample_store=100_000, show_progress=False)
    losses = [r.loss for r in model.history]
    assert len(losses) == 2 and np.all(np.isfinite(losses)) and losses[1] < losses[0]
