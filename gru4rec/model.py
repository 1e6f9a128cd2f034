"""The GRU4Rec network (spec 4), its initialisation (spec 8) and the compiled training step.

One training call runs K session-parallel minibatches inside a `scan`: the weights, the
optimizer state and the hidden states are scan carries, so the item matrices are updated
in place on the device and never copied per step. Gradients are taken w.r.t. the gathered
rows of the item matrices (never the whole matrices) and scattered back (spec 7.4).

Every item matrix has one extra row at index `n_items`: the inactive slots of the shrinking
tail minibatches point there, their loss and gradient are masked, and that row stays zero.
"""
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt

from . import backend  # noqa: F401  (float32 and cache set-up before any graph is built)
from . import ops
from .losses import activation, loss_sum
from .optimizers import Optimizer, clip_by_global_norm, sum_duplicates
from .params import final_act_of


def embedding_mode(p):
    """'shared' (Wy doubles as input embedding), 'separate' (own E) or 'none' (one-hot input)."""
    if p["constrained_embedding"]:
        return "shared"
    return "separate" if embedding_size(p) else "none"


def embedding_size(p):
    return p["layers"][0] if p["embedding"] == "layersize" else int(p["embedding"])


def input_size(p, n_items):
    return {"shared": p["layers"][-1], "separate": embedding_size(p), "none": n_items}[embedding_mode(p)]


def init_weights(n_items, p):
    """Weights as float32 arrays, drawn in the original's order from one seeded stream (spec 8)."""
    rng = np.random.RandomState(p["seed"])

    def draw(r, c):
        s = p["sigma"] if p["sigma"] != 0 else np.sqrt(6.0 / (r + c))
        if p["init_as_normal"]:
            return (rng.randn(r, c) * s).astype(np.float32)
        return (rng.rand(r, c) * s * 2 - s).astype(np.float32)

    W = OrderedDict()
    mode = embedding_mode(p)
    if mode == "separate":
        W["E"] = draw(n_items, embedding_size(p))
    d_in = input_size(p, n_items)
    for i, L in enumerate(p["layers"]):
        W[f"Wx{i}"] = np.hstack([draw(d_in, L) for _ in range(3)])
        W[f"Wh{i}"] = draw(L, L)
        W[f"Wrz{i}"] = np.hstack([draw(L, L) for _ in range(2)])
        W[f"Bh{i}"] = np.zeros(3 * L, np.float32)
        d_in = L
    W["Wy"] = draw(n_items, p["layers"][-1])
    W["By"] = np.zeros(n_items, np.float32)
    return W


def sparse_names(p):
    """The item matrices: updated row-sparsely, and padded with the extra masked row."""
    first = {"shared": [], "separate": ["E"], "none": ["Wx0"]}[embedding_mode(p)]
    return first + ["Wy", "By"]


class Network:
    """Shared variables of one model and the symbolic computations over them."""

    def __init__(self, p, n_items, weights=None, pop=None, fused=True):
        self.p = dict(p)
        # fused: the loss and the sparse Adagrad updates through gru4rec.ops where they cover them
        self.fused_loss = bool(fused) and ops.loss_covered(p["loss"], final_act_of(p), p["smoothing"])
        self.fused_update = bool(fused) and ops.update_covered(p["adapt"])
        self.n_items = n_items
        self.mode = embedding_mode(p)
        self.final_act = final_act_of(p)
        self.opt = Optimizer(p["adapt"], p["adapt_params"], p["learning_rate"], p["momentum"], p["lmbd"])
        weights = init_weights(n_items, p) if weights is None else weights
        self.sparse = sparse_names(p)
        self.W = OrderedDict()
        for name, value in weights.items():
            if name in self.sparse:
                value = np.concatenate([value, np.zeros((1,) + value.shape[1:], value.dtype)])
            self.W[name] = pytensor.shared(value, name=name, shape=value.shape)
        self.pop = pop

    @property
    def pad(self):
        return self.n_items

    def weights(self):
        """The weights as numpy arrays, without the padding row."""
        out = OrderedDict()
        for name, var in self.W.items():
            v = np.asarray(var.get_value())
            out[name] = v[:-1] if name in self.sparse else v
        return out

    # forward -------------------------------------------------------------------------------
    def _gru(self, W, i, a, Hp, act):
        """One GRU layer (spec 4.3): reset gate before the recurrent matmul, a single bias."""
        L = self.p["layers"][i]
        rz = pt.sigmoid(a[:, L:] + pt.dot(Hp, W[f"Wrz{i}"]))
        r, z = rz[:, :L], rz[:, L:]
        h_cand = act(pt.dot(Hp * r, W[f"Wh{i}"]) + a[:, :L])
        return (1 - z) * Hp + z * h_cand

    def forward(self, W, inp_rows, H, emb_mask=None, hid_masks=None):
        """Last layer output and new states from the gathered input rows.

        inp_rows are Wx0[x] (no embedding), E[x] or Wy[x] (shared). Masks are multiplicative
        dropout masks (already scaled by 1/p_keep) or None."""
        act = activation(self.p["hidden_act"])
        if self.mode == "none":
            a = inp_rows + W["Bh0"]
        else:
            u = inp_rows if emb_mask is None else inp_rows * emb_mask
            a = pt.dot(u, W["Wx0"]) + W["Bh0"]
        new_H = []
        for i in range(len(self.p["layers"])):
            if i > 0:
                a = pt.dot(out, W[f"Wx{i}"]) + W[f"Bh{i}"]
            h = self._gru(W, i, a, H[i], act)
            out = h if hid_masks is None or hid_masks[i] is None else h * hid_masks[i]
            new_H.append(out)
        return out, new_H

    def input_rows(self, W, x):
        return W[{"shared": "Wy", "separate": "E", "none": "Wx0"}[self.mode]][x]

    def predict(self, x, H):
        """Scores of every item (after the final activation, softmax_logit -> softmax) for the
        inputs x, and the new hidden states. No dropout, no logQ."""
        W = self.W
        out, new_H = self.forward(W, self.input_rows(W, x), H)
        scores = pt.dot(out, W["Wy"][:-1].T) + W["By"][:-1]
        act = "softmax" if self.final_act == "softmax_logit" else self.final_act
        return activation(act)(scores), new_H

    # training step -------------------------------------------------------------------------
    def step(self, W, S, H, x, y, active, reset, samples, valid, emb_mask, hid_masks, logpop):
        """One minibatch (spec 3.2) on the B slots; returns (new W, new S, new H, cost, grads).

        W: weights by name, S: optimizer states by (weight name, state name), H: hidden states.
        active/reset: float (B,) masks; samples: (n_sample,) item indices or None; valid: 0
        for an all-padding step, which then changes nothing. grads maps each weight name to its
        gradient (the gathered-row gradient for item matrices)."""
        p, B = self.p, self.p["batch_size"]
        n_sample = 0 if samples is None else p["n_sample"]
        if samples is not None:
            samples = pt.switch(valid > 0, samples, self.pad)
            y_all = pt.concatenate([y, samples])
        else:
            y_all = y
        colmask = pt.concatenate([active, pt.ones((n_sample,), "float32")]) if n_sample else active
        rows, idx = OrderedDict(), OrderedDict()
        if self.mode == "shared":
            idx["Wy"] = pt.concatenate([x, y_all])
            rows["Wy"] = W["Wy"][idx["Wy"]]
            inp, out_w = rows["Wy"][:B], rows["Wy"][B:]
        else:
            first = "E" if self.mode == "separate" else "Wx0"
            idx[first], idx["Wy"] = x, y_all
            rows[first], rows["Wy"] = W[first][x], W["Wy"][y_all]
            inp, out_w = rows[first], rows["Wy"]
        idx["By"] = y_all
        rows["By"] = W["By"][y_all]
        out, new_H = self.forward(W, inp, H, emb_mask, hid_masks)
        logq_cols = None
        if p["logq"]:
            logq_cols = logpop[y]
            if n_sample:
                logq_cols = pt.concatenate([logq_cols, p["sample_alpha"] * logpop[samples]])
        if self.fused_loss:
            cost = ops.score_loss(out, out_w, rows["By"], logq_cols, active, colmask, p["loss"],
                                  self.final_act, p["bpreg"], p["logq"]) / B
        else:
            R = pt.dot(out, out_w.T) + rows["By"][None, :]
            if p["logq"]:
                R = R - p["logq"] * logq_cols[None, :]
            Y = activation(self.final_act)(R, colmask)
            cost = loss_sum(p["loss"], Y, active, colmask, n_sample, p["bpreg"], p["smoothing"]) / B
        dense = [n for n in W if n not in self.sparse]
        wrt = [rows[n] for n in self.sparse] + [W[n] for n in dense]
        g = OrderedDict(zip(self.sparse + dense, pytensor.grad(cost, wrt)))
        if p["sparse_updates"] == "summed":
            for n in self.sparse:
                idx[n], g[n] = sum_duplicates(idx[n], g[n], self.pad)
        g = OrderedDict(zip(g, clip_by_global_norm(list(g.values()), p["grad_cap"])))
        new_W, new_S = OrderedDict(), OrderedDict()
        keep = (1 - reset) * active
        for name in W:
            st = {k: S[(name, k)] for k in self.opt.state_names()}
            if name in self.sparse and self.fused_update:
                new_W[name], ns = ops.sparse_adagrad(W[name], idx[name], g[name], st, self.opt.lr,
                                                     self.opt.momentum, self.opt.lmbd)
            elif name in self.sparse:
                new_W[name], ns = self.opt.sparse(W[name], idx[name], g[name], st)
            else:
                new_W[name], ns = self.opt.dense(W[name], g[name], st)
                new_W[name] = pt.switch(valid > 0, new_W[name], W[name])
                ns = {k: pt.switch(valid > 0, v, st[k]) for k, v in ns.items()}
            for k in st:
                new_S[(name, k)] = ns.get(k, st[k])
        new_H = [h * keep[:, None] for h in new_H]
        return new_W, new_S, new_H, cost, g

    def init_state(self):
        """Zero optimizer state and hidden states as shared variables."""
        self.S = OrderedDict()
        for name, var in self.W.items():
            v = var.get_value()
            for k in self.opt.state_names():
                self.S[(name, k)] = pytensor.shared(np.zeros_like(v), name=f"{name}_{k}", shape=v.shape)
        B = self.p["batch_size"]
        self.H = [pytensor.shared(np.zeros((B, L), np.float32), name=f"H{i}", shape=(B, L))
                  for i, L in enumerate(self.p["layers"])]

    def compile_train(self, K, store_rows, mode, seed):
        """f(x, y, active, reset, offset) -> per-step costs (K,), running K minibatches;
        compiled and already run once.

        x, y, active, reset are (K, B) slices of the epoch schedule; offset is the first row
        of the sample store to use. Dropout masks are drawn on the device."""
        p, B = self.p, self.p["batch_size"]
        self.init_state()
        n_sample = p["n_sample"]
        X = pt.tensor("x", dtype="int32", shape=(K, B))
        Y = pt.tensor("y", dtype="int32", shape=(K, B))
        A = pt.tensor("active", dtype="float32", shape=(K, B))
        R = pt.tensor("reset", dtype="float32", shape=(K, B))
        off = pt.scalar("offset", dtype="int32")
        valid = (A.sum(axis=1) > 0).astype("float32")
        seqs = [X, Y, A, R, valid]
        has = {}
        if n_sample:
            self.store = pytensor.shared(np.zeros((store_rows, n_sample), np.int32), name="store",
                                         shape=(store_rows, n_sample))
            seqs.append(self.store[off + pt.arange(K)])
        rng = pt.random.shared_rng(seed=seed, name="dropout_rng")
        rng_state = [rng]

        def masks(prob, width):
            keep = 1.0 - prob
            rng_state[0], u = rng_state[0].uniform(0, 1, size=(K, B, width), dtype="float32")
            return (u < keep).astype("float32") / np.float32(keep)

        has["emb"] = self.mode != "none" and p["dropout_p_embed"] > 0
        if has["emb"]:
            seqs.append(masks(p["dropout_p_embed"], input_size(p, self.n_items)))
        has["hid"] = p["dropout_p_hidden"] > 0
        if has["hid"]:
            seqs += [masks(p["dropout_p_hidden"], L) for L in p["layers"]]
        logpop = pt.constant(np.r_[np.log(self.pop), 0].astype(np.float32)) if p["logq"] else None
        wn, sn, nl = list(self.W), list(self.S), len(p["layers"])

        def body(*args):
            it = iter(args)
            x, y, a, r, v = (next(it) for _ in range(5))
            samples = next(it) if n_sample else None
            emb_mask = next(it) if has["emb"] else None
            hid = [next(it) for _ in range(nl)] if has["hid"] else None
            W = OrderedDict((n, next(it)) for n in wn)
            S = OrderedDict((k, next(it)) for k in sn)
            H = [next(it) for _ in range(nl)]
            nW, nS, nH, cost, _ = self.step(W, S, H, x, y, a, r, samples, v, emb_mask, hid, logpop)
            return list(nW.values()) + list(nS.values()) + nH + [cost]

        carries = list(self.W.values()) + list(self.S.values()) + self.H
        outs = pytensor.scan(body, sequences=seqs, outputs_info=carries + [None], n_steps=K,
                             return_updates=False, mode=mode)
        updates = [(var, o[-1]) for var, o in zip(carries, outs[:-1])]
        if rng_state[0] is not rng:
            updates.append((rng, rng_state[0]))
        # without negative samples (n_sample=0) the store offset is unused, and that is fine
        f = pytensor.function([X, Y, A, R, off], outs[-1], updates=updates, mode=mode,
                              on_unused_input="raise" if n_sample else "ignore")
        f.trust_input = True  # callers hand over arrays of the right types, possibly device arrays
        # One all-padding call compiles the JIT backends now, not in the first epoch; it changes
        # no weight, state or hidden state.
        idle = np.full((K, B), self.pad, np.int32)
        np.asarray(f(idle, idle, np.zeros((K, B), np.float32), np.zeros((K, B), np.float32),
                     np.asarray(0, np.int32)))
        return f
