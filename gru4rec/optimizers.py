"""Adaptive learning rates, heavy-ball momentum and L2 (spec 7) as PyTensor update rules.

Dense parameters get the textbook update. The item matrices are updated row-sparsely from
the gradients of the gathered rows, one row per occurrence of an index, with the semantics
the original has when it runs (spec 7.4): Adagrad scales each occurrence by the old
accumulator row plus its own g**2, the accumulator receives every occurrence's g**2 and the
parameter the sum of the per-occurrence steps. Every scatter that must accumulate is written
as an explicit `inc_subtensor`, so the result never depends on PyTensor's rewrites.
`sum_duplicates` turns this into the official ports' semantics (one step per distinct row).
"""
import pytensor.tensor as pt

EPS = 1e-6


class Optimizer:
    def __init__(self, adapt, adapt_params, learning_rate, momentum, lmbd):
        self.adapt = adapt if adapt in ("adagrad", "rmsprop", "adadelta", "adam") else None
        self.params = list(adapt_params)
        self.lr = 1.0 if self.adapt == "adadelta" else learning_rate
        self.momentum = momentum
        self.lmbd = lmbd

    def state_names(self):
        """Names of the per-parameter state arrays (all shaped like the parameter, start at 0)."""
        names = {"adagrad": ["acc"], "rmsprop": ["acc"], "adadelta": ["acc", "upd"],
                 "adam": ["acc", "mom", "t"], None: []}[self.adapt]
        return names + (["vel"] if self.momentum > 0 else [])

    # dense -----------------------------------------------------------------------------
    def _scale_dense(self, g, st):
        new = {}
        a = self.adapt
        if a == "adagrad":
            new["acc"] = st["acc"] + g ** 2
            return g / pt.sqrt(new["acc"] + EPS), new
        if a == "rmsprop":
            rho = self.params[0]
            new["acc"] = rho * st["acc"] + (1 - rho) * g ** 2
            return g / pt.sqrt(new["acc"] + EPS), new
        if a == "adadelta":
            rho = self.params[0]
            new["acc"] = rho * st["acc"] + (1 - rho) * g ** 2
            s = (st["upd"] + EPS) / (new["acc"] + EPS)
            new["upd"] = rho * st["upd"] + (1 - rho) * s * g ** 2
            return g * pt.sqrt(s), new
        if a == "adam":
            b1, b2 = self.params[:2]
            new["acc"] = b2 * st["acc"] + (1 - b2) * g ** 2
            new["mom"] = b1 * st["mom"] + (1 - b1) * g
            new["t"] = st["t"] + 1
            corr = 1 - b1 ** new["t"]  # the original uses beta1 in both corrections
            return (new["mom"] / corr) / (pt.sqrt(new["acc"] / corr) + EPS), new
        return g, new

    def dense(self, p, g, st):
        """(new p, new state dict) for a dense parameter p with gradient g."""
        gs, new = self._scale_dense(g, st)
        if self.momentum > 0:
            new["vel"] = self.momentum * st["vel"] - self.lr * (gs + self.lmbd * p)
            return p + new["vel"], new
        return p * (1 - self.lr * self.lmbd) - self.lr * gs, new

    # sparse ----------------------------------------------------------------------------
    def _decay_add(self, A, idx, decay, add):
        """Scale the touched rows of A by decay, then scatter-add every occurrence's term."""
        A = pt.set_subtensor(A[idx], decay * A[idx])
        return pt.inc_subtensor(A[idx], add)

    def _scale_sparse(self, idx, g, st):
        new = {}
        a = self.adapt
        if a == "adagrad":
            old = st["acc"][idx]
            new["acc"] = _inc_after_read(st["acc"], idx, old, g ** 2)
            return g / pt.sqrt(old + g ** 2 + EPS), new
        if a == "rmsprop":
            rho = self.params[0]
            new["acc"] = self._decay_add(st["acc"], idx, rho, (1 - rho) * g ** 2)
            return g / pt.sqrt(new["acc"][idx] + EPS), new
        if a == "adadelta":
            rho = self.params[0]
            new["acc"] = self._decay_add(st["acc"], idx, rho, (1 - rho) * g ** 2)
            s = (st["upd"][idx] + EPS) / (new["acc"][idx] + EPS)
            new["upd"] = self._decay_add(st["upd"], idx, rho, (1 - rho) * s * g ** 2)
            return g * pt.sqrt(s), new
        if a == "adam":
            b1, b2 = self.params[:2]
            new["acc"] = self._decay_add(st["acc"], idx, b2, (1 - b2) * g ** 2)
            # Quirk of the original (spec 7.4): the sparse first moment accumulates g**2.
            new["mom"] = self._decay_add(st["mom"], idx, b1, (1 - b1) * g ** 2)
            # each occurrence corrects with its old counter + 1; the counter grows by the
            # number of occurrences (what the original's "set t[idx] + 1" becomes when it runs)
            t_old = st["t"][idx]
            new["t"] = _inc_after_read(st["t"], idx, t_old, pt.ones_like(g))
            corr = 1 - b1 ** (t_old + 1)
            return (new["mom"][idx] / corr) / (pt.sqrt(new["acc"][idx] / corr) + EPS), new
        return g, new

    def sparse(self, P, idx, g, st):
        """(new P, new state dict) for the rows P[idx] with one gradient row per occurrence."""
        gs, new = self._scale_sparse(idx, g, st)
        delta = self.lr * (gs + self.lmbd * P[idx]) if self.lmbd > 0 else self.lr * gs
        if self.momentum > 0:
            v = self.momentum * st["vel"][idx] - delta
            new["vel"] = pt.set_subtensor(st["vel"][idx], v)
            return pt.inc_subtensor(P[idx], v), new
        return pt.inc_subtensor(P[idx], -delta), new


def _inc_after_read(A, idx, read, add):
    """A with every occurrence's `add` scattered into A[idx], where `read` is A[idx] as the
    caller reads it before the update. The added values are made to depend on `read` (they
    are `add` exactly, unless a read value is NaN, which the row keeps anyway): without that
    dependency XLA may schedule the read after the scatter and then copies the whole matrix
    before every update (see gru4rec.ops.jax_dispatch, where the same holds)."""
    return pt.inc_subtensor(A[idx], pt.switch(pt.isnan(read), read, add))


def sum_duplicates(idx, g, pad):
    """(idx', g') for the official ports' sparse updates: the gradient rows of each distinct
    index summed into its first occurrence (in sorted order); the other occurrences point at
    the padding row `pad` with a zero gradient, which leaves every optimizer's rows unchanged.
    Static shapes: the number of occurrences stays the same."""
    order = pt.argsort(idx)
    s = idx[order]
    first = pt.concatenate([pt.ones((1,), "bool"), pt.neq(s[1:], s[:-1])])
    segment = pt.cumsum(first) - 1
    sums = pt.inc_subtensor(pt.zeros_like(g)[segment], g[order])[segment]
    keep = first.reshape((-1,) + (1,) * (g.ndim - 1))
    return pt.switch(first, s, pad), pt.switch(keep, sums, 0)


def clip_by_global_norm(grads, cap):
    """Scales all gradients by cap / norm when their global norm is >= cap (spec 7.2)."""
    if not cap:
        return grads
    norm = pt.sqrt(sum((g ** 2).sum() for g in grads))
    scale = pt.switch(norm >= cap, cap / norm, 1.0)
    return [g * scale for g in grads]
