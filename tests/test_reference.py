"""Self-tests of the NumPy reference (tests/reference.py), independent of the PyTensor code.

Every expected value below is either a number of spec section 21 or worked out by
hand in the comments, so each test fails if the corresponding formula is wrong.
"""
import math

import numpy as np
import pytest

from . import reference as ref

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75, sigmoid(-ln 3) = 0.25, sigmoid(0) = 0.5
TOL = 1e-12


# ---------------------------------------------------------------------------
# (1) spec 21 table: R = [[1, -0.5, 0.3], [0.2, 2, -1]], M = 2, S = 1
# ---------------------------------------------------------------------------
R21 = np.array([[1.0, -0.5, 0.3], [0.2, 2.0, -1.0]])


@pytest.mark.parametrize(
    "loss, final_act, kwargs, expected",
    [
        ("cross-entropy", "softmax", {}, 0.7369736696529731),
        ("cross-entropy", "softmax", {"smoothing": 0.1}, 1.086973669652973),
        ("xe_logit", "softmax_logit", {}, 0.7369736696529731),
        ("bpr-max", "elu-1", {"bpreg": 1.0}, 0.726512247499032),
        ("bpr-max", "elu-0.5", {"bpreg": 1.95}, 0.7381184491705041),
        ("bpr-max", "linear", {"bpreg": 0.0}, 0.46399675749429314),
        ("top1-max", "linear", {}, 1.5014513256867277),
        ("bpr", "linear", {}, 2.192458650087917),
        ("top1", "linear", {}, 2.6861555072692083),  # value as the original computes it (M x quirk)
    ],
)
def test_spec21_table(loss, final_act, kwargs, expected):
    Yhat = ref.activation(final_act)(R21)
    assert ref.loss_sum(loss, Yhat, 2, **kwargs) == pytest.approx(expected, abs=TOL, rel=0)


def test_spec21_logq_row():
    # counts of the three column items 10, 5, 20; third column is a sample -> Q = 20 ** 0.5
    R = ref.logq_correction(R21, np.array([10.0, 5.0, 20.0]), M=2, logq=1.0, sample_alpha=0.5)
    np.testing.assert_allclose(R, R21 - np.log([10.0, 5.0, math.sqrt(20.0)]), rtol=0, atol=TOL)
    value = ref.loss_sum("cross-entropy", ref.activation("softmax")(R), 2)
    assert value == pytest.approx(1.0682486671216314, abs=TOL, rel=0)


def test_top1_quirk_is_M_times_intended():
    value = ref.loss_sum("top1", R21, 2)
    assert value / 2 == pytest.approx(1.3430777536346044, abs=TOL, rel=0)


def test_xe_logit_smoothing_matches_cross_entropy_smoothing():
    xe = ref.loss_sum("cross-entropy", ref.activation("softmax")(R21), 2, smoothing=0.1)
    logit = ref.loss_sum("xe_logit", ref.activation("softmax_logit")(R21), 2, smoothing=0.1)
    assert logit == pytest.approx(xe, abs=1e-12, rel=0)


# ---------------------------------------------------------------------------
# activations (spec 4.7)
# ---------------------------------------------------------------------------
def test_activations_by_hand():
    x = np.array([[-1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(ref.activation("linear")(x), x)
    np.testing.assert_array_equal(ref.activation("relu")(x), [[0.0, 0.0, 2.0]])
    np.testing.assert_allclose(ref.activation("tanh")(x), np.tanh(x))
    np.testing.assert_allclose(ref.activation("leaky-0.1")(x), [[-0.1, 0.0, 2.0]], atol=TOL)
    e1 = math.exp(-1.0) - 1.0
    np.testing.assert_allclose(ref.activation("elu-0.5")(x), [[0.5 * e1, 0.0, 2.0]], atol=TOL)
    np.testing.assert_allclose(ref.activation("selu-2-3")(x), [[2 * 3 * e1, 0.0, 4.0]], atol=TOL)
    # softmax / softmax_logit row-wise over the last axis
    z = np.array([[0.0, LN3], [1.0, 1.0]])
    np.testing.assert_allclose(ref.activation("softmax")(z), [[0.25, 0.75], [0.5, 0.5]], atol=TOL)
    np.testing.assert_allclose(ref.activation("softmax_logit")(z),
                               -np.log([[0.25, 0.75], [0.5, 0.5]]), atol=TOL)
    with pytest.raises(NotImplementedError):
        ref.activation("swish")


# ---------------------------------------------------------------------------
# (3) GRU equations (spec 4.3) by hand
# ---------------------------------------------------------------------------
def _cfg(**kw):
    cfg = dict(loss="bpr", final_act="linear", hidden_act="linear", constrained_embedding=False,
               embedding=1, bpreg=1.0, logq=0.0, smoothing=0.0, sample_alpha=0.5)
    cfg.update(kw)
    return cfg


def _one_layer_params():
    # separate embedding mode, N = 2, emb = 1, L = 1; input item 0 has embedding 1.0
    return {
        "E": np.array([[1.0], [0.0]]),
        "Wx": [np.array([[0.5, LN3, 0.0]])],  # [candidate | reset | update]
        "Wh": [np.array([[0.4]])],
        "Wrz": [np.array([[0.0, -LN3 / 2]])],  # [reset | update]
        "Bh": [np.zeros(3)],
        "Wy": np.array([[1.0], [-2.0]]),
        "By": np.array([0.5, 0.0]),
    }


def test_gru_one_unit_by_hand():
    # u = 1, Hp = 2
    # r = sigmoid(ln3 + 2*0)          = 0.75
    # z = sigmoid(0 + 2*(-ln3/2))     = sigmoid(-ln3) = 0.25
    # h_cand = (2*0.75)*0.4 + 0.5     = 1.1            (linear hidden act)
    # h = (1-z)*Hp + z*h_cand = 0.75*2 + 0.25*1.1 = 1.775
    # (swapped z convention would give 0.25*2 + 0.75*1.1 = 1.325)
    # scores: Y_all = [y=1, sample=0]: R = [1.775*(-2) + 0, 1.775*1 + 0.5] = [-3.55, 2.275]
    # bpr: log 2 + log(1 + exp(-(-3.55 - 2.275)))
    params = _one_layer_params()
    loss, newH, Yhat = ref.forward(params, [0], [1], [0], [np.array([[2.0]])], _cfg())
    np.testing.assert_allclose(newH[0], [[1.775]], atol=TOL)
    np.testing.assert_allclose(Yhat, [[-3.55, 2.275]], atol=TOL)
    assert loss == pytest.approx(math.log(2) + math.log1p(math.exp(5.825)), abs=TOL)


def test_gru_hidden_activation_applied_to_candidate_only():
    # same as above with tanh: h = 0.75*2 + 0.25*tanh(1.1)
    params = _one_layer_params()
    _, newH, _ = ref.forward(params, [0], [1], [0], [np.array([[2.0]])], _cfg(hidden_act="tanh"))
    np.testing.assert_allclose(newH[0], [[1.5 + 0.25 * math.tanh(1.1)]], atol=TOL)


def _two_unit_params():
    # separate embedding mode, N = 2, emb = 1, L = 2, input embedding 1.0
    return {
        "E": np.array([[1.0], [0.0]]),
        "Wx": [np.array([[0.1, -0.2, 0.0, 0.0, 0.0, 0.0]])],
        "Wh": [np.array([[1.0, 2.0], [3.0, 4.0]])],
        "Wrz": [np.zeros((2, 4))],
        "Bh": [np.array([0.0, 0.0, LN3, -LN3, LN3, 0.0])],  # bias layout [h | r | z]
        "Wy": np.array([[1.0, 0.0], [0.0, 1.0]]),
        "By": np.zeros(2),
    }


def test_gru_reset_before_matmul_by_hand():
    # Hp = [1, 2]; a = [0.1, -0.2 | ln3, -ln3 | ln3, 0]
    # r = [0.75, 0.25], z = [0.75, 0.5]
    # (Hp*r) @ Wh = [0.75, 0.5] @ [[1,2],[3,4]] = [0.75+1.5, 1.5+2.0] = [2.25, 3.5]
    #   (reset AFTER the matmul would be r*(Hp@Wh) = [0.75*7, 0.25*10] = [5.25, 2.5])
    # h_cand = [2.25+0.1, 3.5-0.2] = [2.35, 3.3]
    # h = (1-z)*Hp + z*h_cand = [0.25*1 + 0.75*2.35, 0.5*2 + 0.5*3.3] = [2.0125, 2.65]
    params = _two_unit_params()
    _, newH, Yhat = ref.forward(params, [0], [0], [1], [np.array([[1.0, 2.0]])], _cfg())
    np.testing.assert_allclose(newH[0], [[2.0125, 2.65]], atol=TOL)
    # Wy = identity: scores are the hidden units, y = 0 first then sample 1
    np.testing.assert_allclose(Yhat, [[2.0125, 2.65]], atol=TOL)


def test_two_layers_with_dropout_masks_by_hand():
    # layer 0 as in the previous test -> h0 = [2.0125, 2.65]; mask [2, 0] -> out0 = [4.025, 0]
    # layer 1 (L = 1): Wx1 = [[0.5, 0, 0], [100, 100, 100]] -- the second row only sees the
    #   dropped unit, so it must not matter; Hp1 = 0 -> z = sigmoid(0) = 0.5
    #   h_cand = 4.025*0.5 = 2.0125, h1 = 0.5*0 + 0.5*2.0125 = 1.00625; mask [4] -> 4.025
    # Wy = [[1], [-1]], By = [0, 0.25]; Y_all = [1, 0]: R = [-4.025 + 0.25, 4.025]
    params = _two_unit_params()
    params["Wx"].append(np.array([[0.5, 0.0, 0.0], [100.0, 100.0, 100.0]]))
    params["Wh"].append(np.array([[7.0]]))
    params["Wrz"].append(np.zeros((1, 2)))
    params["Bh"].append(np.zeros(3))
    params["Wy"] = np.array([[1.0], [-1.0]])
    params["By"] = np.array([0.0, 0.25])
    H = [np.array([[1.0, 2.0]]), np.array([[0.0]])]
    masks = {"embed": None, "hidden": [np.array([[2.0, 0.0]]), np.array([[4.0]])]}
    _, newH, Yhat = ref.forward(params, [0], [1], [0], H, _cfg(), masks)
    np.testing.assert_allclose(newH[0], [[4.025, 0.0]], atol=TOL)
    np.testing.assert_allclose(newH[1], [[4.025]], atol=TOL)
    np.testing.assert_allclose(Yhat, [[-3.775, 4.025]], atol=TOL)


def test_no_embedding_mode_row_lookup_and_embed_mask_ignored():
    # N = 3, L = 1; x = 2 -> a = Wx[0][2] + Bh = [0.3, 0, 0] + [0.1, 0, 0]; Hp = 0
    # z = 0.5, h = 0.5 * 0.4 = 0.2; the embed mask has no effect in this mode
    params = {
        "Wx": [np.array([[9.0, 9.0, 9.0], [9.0, 9.0, 9.0], [0.3, 0.0, 0.0]])],
        "Wh": [np.array([[5.0]])],
        "Wrz": [np.array([[5.0, 0.0]])],
        "Bh": [np.array([0.1, 0.0, 0.0])],
        "Wy": np.array([[1.0], [2.0], [3.0]]),
        "By": np.zeros(3),
    }
    cfg = _cfg(embedding=0)
    masks = {"embed": np.zeros((1, 3)), "hidden": [None]}
    _, newH, Yhat = ref.forward(params, [2], [1], [], [np.zeros((1, 1))], cfg, masks)
    np.testing.assert_allclose(newH[0], [[0.2]], atol=TOL)
    np.testing.assert_allclose(Yhat, [[0.4]], atol=TOL)  # K = M = 1, no samples


def test_shared_mode_uses_Wy_rows_as_input_with_embed_mask():
    # Wy = [[2], [-1]]; x = 0 -> u = 2, embed mask 2 -> u = 4; Wx = [[0.25, 0, 0]], Hp = 0
    # z = 0.5, h = 0.5 * (4*0.25) = 0.5; Y_all = [1, 1]: R = 0.5*(-1) + 0.3 = -0.2 (twice)
    params = {
        "Wx": [np.array([[0.25, 0.0, 0.0]])],
        "Wh": [np.array([[1.0]])],
        "Wrz": [np.zeros((1, 2))],
        "Bh": [np.zeros(3)],
        "Wy": np.array([[2.0], [-1.0]]),
        "By": np.array([0.0, 0.3]),
    }
    cfg = _cfg(constrained_embedding=True, embedding=0)
    masks = {"embed": np.array([[2.0]]), "hidden": [None]}
    _, newH, Yhat = ref.forward(params, [0], [1], [1], [np.zeros((1, 1))], cfg, masks)
    np.testing.assert_allclose(newH[0], [[0.5]], atol=TOL)
    np.testing.assert_allclose(Yhat, [[-0.2, -0.2]], atol=TOL)


def test_forward_logq_uses_target_counts_and_sample_counts_to_alpha():
    # raw R of the one-unit case: [-3.55, 2.275] for Y_all = [1, 0]
    # pop = [4, 10]: Q = [pop[1], pop[0] ** 0.5] = [10, 2]
    params = _one_layer_params()
    cfg = _cfg(loss="cross-entropy", final_act="softmax", logq=1.0, pop=np.array([4.0, 10.0]))
    loss, _, Yhat = ref.forward(params, [0], [1], [0], [np.array([[2.0]])], cfg)
    corrected = np.array([[-3.55 - math.log(10.0), 2.275 - math.log(2.0)]])
    expected = np.exp(corrected) / np.exp(corrected).sum()
    np.testing.assert_allclose(Yhat, expected, atol=TOL)
    assert loss == pytest.approx(-math.log(expected[0, 0]), abs=1e-10)


def test_forward_multi_slot_diagonal_positive():
    # M = 2, S = 0, same hidden state for both slots (Hp = 2, u = 1) -> h = 1.775 each
    # Y_all = [1, 0]: R row = [-3.55, 2.275] for both rows; positives on the diagonal
    # cross-entropy: -log softmax(row0)[0] - log softmax(row1)[1]
    params = _one_layer_params()
    cfg = _cfg(loss="cross-entropy", final_act="softmax")
    loss, _, Yhat = ref.forward(params, [0, 0], [1, 0], [], [np.array([[2.0], [2.0]])], cfg)
    p = np.exp([-3.55, 2.275]) / np.exp([-3.55, 2.275]).sum()
    np.testing.assert_allclose(Yhat, [p, p], atol=TOL)
    assert loss == pytest.approx(-math.log(p[0]) - math.log(p[1]), abs=1e-10)


# ---------------------------------------------------------------------------
# numerical gradient
# ---------------------------------------------------------------------------
def test_numerical_grad_matches_analytic_and_restores():
    a = np.array([[1.0, -2.0], [0.5, 3.0]])
    before = a.copy()
    f = lambda: float(np.sum(a ** 3) + a[0, 0] * a[1, 1])  # noqa: E731
    grad = ref.numerical_grad(f, a)
    expected = 3 * before ** 2
    expected[0, 0] += before[1, 1]
    expected[1, 1] += before[0, 0]
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    np.testing.assert_array_equal(a, before)


# ---------------------------------------------------------------------------
# (4) sparse optimiser, per-occurrence semantics (spec 7.4 + 7.5)
# ---------------------------------------------------------------------------
def test_sparse_adagrad_duplicates_by_hand():
    P = np.ones((3, 2))
    state = {"acc": np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])}
    idx = np.array([1, 1, 2])
    g = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    cfg = dict(adapt="adagrad", adapt_params=[], learning_rate=0.1, momentum=0.0, lmbd=0.0)
    ref.sparse_update(P, state, idx, g, cfg)
    # every occurrence starts from the OLD accumulator row:
    # A'_0 = [1+1, 1+0] = [2, 1]; A'_1 = [1+4, 1+1] = [5, 2]; A'_2 = [0+9, 0+0] = [9, 0]
    e = 1e-6
    g0 = np.array([1 / math.sqrt(2 + e), 0 / math.sqrt(1 + e)])
    g1 = np.array([2 / math.sqrt(5 + e), 1 / math.sqrt(2 + e)])
    g2 = np.array([3 / math.sqrt(9 + e), 0.0])
    np.testing.assert_allclose(P[0], [1.0, 1.0], atol=TOL)
    np.testing.assert_allclose(P[1], 1.0 - 0.1 * (g0 + g1), atol=TOL)  # scatter ADD of both
    np.testing.assert_allclose(P[2], 1.0 - 0.1 * g2, atol=TOL)
    # the accumulator gets every occurrence's g**2 (spec 7.4, Theano's rewrite):
    # A_1 = 1 + [1, 0] + [4, 1] = [6, 2], A_2 = [9, 0]
    np.testing.assert_allclose(state["acc"], [[0, 0], [6, 2], [9, 0]], atol=TOL)


def test_sparse_adagrad_summed_by_hand():
    # the official ports: g_1 = [1, 0] + [2, 1] = [3, 1] first, then one step from A_1 = [1, 1]:
    # A_1 = [1 + 9, 1 + 1] = [10, 2]; P_1 = 1 - 0.1 * [3/sqrt(10), 1/sqrt(2)]
    P = np.ones((3, 2))
    state = {"acc": np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])}
    cfg = dict(adapt="adagrad", adapt_params=[], learning_rate=0.1, momentum=0.5, lmbd=0.0,
               sparse_updates="summed")
    ref.sparse_update(P, state, [1, 2, 1], [[1.0, 0.0], [3.0, 0.0], [2.0, 1.0]], cfg)
    e = 1e-6
    step1 = 0.1 * np.array([3 / math.sqrt(10 + e), 1 / math.sqrt(2 + e)])
    np.testing.assert_allclose(state["acc"], [[0, 0], [10, 2], [9, 0]], atol=TOL)
    np.testing.assert_allclose(P[1], 1.0 - step1, atol=TOL)  # one momentum step: v = -step
    np.testing.assert_allclose(state["vel"][1], -step1, atol=TOL)
    np.testing.assert_allclose(P[2], [1.0 - 0.1 * 3 / math.sqrt(9 + e), 1.0], atol=TOL)


def test_sparse_sgd_momentum_duplicates_two_steps():
    # step 1: idx [0, 0], g [1, 3]: v_k = 0.9*0 - 0.1*g_k = [-0.1, -0.3]; V[0] = -0.3 (last)
    #         P[0] = 1 - 0.1 - 0.3 = 0.6
    # step 2: idx [0], g [1]: v = 0.9*(-0.3) - 0.1 = -0.37; P[0] = 0.6 - 0.37 = 0.23
    P = np.array([1.0, 5.0])  # 1-D like By
    state = {}
    cfg = dict(adapt=None, adapt_params=[], learning_rate=0.1, momentum=0.9, lmbd=0.0)
    ref.sparse_update(P, state, [0, 0], [1.0, 3.0], cfg)
    np.testing.assert_allclose(P, [0.6, 5.0], atol=TOL)
    np.testing.assert_allclose(state["vel"], [-0.3, 0.0], atol=TOL)
    ref.sparse_update(P, state, [0], [1.0], cfg)
    np.testing.assert_allclose(P, [0.23, 5.0], atol=TOL)


def test_sparse_l2_uses_row_value_before_update():
    # lmbd = 0.5, lr = 0.1, sgd, idx [1, 1], g [1, 1], row value 2:
    # delta_k = 0.1*(1 + 0.5*2) = 0.2 for both occurrences -> P[1] = 2 - 0.4 = 1.6
    P = np.array([[3.0], [2.0]])
    cfg = dict(adapt=None, adapt_params=[], learning_rate=0.1, momentum=0.0, lmbd=0.5)
    ref.sparse_update(P, {}, [1, 1], [[1.0], [1.0]], cfg)
    np.testing.assert_allclose(P, [[3.0], [1.6]], atol=TOL)


def test_sparse_rmsprop_scales_row_once_then_adds_every_occurrence():
    # A[0] = 1, rho = 0.9, idx [0, 0], g [1, 2]: A = 0.9*1 + 0.1*(1 + 4) = 1.4
    # both occurrences read back 1.4: P[0] -= 0.1*(1 + 2)/sqrt(1.4 + 1e-6)
    P = np.array([0.0, 0.0])
    state = {"acc": np.array([1.0, 0.0])}
    cfg = dict(adapt="rmsprop", adapt_params=[0.9], learning_rate=0.1, momentum=0.0, lmbd=0.0)
    ref.sparse_update(P, state, [0, 0], [1.0, 2.0], cfg)
    np.testing.assert_allclose(state["acc"], [1.4, 0.0], atol=TOL)
    np.testing.assert_allclose(P, [-0.3 / math.sqrt(1.4 + 1e-6), 0.0], atol=TOL)


def test_sparse_adam_quirks():
    # beta1 0.9, beta2 0.999, idx [0, 0], g [2, 2], fresh state:
    # V = 0.001*(4+4) = 0.008; first moment gets g^2: Mo = 0.1*(4+4) = 0.8
    # each occurrence corrects with t_old + 1 = 1: g_hat = (0.8/0.1) / (sqrt(0.008/0.1) + 1e-6);
    # P[0] -= 0.1 * 2 * g_hat; the stored counter grows by the 2 occurrences
    P = np.zeros(2)
    state = {}
    cfg = dict(adapt="adam", adapt_params=[0.9, 0.999], learning_rate=0.1, momentum=0.0, lmbd=0.0)
    ref.sparse_update(P, state, [0, 0], [2.0, 2.0], cfg)
    np.testing.assert_allclose(state["acc"], [0.008, 0.0], atol=TOL)
    np.testing.assert_allclose(state["mom"], [0.8, 0.0], atol=TOL)
    np.testing.assert_array_equal(state["t"], [2.0, 0.0])
    g_hat = 8.0 / (math.sqrt(0.08) + 1e-6)
    np.testing.assert_allclose(P, [-0.2 * g_hat, 0.0], atol=1e-10)


def test_sparse_adadelta_forces_unit_learning_rate():
    # rho 0.9, g = 2, fresh: A = 0.1*4 = 0.4; s = (0 + 1e-6)/(0.4 + 1e-6); U = 0.1*s*4
    # P -= 1.0 * 2*sqrt(s)   (learning_rate 0.1 in cfg is overridden)
    P = np.zeros(1)
    state = {}
    cfg = dict(adapt="adadelta", adapt_params=[0.9], learning_rate=0.1, momentum=0.0, lmbd=0.0)
    ref.sparse_update(P, state, [0], [2.0], cfg)
    s = 1e-6 / (0.4 + 1e-6)
    np.testing.assert_allclose(state["acc"], [0.4], atol=TOL)
    np.testing.assert_allclose(state["upd"], [0.4 * s], atol=TOL)
    np.testing.assert_allclose(P, [-2.0 * math.sqrt(s)], atol=TOL)


# ---------------------------------------------------------------------------
# (5) dense optimiser (spec 7.3 + 7.5)
# ---------------------------------------------------------------------------
def test_dense_heavy_ball_momentum_two_steps():
    # sgd, lr 0.1, momentum 0.9, lmbd 0:
    # step 1 (g = 0.5):  v = -0.1*0.5 = -0.05;            p = 0.95
    # step 2 (g = -1):   v = 0.9*(-0.05) + 0.1 = 0.055;   p = 1.005
    # (Nesterov would give p = 1 - 1.9*0.05 = 0.905 after step 1)
    p = np.array([1.0])
    state = {}
    cfg = dict(adapt=None, adapt_params=[], learning_rate=0.1, momentum=0.9, lmbd=0.0)
    ref.dense_update(p, state, np.array([0.5]), cfg)
    np.testing.assert_allclose(p, [0.95], atol=TOL)
    np.testing.assert_allclose(state["vel"], [-0.05], atol=TOL)
    ref.dense_update(p, state, np.array([-1.0]), cfg)
    np.testing.assert_allclose(p, [1.005], atol=TOL)


def test_dense_heavy_ball_momentum_with_l2_two_steps():
    # lmbd 0.1: step 1: v = -0.1*(0.5 + 0.1*1) = -0.06; p = 0.94
    #           step 2: v = 0.9*(-0.06) - 0.1*(-1 + 0.1*0.94) = -0.054 + 0.0906 = 0.0366
    #                   p = 0.94 + 0.0366 = 0.9766
    p = np.array([1.0])
    state = {}
    cfg = dict(adapt=None, adapt_params=[], learning_rate=0.1, momentum=0.9, lmbd=0.1)
    ref.dense_update(p, state, np.array([0.5]), cfg)
    np.testing.assert_allclose(p, [0.94], atol=TOL)
    ref.dense_update(p, state, np.array([-1.0]), cfg)
    np.testing.assert_allclose(p, [0.9766], atol=TOL)


def test_dense_no_momentum_l2_and_adagrad():
    # sgd with lmbd: p = 2*(1 - 0.1*0.5) - 0.1*1 = 1.8
    p = np.array([2.0])
    ref.dense_update(p, {}, np.array([1.0]),
                     dict(adapt=None, adapt_params=[], learning_rate=0.1, momentum=0.0, lmbd=0.5))
    np.testing.assert_allclose(p, [1.8], atol=TOL)
    # adagrad two steps with g = 0.5: A = 0.25 then 0.5
    p = np.array([1.0])
    state = {}
    cfg = dict(adapt="adagrad", adapt_params=[], learning_rate=0.1, momentum=0.0, lmbd=0.0)
    ref.dense_update(p, state, np.array([0.5]), cfg)
    ref.dense_update(p, state, np.array([0.5]), cfg)
    expected = 1.0 - 0.1 * 0.5 / math.sqrt(0.25 + 1e-6) - 0.1 * 0.5 / math.sqrt(0.5 + 1e-6)
    np.testing.assert_allclose(p, [expected], atol=TOL)
    np.testing.assert_allclose(state["acc"], [0.5], atol=TOL)


def test_dense_adagrad_then_momentum():
    # momentum acts on the adagrad-scaled gradient: g_hat = 0.5/sqrt(0.25 + 1e-6)
    p = np.array([1.0])
    state = {}
    cfg = dict(adapt="adagrad", adapt_params=[], learning_rate=0.1, momentum=0.5, lmbd=0.0)
    ref.dense_update(p, state, np.array([0.5]), cfg)
    v1 = -0.1 * 0.5 / math.sqrt(0.25 + 1e-6)
    ref.dense_update(p, state, np.array([0.5]), cfg)
    v2 = 0.5 * v1 - 0.1 * 0.5 / math.sqrt(0.5 + 1e-6)
    np.testing.assert_allclose(p, [1.0 + v1 + v2], atol=TOL)


def test_dense_adam_uses_beta1_in_both_corrections():
    # g = 2: V = 0.001*4 = 0.004, Mo = 0.1*2 = 0.2, t = 1
    # g_hat = (0.2/0.1) / (sqrt(0.004/0.1) + 1e-6) = 2/(0.2 + 1e-6)   (textbook Adam: ~1)
    p = np.array([0.0])
    cfg = dict(adapt="adam", adapt_params=[0.9, 0.999], learning_rate=0.1, momentum=0.0, lmbd=0.0)
    ref.dense_update(p, {}, np.array([2.0]), cfg)
    np.testing.assert_allclose(p, [-0.1 * 2.0 / (0.2 + 1e-6)], atol=TOL)


def test_grad_cap_global_norm():
    grads = [np.array([3.0]), np.array([[4.0]])]  # global norm 5
    np.testing.assert_allclose(ref.grad_cap(grads, 0.0)[0], [3.0])
    np.testing.assert_allclose(ref.grad_cap(grads, 10.0)[1], [[4.0]])
    capped = ref.grad_cap(grads, 2.5)
    np.testing.assert_allclose(capped[0], [1.5], atol=TOL)
    np.testing.assert_allclose(capped[1], [[2.0]], atol=TOL)


# ---------------------------------------------------------------------------
# (6) initialisation (spec 8)
# ---------------------------------------------------------------------------
def _uniform(r, c, s):
    return np.random.rand(r, c) * 2 * s - s


def test_init_shared_mode_draw_order_and_sigma():
    N, L = 3, 2
    cfg = dict(layers=[L], embedding=0, constrained_embedding=True, sigma=0.0, init_as_normal=False)
    params = ref.init_weights(N, cfg)
    assert "E" not in params
    d_in = L  # shared mode: input width = layers[-1]
    assert params["Wx"][0].shape == (d_in, 3 * L)
    assert params["Wh"][0].shape == (L, L)
    assert params["Wrz"][0].shape == (L, 2 * L)
    assert params["Bh"][0].shape == (3 * L,)
    assert params["Wy"].shape == (N, L)
    assert params["By"].shape == (N,)
    np.testing.assert_array_equal(params["Bh"][0], 0.0)
    np.testing.assert_array_equal(params["By"], 0.0)
    s_block = math.sqrt(6 / (d_in + L))  # per block, not d_in + 3L
    assert np.all(np.abs(params["Wx"][0]) <= s_block)
    assert np.all(np.abs(params["Wy"]) <= math.sqrt(6 / (N + L)))

    np.random.seed(42)
    first_block = np.random.rand(d_in, L) * 2 * s_block - s_block
    np.testing.assert_array_equal(params["Wx"][0][:, 0:L], first_block)

    # full replay of the draw order: Wx blocks (h, r, z), Wh, Wrz blocks (r, z), Wy
    np.random.seed(42)
    wx = np.hstack([_uniform(d_in, L, s_block) for _ in range(3)])
    wh = _uniform(L, L, math.sqrt(6 / (L + L)))
    wrz = np.hstack([_uniform(L, L, math.sqrt(6 / (L + L))) for _ in range(2)])
    wy = _uniform(N, L, math.sqrt(6 / (N + L)))
    np.testing.assert_array_equal(params["Wx"][0], wx)
    np.testing.assert_array_equal(params["Wh"][0], wh)
    np.testing.assert_array_equal(params["Wrz"][0], wrz)
    np.testing.assert_array_equal(params["Wy"], wy)


def test_init_separate_mode_two_layers_order():
    N, emb, L0, L1 = 5, 3, 4, 2
    cfg = dict(layers=[L0, L1], embedding=emb, constrained_embedding=False, sigma=0.0,
               init_as_normal=False)
    params = ref.init_weights(N, cfg, seed=7)
    np.random.seed(7)
    E = _uniform(N, emb, math.sqrt(6 / (N + emb)))  # E is drawn first
    wx0 = np.hstack([_uniform(emb, L0, math.sqrt(6 / (emb + L0))) for _ in range(3)])
    wh0 = _uniform(L0, L0, math.sqrt(6 / (2 * L0)))
    wrz0 = np.hstack([_uniform(L0, L0, math.sqrt(6 / (2 * L0))) for _ in range(2)])
    wx1 = np.hstack([_uniform(L0, L1, math.sqrt(6 / (L0 + L1))) for _ in range(3)])
    wh1 = _uniform(L1, L1, math.sqrt(6 / (2 * L1)))
    wrz1 = np.hstack([_uniform(L1, L1, math.sqrt(6 / (2 * L1))) for _ in range(2)])
    wy = _uniform(N, L1, math.sqrt(6 / (N + L1)))
    for got, want in [(params["E"], E), (params["Wx"][0], wx0), (params["Wh"][0], wh0),
                      (params["Wrz"][0], wrz0), (params["Wx"][1], wx1), (params["Wh"][1], wh1),
                      (params["Wrz"][1], wrz1), (params["Wy"], wy)]:
        np.testing.assert_array_equal(got, want)


def test_init_no_embedding_mode_and_fixed_sigma_normal():
    N, L = 4, 3
    cfg = dict(layers=[L], embedding=0, constrained_embedding=False, sigma=0.0,
               init_as_normal=False)
    params = ref.init_weights(N, cfg)
    assert "E" not in params
    assert params["Wx"][0].shape == (N, 3 * L)  # d_in = N
    np.random.seed(42)
    np.testing.assert_array_equal(params["Wx"][0][:, :L], _uniform(N, L, math.sqrt(6 / (N + L))))

    cfg = dict(layers=[L], embedding=0, constrained_embedding=False, sigma=0.1,
               init_as_normal=True)
    params = ref.init_weights(N, cfg)
    np.random.seed(42)
    np.testing.assert_array_equal(params["Wx"][0][:, :L], np.random.randn(N, L) * 0.1)
