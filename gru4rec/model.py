"""The GRU4Rec network (spec 4) and its initialisation (spec 8); training is in
`gru4rec.training`.

The weights are shared variables. Every item matrix has one extra row at index `n_items`:
the inactive slots of the shrinking tail minibatches point there, their loss and gradient
are masked, and that row stays zero.
"""
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt

from . import ops
from .losses import activation
from .params import final_act_of


def embedding_mode(p):
    """'shared' (Wy doubles as input embedding), 'separate' (own E) or 'none' (one-hot input)."""
    if p.constrained_embedding:
        return "shared"
    return "separate" if embedding_size(p) else "none"


def embedding_size(p):
    return p.layers[0] if p.embedding == "layersize" else int(p.embedding)


def input_size(p, n_items):
    return {"shared": p.layers[-1], "separate": embedding_size(p), "none": n_items}[embedding_mode(p)]


def weight_shapes(n_items, p):
    """The name and shape of every weight `init_weights` makes (without drawing them)."""
    shapes = OrderedDict()
    if embedding_mode(p) == "separate":
        shapes["E"] = (n_items, embedding_size(p))
    d_in = input_size(p, n_items)
    for i, L in enumerate(p.layers):
        shapes[f"Wx{i}"] = (d_in, 3 * L)
        shapes[f"Wh{i}"] = (L, L)
        shapes[f"Wrz{i}"] = (L, 2 * L)
        shapes[f"Bh{i}"] = (3 * L,)
        d_in = L
    shapes["Wy"] = (n_items, p.layers[-1])
    shapes["By"] = (n_items,)
    return shapes


def check_weights(p, n_items, weights):
    """ValueError naming the first disagreement between the parameters (layers, embedding),
    the number of items and the weight arrays of a model: a missing or extra array, a wrong
    shape, a non-float array."""
    want = weight_shapes(n_items, p)
    missing = [k for k in want if k not in weights]
    if missing:
        raise ValueError(f"the array(s) {', '.join(missing)} that layers={p.layers}, embedding={p.embedding}, "
                         f"constrained_embedding={p.constrained_embedding} need are missing")
    extra = [k for k in weights if k not in want]
    if extra:
        raise ValueError(f"unexpected array(s) {', '.join(extra)} for layers={p.layers}, "
                         f"embedding={p.embedding}, constrained_embedding={p.constrained_embedding}")
    for k, shape in want.items():
        w = weights[k]
        if w.dtype.kind != "f":
            raise ValueError(f"the array {k} holds {w.dtype}, not floats")
        if tuple(w.shape) != shape:
            raise ValueError(f"the array {k} has shape {tuple(w.shape)}, but {n_items} item ids and "
                             f"layers={p.layers}, embedding={p.embedding} need {shape}")


def init_weights(n_items, p):
    """Weights as float32 arrays, drawn in the original's order from one seeded stream (spec 8)."""
    rng = np.random.RandomState(p.seed)

    def draw(r, c):
        s = p.sigma if p.sigma != 0 else np.sqrt(6.0 / (r + c))
        if p.init_as_normal:
            return (rng.randn(r, c) * s).astype(np.float32)
        return (rng.rand(r, c) * s * 2 - s).astype(np.float32)

    W = OrderedDict()
    mode = embedding_mode(p)
    if mode == "separate":
        W["E"] = draw(n_items, embedding_size(p))
    d_in = input_size(p, n_items)
    for i, L in enumerate(p.layers):
        W[f"Wx{i}"] = np.hstack([draw(d_in, L) for _ in range(3)])
        W[f"Wh{i}"] = draw(L, L)
        W[f"Wrz{i}"] = np.hstack([draw(L, L) for _ in range(2)])
        W[f"Bh{i}"] = np.zeros(3 * L, np.float32)
        d_in = L
    W["Wy"] = draw(n_items, p.layers[-1])
    W["By"] = np.zeros(n_items, np.float32)
    return W


def item_matrices(p):
    """The item matrices, padded with the extra masked row."""
    first = {"shared": [], "separate": ["E"], "none": ["Wx0"]}[embedding_mode(p)]
    return first + ["Wy", "By"]


def sparse_names(p):
    """The item matrices updated row-sparsely: all of them, except the output matrix and its
    biases with full negatives, whose gradient reaches every row every step."""
    if p.negatives == "full":
        return [n for n in item_matrices(p) if n not in ("Wy", "By")]
    return item_matrices(p)


class Network:
    """Shared variables of one model and the symbolic computations over them."""

    def __init__(self, p, n_items, weights=None, pop=None, fused=True):
        self.p = p  # a gru4rec.params.Params
        # fused: the loss and the sparse Adagrad updates through gru4rec.ops where they cover them
        self.fused_loss = (bool(fused) and p.negatives == "sampled"
                           and ops.loss_covered(p.loss, final_act_of(p), p.smoothing))
        self.fused_update = bool(fused) and ops.update_covered(p.adapt)
        self.n_items = n_items
        self.mode = embedding_mode(p)
        self.final_act = final_act_of(p)
        weights = init_weights(n_items, p) if weights is None else weights
        self.padded = item_matrices(p)
        self.sparse = sparse_names(p)
        self.W = OrderedDict()
        for name, value in weights.items():
            if name in self.padded:
                value = np.concatenate([value, np.zeros((1,) + value.shape[1:], value.dtype)])
            self.W[name] = pytensor.shared(value, name=name, shape=value.shape)
        self.pop = pop

    @property
    def pad(self):
        return self.n_items

    @property
    def input_size(self):
        """Width of the first layer's input (embedding, item matrix row or one-hot)."""
        return input_size(self.p, self.n_items)

    def weights(self):
        """The weights as numpy arrays, without the padding row."""
        out = OrderedDict()
        for name, var in self.W.items():
            v = np.asarray(var.get_value())
            out[name] = v[:-1] if name in self.padded else v
        return out

    def set_weights(self, weights):
        """Sets the weights from numpy arrays shaped like those of `weights()`."""
        for name, value in weights.items():
            if name in self.padded:
                value = np.concatenate([value, np.zeros((1,) + value.shape[1:], value.dtype)])
            self.W[name].set_value(value)

    # forward -------------------------------------------------------------------------------
    def _gru(self, W, i, a, Hp, act):
        """One GRU layer (spec 4.3): reset gate before the recurrent matmul, a single bias."""
        L = self.p.layers[i]
        rz = pt.sigmoid(a[:, L:] + pt.dot(Hp, W[f"Wrz{i}"]))
        r, z = rz[:, :L], rz[:, L:]
        h_cand = act(pt.dot(Hp * r, W[f"Wh{i}"]) + a[:, :L])
        return (1 - z) * Hp + z * h_cand

    def forward(self, W, inp_rows, H, emb_mask=None, hid_masks=None):
        """Last layer output and new states from the gathered input rows.

        inp_rows are Wx0[x] (no embedding), E[x] or Wy[x] (shared). Masks are multiplicative
        dropout masks (already scaled by 1/p_keep) or None."""
        act = activation(self.p.hidden_act)
        if self.mode == "none":
            a = inp_rows + W["Bh0"]
        else:
            u = inp_rows if emb_mask is None else inp_rows * emb_mask
            a = pt.dot(u, W["Wx0"]) + W["Bh0"]
        new_H = []
        for i in range(len(self.p.layers)):
            if i > 0:
                a = pt.dot(out, W[f"Wx{i}"]) + W[f"Bh{i}"]
            h = self._gru(W, i, a, H[i], act)
            out = h if hid_masks is None or hid_masks[i] is None else h * hid_masks[i]
            new_H.append(out)
        return out, new_H

    def input_rows(self, W, x):
        return W[{"shared": "Wy", "separate": "E", "none": "Wx0"}[self.mode]][x]

