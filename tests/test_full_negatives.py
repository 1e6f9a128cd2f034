"""Full negatives (negatives='full'): the cross-entropy over every item, as SASRec-CE trains.

One training step against the float64 NumPy reference (cost, new states, every gradient by
central differences, the update: dense for the output matrix and its biases, per occurrence
for a separate input matrix), fused and unfused; training and evaluation end to end; the
parameter checks."""
import numpy as np
import pytest

from gru4rec import GRU4Rec
from gru4rec.backend import mode_for
from gru4rec.model import Network, sparse_names
from gru4rec.training import Trainer

from . import reference as ref
from .stephelpers import case_id, compiled_step, make_params, random_weights, ref_cfg, ref_inputs, to_ref
from .xlahelpers import program_text

N = 9  # items

CASES = [
    dict(constrained_embedding=True, momentum=0.3),
    dict(embedding=3, smoothing=0.1, logq=1.0),
    dict(embedding=0, layers=[4, 3], adapt="adam", adapt_params=[0.9, 0.99]),
    dict(constrained_embedding=True, lmbd=0.01, grad_cap=0.5),
]


@pytest.mark.parametrize("fused", [False, True], ids=case_id)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_full_step_matches_reference(case, fused):
    rng = np.random.default_rng(11)
    p = make_params(loss="cross-entropy", final_act="softmax", negatives="full", **case)
    B, layers = p.batch_size, p.layers
    W = random_weights(p, rng, N)
    pop = rng.integers(1, 20, N).astype(np.float32)
    perm = rng.permutation(N)
    x, y = perm[:B].astype(np.int32), perm[B:2 * B].astype(np.int32)
    samples = np.arange(p.n_sample, dtype=np.int32)  # an input of the compiled step; unused here
    H = [rng.normal(0, 0.5, (B, L)).astype(np.float32) for L in layers]
    mode = ref.embedding_mode(p)
    d_in = {"shared": layers[-1], "separate": 3, "none": N}[mode]
    emb = (rng.random((B, d_in)) < 0.7).astype(np.float32) / 0.7
    hid = [(rng.random((B, L)) < 0.8).astype(np.float32) / 0.8 for L in layers]

    net, f, gnames, wnames, snames = compiled_step(p, W, pop, fused)
    outs = f(x, y, samples, *H, emb, *hid)
    cost, rest = outs[0], outs[1:]
    grads = dict(zip(gnames, rest[:len(gnames)]))
    newW = dict(zip(wnames, rest[len(gnames):len(gnames) + len(wnames)]))
    newH = rest[len(gnames) + len(wnames) + len(snames):]

    Wr = to_ref(W, p)
    cfg = dict(ref_cfg(p, pop.astype(np.float64)), negatives="full")
    masks, H64 = ref_inputs(p, emb, hid, H)
    loss, refH, _ = ref.forward(Wr, x, y, None, H64, cfg, masks)
    assert cost == pytest.approx(loss / B, rel=2e-5, abs=1e-6)
    for a, b in zip(newH, refH):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)

    def loss_fn():
        return ref.forward(Wr, x, y, None, H64, cfg, masks)[0] / B

    def ref_array(name):
        if name in ("Wy", "By", "E"):
            return Wr[name]
        return Wr[name.rstrip("0123456789")][int(name[-1])]

    # x holds no repeated item, so the per-occurrence rows of a sparse matrix are its rows at x
    ref_grads = {n: ref.numerical_grad(loss_fn, ref_array(n)) for n in grads}
    sparse = sparse_names(p)
    assert "Wy" not in sparse and "By" not in sparse
    for n in sparse:
        ref_grads[n] = ref_grads[n][x]
    if p.grad_cap:
        names = list(ref_grads)
        ref_grads = dict(zip(names, ref.grad_cap([ref_grads[n] for n in names], p.grad_cap)))
    for name, g in grads.items():
        if name in ("Wy", "By"):
            assert not g[-1].any(), "the padding row gets no gradient"
            g = g[:-1]
        np.testing.assert_allclose(g, ref_grads[name], rtol=2e-3, atol=2e-5, err_msg=name)

    for name in wnames:
        P_, state = ref_array(name).copy(), {}
        if name in sparse:
            ref.sparse_update(P_, state, x, ref_grads[name], cfg)
        else:
            ref.dense_update(P_, state, ref_grads[name], cfg)
        got = newW[name]
        if name in net.padded:
            assert not got[-1].any(), f"the padding row of {name} stays zero"
            got = got[:-1]
        np.testing.assert_allclose(got, P_, rtol=2e-3, atol=2e-5, err_msg=name)


def test_full_negatives_train_and_beat_popularity(synthetic_data):
    train, test = synthetic_data
    kw = dict(loss="cross-entropy", final_act="softmax", layers=[32], batch_size=32, n_epochs=2,
              constrained_embedding=True, negatives="full", bptt=2)
    model = GRU4Rec(**kw).fit(train)
    assert all(np.isfinite(r.loss) for r in model.history)
    assert model.history[1].loss < model.history[0].loss
    m = model.evaluate(test, cut_off=[20])
    top = train["ItemId"].value_counts().index[:20]
    pop_recall = test.groupby("SessionId")["ItemId"].apply(lambda s: s.iloc[1:].isin(top).sum()).sum() / \
        test.groupby("SessionId").size().sub(1).sum()
    assert m.recall[20] > 2 * pop_recall


@pytest.mark.parametrize("bad", [dict(loss="bpr-max", final_act="elu-0.5"), dict(loss="top1"),
                                 dict(negatives="all")])
def test_bad_negatives_refused(bad):
    with pytest.raises(ValueError, match="negatives"):
        GRU4Rec(**{"loss": "cross-entropy", "final_act": "softmax", "negatives": "full", **bad})


def test_bias_gradient_is_a_product_not_a_row_sum():
    """The gradient of the output biases (the score gradients summed over the batch's rows)
    comes from a product with ones: XLA's CPU backend gives a sum over the rows of a wide
    matrix to YNNPACK, which took 21 ms for Beauty's 128 x 46,181 scores (0.43 ms as a
    product), a fifth of the step. No reduction over dimension 0 yields one value per item."""
    p = make_params(loss="cross-entropy", final_act="softmax", negatives="full", constrained_embedding=True)
    n = 300
    net = Network(p, n, weights=random_weights(p, np.random.default_rng(0), n), pop=np.ones(n, np.float32))
    text = program_text(Trainer(net, 2, mode_for("jax"), seed=0).fn)
    per_item = f"f32[{n + 1}]"
    row_sums = [line.strip() for line in text.splitlines()
                if " reduce(" in line and f"= {per_item}" in line and "dimensions={0}" in line]
    assert " dot(" in text and not row_sums, row_sums
