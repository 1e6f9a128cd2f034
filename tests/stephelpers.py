"""The harness of the training-step tests (test_step, test_bptt, test_ops): small parameter
sets, random weights, the float64 reference's view of them (tests/reference.py), and one
training step built with gru4rec.training.train_window."""
import numpy as np
import pytensor
import pytensor.tensor as pt

from gru4rec import ops, training
from gru4rec import params as P
from gru4rec.backend import mode_for
from gru4rec.model import Network, init_weights

from . import reference as ref


def make_params(**kw):
    return P.updated(P.DEFAULTS, list({**dict(layers=[4], batch_size=3, n_sample=4, learning_rate=0.1), **kw}.items()))


def to_ref(W, p):
    """Our weight dict (Wx0, Wh0, ...) -> the reference's (Wx: [...], ...), float64."""
    nl = len(p["layers"])
    out = {k: [W[f"{k}{i}"].astype(np.float64) for i in range(nl)] for k in ("Wx", "Wh", "Wrz", "Bh")}
    for k in ("Wy", "By", "E"):
        if k in W:
            out[k] = W[k].astype(np.float64)
    return out


def ref_cfg(p, pop):
    return dict(loss=p["loss"], final_act=P.final_act_of(p), hidden_act=p["hidden_act"],
                constrained_embedding=p["constrained_embedding"], embedding=p["embedding"],
                bpreg=p["bpreg"], logq=p["logq"], smoothing=p["smoothing"],
                sample_alpha=p["sample_alpha"], pop=pop, adapt=p["adapt"], adapt_params=p["adapt_params"],
                learning_rate=p["learning_rate"], momentum=p["momentum"], lmbd=p["lmbd"])


def ref_inputs(p, emb, hid, H):
    """The dropout masks (none for the one-hot input) and hidden states of a step as the
    float64 reference takes them."""
    masks = {"embed": emb.astype(np.float64) if ref.embedding_mode(p) != "none" else None,
             "hidden": [m.astype(np.float64) for m in hid]}
    return masks, [h.astype(np.float64) for h in H]


def random_weights(p, rng, n_items):
    """Spec-8 weights plus non-zero biases, so the bias paths are exercised too."""
    W = init_weights(n_items, p)
    for k in W:
        if k.startswith("Bh") or k == "By":
            W[k] = rng.normal(0, 0.3, W[k].shape).astype(np.float32)
    return W


def one_step(net, S, H, x, y, active, samples, emb_mask=None, hid_masks=None, logpop=None):
    """training.train_window over a single step without resets, from optimizer state S and
    hidden states H: (the new Carry, the cost, the gradients by name)."""
    B = x.type.shape[0]
    inp = training.StepInputs(x, y, active, pt.zeros((B,), "float32"), samples, pt.constant(np.float32(1)),
                              emb_mask, hid_masks)
    new, costs, g = training.train_window(net, training.Carry(net.W, S, H), [inp], logpop)
    return new, costs[0], g


def expanded(p, Wr, x, y, samples, pop):
    """The reference problem with one private row per occurrence of an item index, so that
    finite differences give per-occurrence row gradients like the original's (spec 7.1)."""
    B, S = len(x), len(samples)
    y_all = np.r_[y, samples]
    mode = ref.embedding_mode(p)
    E = {k: (v.copy() if not isinstance(v, list) else [a.copy() for a in v]) for k, v in Wr.items()}
    if mode == "shared":
        idx = np.r_[x, y_all]
        E["Wy"] = Wr["Wy"][idx].copy()
        xe, ye, se = np.arange(B), B + np.arange(B), 2 * B + np.arange(S)
        E["By"] = np.r_[np.zeros(B), Wr["By"][y_all]]
        pe = np.r_[pop[x], pop[y_all]]
    else:
        first = "E" if mode == "separate" else "Wx"
        if first == "E":
            E["E"] = Wr["E"][x].copy()
        else:
            E["Wx"][0] = Wr["Wx"][0][x].copy()
        E["Wy"] = Wr["Wy"][y_all].copy()
        E["By"] = Wr["By"][y_all].copy()
        xe, ye, se = np.arange(B), np.arange(B), B + np.arange(S)
        pe = pop[y_all]
    return E, xe, ye, se, pe


def _fused_covered(case):
    p = make_params(**case)
    return ops.loss_covered(p["loss"], P.final_act_of(p), p["smoothing"]) or ops.update_covered(p["adapt"])


def with_fused(cases):
    """Every case unfused, and again with the fused Ops where they cover the loss or the update."""
    return [(c, False) for c in cases] + [(c, True) for c in cases if _fused_covered(c)]


def case_id(v):
    return "-".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else f"fused={v}"


def compiled_step(p, W, pop, fused=True):
    """Compiles one training step with explicit inputs (one item per entry of `pop`); returns
    the net, the function, and the names of the gradients, weights and optimizer states."""
    net = Network(p, len(pop), weights=W, pop=pop, fused=fused)
    B = p["batch_size"]
    x = pt.tensor("x", dtype="int32", shape=(B,))
    y = pt.tensor("y", dtype="int32", shape=(B,))
    samples = pt.tensor("s", dtype="int32", shape=(p["n_sample"],)) if p["n_sample"] else None
    H = [pt.tensor(f"h{i}", shape=(B, L)) for i, L in enumerate(p["layers"])]
    emb = pt.matrix("emb", shape=(B, None))
    hid = [pt.tensor(f"m{i}", shape=(B, L)) for i, L in enumerate(p["layers"])]
    ones = pt.ones((B,), "float32")
    logpop = pt.constant(np.r_[np.log(pop), 0].astype(np.float32))
    new, cost, g = one_step(net, training.optimizer_state(net), H, x, y, ones, samples, emb, hid, logpop)
    inputs = [x, y] + ([samples] if samples is not None else []) + H + [emb] + hid
    outs = [cost] + list(g.values()) + list(new.W.values()) + list(new.S.values()) + new.H
    f = pytensor.function(inputs, outs, mode=mode_for("jax"), on_unused_input="ignore")
    return net, f, list(g), list(new.W), list(new.S)
