"""Training (spec 3): one minibatch step, the compiled call of K steps, and the epoch loop.

One compiled call runs K session-parallel minibatches inside a `scan` whose carries are the
weights, the optimizer state and the hidden states, so the item matrices are updated in place
on the device and never copied per step. Gradients are taken w.r.t. the gathered rows of the
item matrices (never the whole matrices) and scattered back (spec 7.4). The host computes each
epoch's schedule, hands it over K steps at a time and keeps one call in flight while it reads
the previous one's costs.

Truncated BPTT (parameter `bptt`): one scan iteration trains a window of `bptt` consecutive
minibatches, unrolled. The hidden state flows through the window's steps, so the gradient of
the window's summed cost reaches back through them, and the window gets one optimizer update.
A window starts from the carried hidden states as constants; a reset inside it zeroes the
slot's state, which cuts the gradient between sessions. bptt=1 is the original's training.

This module reads the network only through `Network`'s attributes (p, W, mode, sparse, pad,
forward, ...).
"""
import operator
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import reduce
from typing import NamedTuple

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph

from . import ops
from .backend import on_device, rows
from .data import session_parallel_schedule
from .losses import activation, loss_sum
from .optimizers import Optimizer, clip_by_global_norm, sum_duplicates


# one step (spec 3.2) -------------------------------------------------------------------------
class StepInputs(NamedTuple):
    """One minibatch on the B slots (spec 3.2), as symbolic tensors."""
    x: object                # int32 (B,) input items
    y: object                # int32 (B,) target items
    active: object           # float32 (B,), 1 where the slot trains in this step
    reset: object            # float32 (B,), 1 where the target ends the slot's session
    samples: object          # int32 (n_sample,) shared negatives, or None (n_sample=0)
    valid: object            # float32 scalar, 0 for an all-padding step, which changes nothing
    emb_mask: object = None  # (B, d_in) dropout mask of the input, scaled by 1/p_keep, or None
    hid_masks: object = None  # one (B, L) dropout mask per layer, or None


class Carry(NamedTuple):
    """What one step hands to the next: weights by name, optimizer states by (weight name,
    state name), and the hidden state of every layer."""
    W: OrderedDict
    S: OrderedDict
    H: list

    def flat(self):
        return [*self.W.values(), *self.S.values(), *self.H]

    def like(self, flat):
        """A Carry with this one's names holding `flat` (a scan's carried arguments)."""
        nw, ns = len(self.W), len(self.S)
        return Carry(OrderedDict(zip(self.W, flat[:nw])), OrderedDict(zip(self.S, flat[nw:nw + ns])),
                     list(flat[nw + ns:]))


class Columns(NamedTuple):
    """The score columns of a step (spec 5.3): the in-batch targets, then the samples; or,
    with full negatives, every item (items None, the target of row i at column y[i])."""
    items: object     # Y_all, int32 (B + n_sample,), or None with full negatives
    mask: object      # float32, 1 for the columns that count (active targets and every sample)
    samples: object   # the samples (the padding row on an all-padding step), or None
    n_sample: int


class Gathered(NamedTuple):
    """The item-matrix rows a step reads, by matrix name: the indices (one per occurrence)
    and the gathered rows as a list of parts whose rows follow the indices in order; the
    gradients are taken with respect to the parts and concatenated."""
    idx: OrderedDict
    rows: OrderedDict


def optimizer_of(p):
    return Optimizer(p.adapt, p.adapt_params, p.learning_rate, p.momentum, p.lmbd)


def _columns(net, inp):
    if net.p.negatives == "full":
        return Columns(None, pt.constant(np.r_[np.ones(net.n_items), 0].astype(np.float32)), None, 0)
    if inp.samples is None:
        return Columns(inp.y, inp.active, None, 0)
    samples = pt.switch(inp.valid > 0, inp.samples, net.pad)
    n = net.p.n_sample
    return Columns(pt.concatenate([inp.y, samples]), pt.concatenate([inp.active, pt.ones((n,), "float32")]),
                   samples, n)


def _gather(net, W, x, y_all):
    """(Gathered, input rows, output rows, output biases): in shared mode the input rows and
    the output rows of Wy are two parts of one list of occurrences, so an item that is both
    gets one gradient row per occurrence. (Gathered as two parts, not one gather sliced in
    two: XLA then neither copies the output rows out of the gather nor pads the gradient of
    the input rows to the whole list.) With full negatives (y_all None) the output rows are
    all of Wy and By, which are differentiated as a whole."""
    idx, rows = OrderedDict(), OrderedDict()
    if y_all is None:
        if net.mode == "shared":
            return Gathered(idx, rows), W["Wy"][x], W["Wy"], W["By"]
        first = "E" if net.mode == "separate" else "Wx0"
        idx[first], rows[first] = x, [W[first][x]]
        return Gathered(idx, rows), rows[first][0], W["Wy"], W["By"]
    if net.mode == "shared":
        idx["Wy"] = pt.concatenate([x, y_all])
        rows["Wy"] = [W["Wy"][x], W["Wy"][y_all]]
        inp, out_w = rows["Wy"]
    else:
        first = "E" if net.mode == "separate" else "Wx0"
        idx[first], idx["Wy"] = x, y_all
        rows[first], rows["Wy"] = [W[first][x]], [W["Wy"][y_all]]
        inp, out_w = rows[first][0], rows["Wy"][0]
    idx["By"] = y_all
    rows["By"] = [W["By"][y_all]]
    return Gathered(idx, rows), inp, out_w, rows["By"][0]


def _logq(net, y, cols, logpop):
    """log Q of every column (spec 4.6): targets by support, samples by support ** alpha."""
    if not net.p.logq or cols.items is None:
        return None
    if cols.samples is None:
        return logpop[y]
    return pt.concatenate([logpop[y], net.p.sample_alpha * logpop[cols.samples]])


def _rows_of(b, B):
    """b repeated in B rows, whose gradient w.r.t. b (the sum of the rows' gradients) is the
    product ones(B) @ g. Why: XLA's CPU backend hands a sum over the rows to YNNPACK, which
    took 21 ms for 128 x 46,181 score gradients where the product takes 0.43 ms (the full
    negatives' step spent a fifth of its time there; docs/performance.md). The rows
    themselves are b broadcast, as before. (With precision='tf32' on a GPU this gradient is a
    TF32 product like the weights'.)"""
    x = b.type()
    rows = OpFromGraph([x], [pt.broadcast_to(x[None, :], (B, x.shape[0]))], inline=True,
                       pullback=lambda inputs, outputs, grads: [pt.dot(pt.ones((B,), grads[0].dtype), grads[0])])
    return rows(b)


def _cost(net, out, out_w, b, logq, inp, cols):
    """The summed loss / B (spec 3.2), through the fused ScoreLoss where it covers the loss."""
    p, B, active = net.p, net.p.batch_size, inp.active
    if cols.items is None:
        Y = activation(net.final_act)(pt.dot(out, out_w.T) + _rows_of(b, B), cols.mask)
        return loss_sum(p.loss, Y, active, cols.mask, 0, smoothing=p.smoothing, target=inp.y) / B
    if net.fused_loss:
        return ops.score_loss(out, out_w, b, logq, active, cols.mask, p.loss, net.final_act,
                              p.bpreg, p.logq) / B
    R = pt.dot(out, out_w.T) + b[None, :]
    if p.logq:
        R = R - p.logq * logq[None, :]
    Y = activation(net.final_act)(R, cols.mask)
    return loss_sum(p.loss, Y, active, cols.mask, cols.n_sample, p.bpreg, p.smoothing) / B


def forward_cost(net, W, H, inp, logpop):
    """Forward pass and cost of one minibatch: (cost, new hidden states, Gathered). The new
    states are zero where the slot's session ended or the slot is inactive (spec 3.2 step 5)."""
    cols = _columns(net, inp)
    gathered, inp_rows, out_w, b = _gather(net, W, inp.x, cols.items)
    out, new_H = net.forward(W, inp_rows, H, inp.emb_mask, inp.hid_masks)
    cost = _cost(net, out, out_w, b, _logq(net, inp.y, cols, logpop), inp, cols)
    keep = ((1 - inp.reset) * inp.active)[:, None]
    return cost, [h * keep for h in new_H], gathered


def gradients(net, cost, W, gathered):
    """(indices, gradients) by weight name for the cost of the steps that gathered the list
    `gathered`: for an item matrix the rows of all steps concatenated in step order, one
    gradient row per occurrence (summed per row for sparse_updates='summed'); whole for the
    dense weights; all capped together (spec 7.2)."""
    dense = [n for n in W if n not in net.sparse]
    parts = OrderedDict((n, [r for s in gathered for r in s.rows[n]]) for n in net.sparse)
    flat = pytensor.grad(cost, [r for rs in parts.values() for r in rs] + [W[n] for n in dense])
    g, idx, i = OrderedDict(), OrderedDict(), 0
    for n, rs in parts.items():
        g[n] = pt.concatenate(flat[i:i + len(rs)])
        idx[n] = pt.concatenate([s.idx[n] for s in gathered])
        i += len(rs)
    g.update(zip(dense, flat[i:]))
    if net.p.sparse_updates == "summed":
        for n in net.sparse:
            idx[n], g[n] = sum_duplicates(idx[n], g[n], net.pad)
    return idx, OrderedDict(zip(g, clip_by_global_norm(list(g.values()), net.p.grad_cap)))


def _sparse_update(net, opt, P, idx, g, st):
    if net.fused_update:
        return ops.sparse_adagrad(P, idx, g, st, opt.lr, opt.momentum, opt.lmbd)
    return opt.sparse(P, idx, g, st)


def _dense_update(net, opt, P, g, st, valid):
    """The textbook update, or nothing on an all-padding step (momentum would still move P)."""
    if net.fused_update:
        return ops.dense_adagrad(P, g, st, valid, opt.lr, opt.momentum, opt.lmbd)
    new, ns = opt.dense(P, g, st)
    ok = valid > 0
    return pt.switch(ok, new, P), {k: pt.switch(ok, v, st[k]) for k, v in ns.items()}


def update(net, carry, idx, g, valid):
    """(new weights, new optimizer states) from the gradients (spec 7)."""
    opt = optimizer_of(net.p)
    new_W, new_S = OrderedDict(), OrderedDict()
    for name, P in carry.W.items():
        st = {k: carry.S[(name, k)] for k in opt.state_names()}
        if name in net.sparse:
            new_W[name], ns = _sparse_update(net, opt, P, idx[name], g[name], st)
        else:
            new_W[name], ns = _dense_update(net, opt, P, g[name], st, valid)
        for k in st:
            new_S[(name, k)] = ns.get(k, st[k])
    return new_W, new_S


def train_window(net, carry, steps, logpop):
    """Consecutive minibatches (a list of StepInputs) trained as one: (new Carry, the per-step
    costs, gradients). The hidden state runs through the steps, and the gradient of their summed
    cost through the recurrence back to the window's start, where the carried states enter as
    constants; then one optimizer update. One step is the original's step (spec 3.2).
    `logpop` is log(support) per item index (with the padding row), used only with logq."""
    H, costs, gathered = carry.H, [], []
    for inp in steps:
        cost, H, rows = forward_cost(net, carry.W, H, inp, logpop)
        costs.append(cost)
        gathered.append(rows)
    idx, g = gradients(net, reduce(operator.add, costs), carry.W, gathered)
    W, S = update(net, carry, idx, g, reduce(pt.maximum, [inp.valid for inp in steps]))
    return Carry(W, S, H), costs, g


def whole_windows(steps, bptt):
    """`steps` rounded up to a multiple of `bptt`: a compiled call trains whole windows."""
    return -(-steps // bptt) * bptt


def optimizer_state(net):
    """Zero optimizer state of every weight as shared variables, keyed (weight, state name)."""
    S, names = OrderedDict(), optimizer_of(net.p).state_names()
    for name, var in net.W.items():
        v = var.get_value()
        for k in names:
            S[(name, k)] = pytensor.shared(np.zeros_like(v), name=f"{name}_{k}", shape=v.shape)
    return S


# the compiled call of K steps ------------------------------------------------------------------
class CallInputs(NamedTuple):
    """The inputs of one compiled call: (K, B) slices of the epoch schedule and the call's K
    rows of the sample store (None without samples)."""
    x: object
    y: object
    active: object
    reset: object
    samples: object


def _step_inputs(seq, n_layers):
    """StepInputs of every step of a window from one scan iteration's (bptt, ...) slices of
    the named sequences."""
    steps = []
    for j in range(seq["x"].type.shape[0]):
        s = {name: v[j] for name, v in seq.items()}
        hid = [s[f"hid{i}"] for i in range(n_layers)] if "hid0" in s else None
        steps.append(StepInputs(s["x"], s["y"], s["active"], s["reset"], s.get("samples"), s["valid"],
                                s.get("emb"), hid))
    return steps


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch: what its line reports (spec 3.3-3.4)."""
    epoch: int          # from 1
    loss: float         # the step costs' mean weighted by the active slots (spec 3.3)
    seconds: float      # wall time of the epoch, compilation excluded
    minibatches: int
    events: int         # (input, target) pairs trained on

    @property
    def mb_per_s(self):
        return self.minibatches / self.seconds

    @property
    def events_per_s(self):
        return self.events / self.seconds

    def line(self):
        """The original's epoch line."""
        return (f"Epoch{self.epoch} --> loss: {self.loss:.6f} \t({self.seconds:.2f}s) \t"
                f"[{self.mb_per_s:.2f} mb/s | {self.events_per_s:.0f} e/s]")

    @classmethod
    def of(cls, epoch, costs, active, seconds):
        """From the per-step costs and the (steps, B) active-slot mask of the epoch."""
        M = active.sum(axis=1)
        loss = float((costs * M).sum() / M.sum()) if M.sum() else float("nan")
        return cls(epoch, loss, seconds, len(costs), int(M.sum()))


class Trainer:
    """The training side of one Network: the optimizer state and the hidden states as shared
    variables, the sample store as an array on the device, the compiled call
    `fn(x, y, active, reset[, samples]) -> costs (K,)` that trains K minibatches (K / bptt
    windows of the parameter `bptt`; samples: the call's K rows of the store, only when the
    step draws samples), and the epoch loop around it.

    Compiling runs one all-padding call, so the JIT backends compile now and not in the first
    epoch; it changes no weight, state or hidden state. Dropout masks are drawn on the device."""

    def __init__(self, net, steps_per_call, mode, seed=42):
        self.net, self.K = net, steps_per_call
        p = net.p
        if steps_per_call % p.bptt:
            raise ValueError(f"steps_per_call={steps_per_call} is not a multiple of bptt={p.bptt}")
        self.S = optimizer_state(net)
        self.H = [pytensor.shared(np.zeros((p.batch_size, L), np.float32), name=f"H{i}",
                                  shape=(p.batch_size, L)) for i, L in enumerate(p.layers)]
        self.mode = mode
        self.store = None
        if p.draws_samples:
            self.set_store(np.zeros((steps_per_call, p.n_sample), np.int32))  # until the first block
        self.fn = self._compile(mode, seed)
        self._warm_up()

    def _compile(self, mode, seed):
        K, B = self.K, self.net.p.batch_size
        samples = None
        if self.store is not None:
            samples = pt.tensor("samples", dtype="int32", shape=(K, self.net.p.n_sample))
        call = CallInputs(*(pt.tensor(n, dtype=d, shape=(K, B)) for n, d in
                            (("x", "int32"), ("y", "int32"), ("active", "float32"), ("reset", "float32"))),
                          samples)
        rng = pt.random.shared_rng(seed=seed, name="dropout_rng")
        seqs, new_rng = self._sequences(call, rng)
        carry = Carry(self.net.W, self.S, self.H)
        outs = pytensor.scan(self._body(list(seqs), carry), sequences=list(seqs.values()),
                             outputs_info=carry.flat() + [None], n_steps=K // self.net.p.bptt,
                             return_updates=False, mode=mode)
        updates = [(var, o[-1]) for var, o in zip(carry.flat(), outs[:-1])]
        if new_rng is not rng:
            updates.append((rng, new_rng))
        f = pytensor.function([v for v in call if v is not None], outs[-1].reshape((K,)), updates=updates,
                              mode=mode)
        f.trust_input = True  # callers hand over arrays of the right types, possibly device arrays
        return f

    def _sequences(self, call, rng):
        """The scan's sequences by name, one entry per window of bptt steps, and the dropout
        generator after drawing this call's masks."""
        seqs = OrderedDict(x=call.x, y=call.y, active=call.active, reset=call.reset,
                           valid=(call.active.sum(axis=1) > 0).astype("float32"))
        if call.samples is not None:
            seqs["samples"] = call.samples
        rng, masks = self._dropout_masks(rng)
        seqs.update(masks)
        w = self.net.p.bptt
        return OrderedDict((k, v.reshape((self.K // w, w, *v.type.shape[1:]))) for k, v in seqs.items()), rng

    def _dropout_masks(self, rng):
        """Inverted-dropout masks (spec 4.4) of all K steps: 'emb' for the input embedding,
        'hid0', 'hid1', ... for the layers; and the generator's new state."""
        net, p = self.net, self.net.p
        wanted = []
        if net.mode != "none" and p.dropout_p_embed > 0:
            wanted.append(("emb", p.dropout_p_embed, net.input_size))
        if p.dropout_p_hidden > 0:
            wanted += [(f"hid{i}", p.dropout_p_hidden, L) for i, L in enumerate(p.layers)]
        masks = OrderedDict()
        for name, prob, width in wanted:
            keep = 1.0 - prob
            rng, u = rng.uniform(0, 1, size=(self.K, p.batch_size, width), dtype="float32")
            masks[name] = (u < keep).astype("float32") / np.float32(keep)
        return rng, masks

    def _body(self, names, carry):
        """The scan body: the sequences' slices (in the order of `names`), then the carries."""
        p = self.net.p
        logpop = pt.constant(np.r_[np.log(self.net.pop), 0].astype(np.float32)) if p.logq and p.negatives == "sampled" else None
        n = len(names)

        def body(*args):
            steps = _step_inputs(dict(zip(names, args[:n])), len(p.layers))
            new, costs, _ = train_window(self.net, carry.like(args[n:]), steps, logpop)
            return new.flat() + [pt.stack(costs)]
        return body

    def _warm_up(self):
        K, B = self.K, self.net.p.batch_size
        idle = np.full((K, B), self.net.pad, np.int32)
        zeros = np.zeros((K, B), np.float32)
        np.asarray(self.fn(idle, idle, zeros, zeros, *self._samples(0)))

    # host loop ---------------------------------------------------------------------------------
    def reset_hidden(self):
        for h in self.H:
            h.set_value(np.zeros(h.get_value().shape, np.float32))

    def run(self, sched, sampler, bar=None):
        """Runs a schedule padded to a multiple of K steps, K per call; returns the per-step
        costs, or None on a NaN. `sampler` (a SampleStore, or None without samples) gives each
        call's rows of the store.

        One call stays in flight while the previous one's costs are read: the device never
        idles, and the progress bar and the NaN check follow the real work. With JAX the
        schedule goes to the device once and each call gets its rows of it (`backend.rows`)."""
        n_calls = len(sched.x) // self.K
        chunks = [on_device(a, self.mode) for a in (sched.x, sched.y, sched.active, sched.reset)]
        costs, pending = [], None
        for c in range(n_calls + 1):
            launched = self._launch(chunks, c, sampler) if c < n_calls else None
            if pending is not None:
                costs.append(np.asarray(pending))
                if np.isnan(costs[-1]).any():
                    return None
                if bar is not None:
                    bar.update(min(self.K, bar.total - bar.n))
            pending = launched
        return np.concatenate(costs)

    def _launch(self, chunks, c, sampler):
        """Starts call c (asynchronously with JAX) on the sample store's next rows."""
        off = 0
        if sampler is not None:
            off, block = sampler.take()
            if block is not None:
                self.set_store(block)
        return self.fn(*(rows(a, c * self.K, self.K) for a in chunks), *self._samples(off))

    def set_store(self, block):
        """Puts a (rows, n_sample) block of samples on the training device as the store.

        Why not a shared variable: one that a function only reads keeps a host array, which
        JAX copied to the device at every call (the default store is 40 MB: 10 ms a call on
        the CPU, a fifth of a 32-step call with the RSC15 parameters)."""
        self.store = on_device(block, self.mode)

    def _samples(self, off):
        """The call's arguments after the schedule: the store's rows off..off+K, or nothing."""
        return () if self.store is None else (rows(self.store, off, self.K),)

    def epochs(self, td, sampler, n_epochs, order_rng=None, show_progress=False):
        """Trains `n_epochs` epochs on TrainingData `td` (spec 3.1) and yields each one's
        EpochRecord; on a NaN it yields None and stops. `order_rng` permutes the sessions
        every epoch (train_random_order); without it every epoch has the same schedule, built
        once (Diginetica's took 0.26 s an epoch, yoochoose-100k's 0.02 s of a 2 s epoch, while
        the device waited). `show_progress` draws a bar on stderr."""
        p = self.net.p
        sched = None
        for epoch in range(1, n_epochs + 1):
            t0 = time.time()
            self.reset_hidden()
            if sched is None or order_rng is not None:
                order = td.base_order if order_rng is None else order_rng.permutation(len(td.base_order))
                sched = session_parallel_schedule(td.items, td.offsets, order, p.batch_size, self.net.pad,
                                                  stop_below_two=(p.negatives == "sampled" and p.n_sample == 0))
            costs = self._run_epoch(sched, sampler, f"Epoch{epoch}" if show_progress else None)
            if costs is None:
                yield None
                return
            yield EpochRecord.of(epoch, costs, sched.active, time.time() - t0)

    def _run_epoch(self, sched, sampler, bar_title):
        """The epoch's per-step costs (None on a NaN), with a progress bar when titled."""
        bar = _bar(sched.n_steps, bar_title) if bar_title else None
        costs = self.run(sched.padded(self.K, self.net.pad), sampler, bar)
        if bar is not None:
            bar.close()
        return None if costs is None else costs[:sched.n_steps]


def _bar(total, desc):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="mb", leave=False, file=sys.stderr)
