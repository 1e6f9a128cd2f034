"""One training step of the compiled graph against the float64 NumPy reference.

For each loss, embedding mode and depth: the cost, every gradient (per gathered row for the
item matrices, against central differences of the reference) and the optimizer update.
A multi-step test runs the scan of the compiled `Trainer` call over the worked example of spec 3.1a
(shrinking tail, resets) and replays it with the reference slot by slot.
"""
from dataclasses import replace

import numpy as np
import pytest

from gru4rec.backend import mode_for
from gru4rec.model import Network, sparse_names
from gru4rec.training import Trainer

from . import reference as ref
from .stephelpers import (case_id, compiled_step, expanded, make_params, random_weights, ref_cfg, ref_inputs,
                          to_ref, with_fused)
from .xlahelpers import program_text, whole_copies

N = 9


CASES = [
    dict(loss="cross-entropy", final_act="softmax", constrained_embedding=True),
    dict(loss="cross-entropy", final_act="softmax", constrained_embedding=True, logq=1.0, sample_alpha=0.5),
    dict(loss="cross-entropy", final_act="softmax", constrained_embedding=True, smoothing=0.1),
    dict(loss="xe_logit", final_act="softmax_logit", constrained_embedding=True, smoothing=0.05),
    dict(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True, bpreg=1.95),
    dict(loss="bpr-max", final_act="linear", embedding=3, bpreg=0.5, layers=[4, 3]),
    dict(loss="bpr-max", final_act="elu-1", embedding=0, layers=[4, 3], momentum=0.4),
    dict(loss="cross-entropy", final_act="softmax", embedding=0, layers=[4, 3], logq=1.0),
    dict(loss="cross-entropy", final_act="softmax", embedding=3, momentum=0.3, lmbd=0.01),
    dict(loss="top1-max", final_act="tanh", constrained_embedding=True),
    dict(loss="top1", final_act="linear", constrained_embedding=True, hidden_act="relu"),
    dict(loss="bpr", final_act="leaky-0.1", embedding=3),
    dict(loss="bpr-max", final_act="selu-1.05-1.67", constrained_embedding=True, layers=[4, 3],
         adapt="rmsprop", adapt_params=[0.9]),
    dict(loss="cross-entropy", final_act="softmax", constrained_embedding=True, adapt="adam",
         adapt_params=[0.9, 0.99], grad_cap=0.5),
    dict(loss="bpr-max", final_act="elu-0.5", embedding=3, adapt="adadelta", adapt_params=[0.95],
         momentum=0.2),
    dict(loss="bpr-max", final_act="elu-0.5", embedding=0, adapt=None, momentum=0.5, lmbd=0.1),
    # n_sample=0: in-batch negatives only (spec 3.1), every loss
    dict(loss="cross-entropy", final_act="softmax", constrained_embedding=True, n_sample=0, logq=1.0),
    dict(loss="xe_logit", final_act="softmax_logit", embedding=3, n_sample=0),
    dict(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True, n_sample=0, momentum=0.4),
    dict(loss="top1-max", final_act="linear", embedding=0, n_sample=0),
    dict(loss="bpr", final_act="linear", constrained_embedding=True, n_sample=0),
    dict(loss="top1", final_act="tanh", embedding=3, n_sample=0),
]


@pytest.mark.parametrize("case, fused", with_fused(CASES), ids=case_id)
def test_step_matches_reference(case, fused):
    rng = np.random.default_rng(7)
    p = make_params(**case)
    B, S, layers = p["batch_size"], p["n_sample"], p["layers"]
    W = random_weights(p, rng, N)
    pop = rng.integers(1, 20, N).astype(np.float32)
    # no repeated index among the gathered rows, so scatter-set order cannot matter here
    perm = rng.permutation(N)
    x, y = perm[:B].astype(np.int32), perm[B:2 * B].astype(np.int32)
    samples = rng.permutation(N)[:S].astype(np.int32)
    if p["constrained_embedding"]:  # shared mode gathers x and Y_all together: keep them apart
        samples = np.setdiff1d(np.arange(N), np.r_[x, y])[:S].astype(np.int32)
        S = len(samples)
        p = replace(p, n_sample=S)
    H = [rng.normal(0, 0.5, (B, L)).astype(np.float32) for L in layers]
    d_in = {"shared": layers[-1], "separate": 3, "none": N}[ref.embedding_mode(p)]
    emb = (rng.random((B, d_in)) < 0.7).astype(np.float32) / 0.7
    hid = [(rng.random((B, L)) < 0.8).astype(np.float32) / 0.8 for L in layers]

    net, f, gnames, wnames, snames = compiled_step(p, W, pop, fused)
    outs = f(x, y, *([samples] if S else []), *H, emb, *hid)
    cost, rest = outs[0], outs[1:]
    grads = dict(zip(gnames, rest[:len(gnames)]))
    newW = dict(zip(wnames, rest[len(gnames):len(gnames) + len(wnames)]))
    newH = rest[len(gnames) + len(wnames) + len(snames):]

    Wr = to_ref(W, p)
    cfg = ref_cfg(p, pop.astype(np.float64))
    masks, H64 = ref_inputs(p, emb, hid, H)
    loss, refH, _ = ref.forward(Wr, x, y, samples, H64, cfg, masks)
    assert cost == pytest.approx(loss / B, rel=2e-5, abs=1e-6)
    for a, b in zip(newH, refH):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    # gradients: dense directly, item matrices per occurrence through the expanded problem
    E, xe, ye, se, pe = expanded(p, Wr, x, y, samples, pop.astype(np.float64))
    cfg_e = dict(cfg, pop=pe)

    def loss_e():
        return ref.forward(E, xe, ye, se, H64, cfg_e, masks)[0] / B

    ref_grads = {}
    for name in grads:
        if name in sparse_names(p):
            arr = E["Wx"][0] if name == "Wx0" else E[name]
            g = ref.numerical_grad(loss_e, arr)
            if name == "By" and p["constrained_embedding"]:
                g = g[B:]
            ref_grads[name] = g
        else:
            k, i = name.rstrip("0123456789"), int(name[-1])
            ref_grads[name] = ref.numerical_grad(loss_e, E[k][i])
    if p["grad_cap"]:
        names = list(ref_grads)
        ref_grads = dict(zip(names, ref.grad_cap([ref_grads[n] for n in names], p["grad_cap"])))
    for name, g in grads.items():
        np.testing.assert_allclose(g, ref_grads[name], rtol=2e-3, atol=2e-5, err_msg=name)

    # the update, from the reference's own gradients
    idx = {"Wy": np.r_[x, y, samples] if p["constrained_embedding"] else np.r_[y, samples],
           "By": np.r_[y, samples], "E": x, "Wx0": x}
    for name in wnames:
        state = {}
        if name in sparse_names(p):
            P_ = Wr["Wx"][0].copy() if name == "Wx0" else Wr[name].copy()
            ref.sparse_update(P_, state, idx[name], ref_grads[name], cfg)
        else:
            k, i = name.rstrip("0123456789"), int(name[-1])
            P_ = Wr[k][i].copy()
            ref.dense_update(P_, state, ref_grads[name], cfg)
        got = newW[name][:-1] if name in sparse_names(p) else newW[name]
        np.testing.assert_allclose(got, P_, rtol=2e-3, atol=2e-5, err_msg=name)


def duplicate_step(fused, **kw):
    """One step with repeated rows in x, y and the samples; returns the inputs, the
    per-occurrence gradients, the new weights and the new optimizer states."""
    rng = np.random.default_rng(3)
    p = make_params(loss="bpr-max", final_act="elu-1", constrained_embedding=True, momentum=0.3, **kw)
    B = p["batch_size"]
    W = random_weights(p, rng, N)
    x, y, samples = np.array([1, 1, 2], np.int32), np.array([2, 5, 5], np.int32), np.array([5, 1, 7, 7], np.int32)
    H = [rng.normal(0, 0.5, (B, 4)).astype(np.float32)]
    ones = np.ones((B, 4), np.float32)
    _, f, gnames, wnames, snames = compiled_step(p, W, np.ones(N, np.float32), fused)
    outs = f(x, y, samples, *H, ones, ones)
    n_g, n_w = len(gnames), len(wnames)
    grads = dict(zip(gnames, outs[1:1 + n_g]))
    newW = dict(zip(wnames, outs[1 + n_g:1 + n_g + n_w]))
    newS = dict(zip(snames, outs[1 + n_g + n_w:1 + n_g + n_w + len(snames)]))
    return p, W, np.r_[x, y, samples], np.r_[y, samples], grads, newW, newS


ADAM = dict(adapt="adam", adapt_params=[0.9, 0.99])


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("sparse_updates", ["per-occurrence", "summed"])
@pytest.mark.parametrize("opt", [{}, ADAM], ids=["adagrad", "adam"])
def test_duplicate_rows_match_reference(fused, sparse_updates, opt):
    """Repeated rows (spec 7.4): per occurrence, the accumulator (and Adam's counter) gets every
    occurrence and the parameter the sum of the per-occurrence steps; summed, one step per
    distinct row from the summed gradient. Both against the float64 reference, fed with the
    per-occurrence gradients of the step."""
    *_, grads, _, _ = duplicate_step(fused, **opt)  # per-occurrence gradients of the same step
    p, W, idx_wy, idx_by, _, newW, newS = duplicate_step(fused, sparse_updates=sparse_updates, **opt)
    cfg = dict(ref_cfg(p, None), sparse_updates=sparse_updates)
    for name, idx in (("Wy", idx_wy), ("By", idx_by)):
        P_, state = W[name].astype(np.float64), {}
        ref.sparse_update(P_, state, idx, grads[name].astype(np.float64), cfg)
        np.testing.assert_allclose(newW[name][:-1], P_, rtol=1e-4, atol=1e-6, err_msg=name)
        for k, v in state.items():
            got = newS[(name, k)][:-1]
            if k == "vel" and sparse_updates == "per-occurrence":  # one of the writes survives
                once = np.flatnonzero(np.bincount(idx, minlength=N) == 1)
                got, v = got[once], v[once]
            np.testing.assert_allclose(got, v, rtol=1e-4, atol=1e-6, err_msg=f"{name} {k}")
            if k != "t":  # the padding row stays zero (its step counter may count, unused)
                np.testing.assert_array_equal(newS[(name, k)][-1], 0)
        np.testing.assert_array_equal(newW[name][-1], 0)
    if opt:  # a row's counter grows by its number of occurrences, or by one when summed
        counts = np.bincount(idx_wy, minlength=N)
        expect = counts if sparse_updates == "per-occurrence" else np.minimum(counts, 1)
        np.testing.assert_array_equal(newS[("Wy", "t")][:-1, 0], expect)


def test_summed_and_per_occurrence_updates_differ():
    """The two lineages give different parameters when rows repeat (else the test above
    could not tell them apart)."""
    a = duplicate_step(False)[5]["Wy"]
    b = duplicate_step(False, sparse_updates="summed")[5]["Wy"]
    assert not np.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
def test_scan_matches_reference_on_worked_example(fused):
    """The compiled Trainer call over spec 3.1a (B=2, 4 steps, the last with one slot): final weights equal
    four reference steps on the active slots only, with resets after session ends."""
    from gru4rec.data import session_parallel_schedule
    rng = np.random.default_rng(11)
    p = make_params(loss="cross-entropy", final_act="softmax", constrained_embedding=True, batch_size=2,
                    n_sample=3, momentum=0.2, logq=1.0)
    W = random_weights(p, rng, N)
    pop = rng.integers(1, 9, N).astype(np.float32)
    # sessions A=(0,1,2) B=(3,4) C=(5,6,7,8) D=(2,6), in this processing order
    items = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 2, 6], np.int32)
    offsets = np.array([0, 3, 5, 9, 11])
    sched = session_parallel_schedule(items, offsets, np.arange(4), 2, pad=N)
    assert sched.n_steps == 4 and sched.active.sum() == 7
    K = 4
    net = Network(p, N, weights=W, pop=pop, fused=fused)
    trainer = Trainer(net, K, mode_for("jax"), seed=0)
    store = rng.integers(0, N, (K, 3)).astype(np.int32)
    costs = np.asarray(trainer.fn(sched.x, sched.y, sched.active, sched.reset, store))

    Wr = to_ref(W, p)
    cfg = ref_cfg(p, pop.astype(np.float64))
    states = {}
    H = np.zeros((2, 4))
    for t in range(K):
        act = np.flatnonzero(sched.active[t])
        x, y = sched.x[t, act], sched.y[t, act]
        loss, newH, _ = ref.forward(Wr, x, y, store[t], [H[act]], cfg)
        assert costs[t] == pytest.approx(loss / 2, rel=1e-4)
        E, xe, ye, se, pe = expanded(p, Wr, x, y, store[t], pop.astype(np.float64))

        def loss_e():
            return ref.forward(E, xe, ye, se, [H[act]], dict(cfg, pop=pe))[0] / 2

        g = {"Wy": ref.numerical_grad(loss_e, E["Wy"]), "By": ref.numerical_grad(loss_e, E["By"])[len(x):]}
        for k in ("Wx", "Wh", "Wrz", "Bh"):
            g[k] = ref.numerical_grad(loss_e, E[k][0])
        ref.sparse_update(Wr["Wy"], states.setdefault("Wy", {}), np.r_[x, y, store[t]], g["Wy"], cfg)
        ref.sparse_update(Wr["By"], states.setdefault("By", {}), np.r_[y, store[t]], g["By"], cfg)
        for k in ("Wx", "Wh", "Wrz", "Bh"):
            ref.dense_update(Wr[k][0], states.setdefault(k, {}), g[k], cfg)
        H[act] = newH[0] * (1 - sched.reset[t, act])[:, None]
    got = net.weights()
    np.testing.assert_allclose(got["Wy"], Wr["Wy"], rtol=2e-3, atol=2e-5)
    np.testing.assert_allclose(got["By"], Wr["By"], rtol=2e-3, atol=2e-5)
    for k in ("Wx", "Wh", "Wrz", "Bh"):
        np.testing.assert_allclose(got[f"{k}0"], Wr[k][0], rtol=2e-3, atol=2e-5, err_msg=k)
    np.testing.assert_allclose(trainer.H[0].get_value(), H, rtol=1e-3, atol=1e-5)


def test_idle_call_changes_nothing():
    """An all-padding call (used to compile before the first epoch) leaves weights, optimizer
    state and hidden state untouched, even with momentum."""
    rng = np.random.default_rng(5)
    p = make_params(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True, momentum=0.4,
                    dropout_p_hidden=0.3, adapt="rmsprop", adapt_params=[0.9])
    net = Network(p, N, weights=random_weights(p, rng, N), pop=np.ones(N, np.float32))
    trainer = Trainer(net, 2, mode_for("jax"), seed=0)
    train = trainer.fn
    samples = rng.integers(0, N, (2, 4)).astype(np.int32)
    for (name, _), s in trainer.S.items():
        v = np.full(s.get_value().shape, 0.5, np.float32)
        if name in sparse_names(p):
            v[-1] = 0  # the padding row's state is zero in a real model
        s.set_value(v)
    before = {k: v.get_value().copy() for k, v in list(net.W.items()) + list(trainer.S.items())}
    idle = np.full((2, 3), N, np.int32)
    zeros = np.zeros((2, 3), np.float32)
    costs = train(idle, idle, zeros, zeros, samples)
    assert np.all(np.asarray(costs) == 0)
    for k, v in list(net.W.items()) + list(trainer.S.items()):
        np.testing.assert_array_equal(v.get_value(), before[k], err_msg=str(k))


def test_the_sample_store_stays_on_the_device():
    """The store is a device array and each call gets its K rows as an argument: a store the
    call only read as a shared variable stayed a host array, which JAX copied to the device at
    every call (10 ms a call for the default 40 MB store)."""
    import jax
    rng = np.random.default_rng(3)
    p = make_params(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True)
    net = Network(p, N, weights=random_weights(p, rng, N), pop=np.ones(N, np.float32))
    trainer = Trainer(net, 2, mode_for("jax"), seed=0)
    block = rng.integers(0, N, (6, p.n_sample)).astype(np.int32)
    trainer.set_store(block)
    assert isinstance(trainer.store, jax.Array)
    rows, = trainer._samples(2)
    assert isinstance(rows, jax.Array) and np.array_equal(np.asarray(rows), block[2:4])
    stored = [c.storage[0] for c in trainer.fn.input_storage]
    assert not any(isinstance(v, np.ndarray) and v.shape == block.shape for v in stored)


def test_each_call_takes_its_rows_in_one_compiled_slice():
    """backend.rows: a host array's rows are a view; a device array's come from one compiled
    dynamic slice for every start (JAX's indexing with Python numbers cost 0.15-0.35 ms of
    host time a slice)."""
    import jax
    from gru4rec import backend
    block = np.arange(40 * 3, dtype=np.int32).reshape(40, 3)
    assert np.shares_memory(backend.rows(block, 8, 4), block)
    on_device = backend.on_device(block, mode_for("jax"))
    backend._dynamic_rows.cache_clear()
    for start in (0, 4, 8, 36):
        got = backend.rows(on_device, start, 4)
        assert isinstance(got, jax.Array) and np.array_equal(np.asarray(got), block[start:start + 4])
    assert backend._dynamic_rows(4)._cache_size() == 1


def test_training_call_donates_the_item_matrices():
    """The JAX call writes the new weights and optimizer state into the buffers of the old ones
    (donation) instead of copying every item matrix: the old arrays are consumed."""
    rng = np.random.default_rng(2)
    p = make_params(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True, momentum=0.4)
    net = Network(p, N, weights=random_weights(p, rng, N), pop=np.ones(N, np.float32))
    trainer = Trainer(net, 2, mode_for("jax"), seed=0)
    train = trainer.fn
    samples = rng.integers(0, N, (2, 4)).astype(np.int32)
    x = rng.integers(0, N, (2, 3)).astype(np.int32)
    ones = np.ones((2, 3), np.float32)
    train(x, x, ones, 0 * ones, samples)  # the first call's inputs were host arrays
    old = {k: v.get_value(borrow=True) for k, v in [("Wy", net.W["Wy"]), ("acc", trainer.S[("Wy", "acc")]),
                                                      ("vel", trainer.S[("Wy", "vel")])]}
    train(x, x, ones, 0 * ones, samples)
    assert all(a.is_deleted() for a in old.values())
    assert not net.W["Wy"].get_value(borrow=True).is_deleted()


@pytest.mark.parametrize("fused, adapt", [(True, "adagrad"), (False, "adagrad"), (False, "adam")],
                         ids=["fused-adagrad", "adagrad", "adam"])
def test_training_call_never_copies_a_weight(fused, adapt):
    """The compiled JAX call updates every weight and its optimizer state in place: no copy of
    a whole weight-shaped array in XLA's optimized program. A scatter-add whose added values
    do not depend on the rows read from the same matrix let XLA copy the accumulator before
    every update, which halved the training speed on Diginetica; without region analysis in
    copy insertion (backend.COMPILER_OPTIONS) XLA copied every dense weight and its states
    at the start of every step."""
    p = make_params(loss="bpr-max", final_act="elu-0.5", constrained_embedding=True, momentum=0.4,
                    adapt=adapt, adapt_params=[0.9, 0.999] if adapt == "adam" else [])
    net = Network(p, N, weights=random_weights(p, np.random.default_rng(0), N), pop=np.ones(N, np.float32),
                  fused=fused)
    assert net.fused_update == fused
    text = program_text(Trainer(net, 2, mode_for("jax"), seed=0).fn)
    copies = whole_copies(text, [w.type.shape for w in net.W.values()])
    assert "scatter" in text and not copies, copies
