"""Training end to end, bad input to fit, init, save and load."""
import logging
import re

import numpy as np
import pandas as pd
import pytest

from gru4rec import GRU4Rec
from gru4rec import params as P
from gru4rec.data import DataError
from gru4rec.model import init_weights
from gru4rec.serialization import ModelFileError

from . import reference as ref

RSC15 = ("loss=cross-entropy,constrained_embedding=True,embedding=0,final_act=softmax,layers=100,"
         "batch_size=32,dropout_p_embed=0.0,dropout_p_hidden=0.4,learning_rate=0.2,momentum=0.2,"
         "n_sample=2048,sample_alpha=0.5,bpreg=0.0,logq=1.0")
EPOCH = re.compile(r"^Epoch(\d+) --> loss: (\d+\.\d{6}) \t\((\d+\.\d\d)s\) \t\[(\d+\.\d\d) mb/s \| (\d+) e/s\]$")


@pytest.fixture(scope="module")
def train_full(yoochoose_dir):
    return pd.read_csv(yoochoose_dir / "train_full.tsv.gz", sep="\t", dtype={"ItemId": str})


def small(df, n=4000):
    return df.head(n).copy()


@pytest.mark.slow
def test_rsc15_params_loss_falls(train_full, caplog):
    model = GRU4Rec.from_param_string(RSC15 + ",n_epochs=3")
    caplog.set_level(logging.INFO, logger="gru4rec")
    model.fit(train_full)
    out = "\n".join(caplog.messages)
    assert "Created sample store with 4882 batches of samples (type=CPU)" in out
    epochs = [EPOCH.match(l) for l in out.splitlines() if l.startswith("Epoch")]
    assert len(epochs) == 3 and all(epochs)
    losses = [float(m.group(2)) for m in epochs]
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < 0.85 * losses[0]
    # events per epoch = events - sessions (spec 3.4)
    n_pairs = len(train_full) - train_full["SessionId"].nunique()
    dt, eps = float(epochs[0].group(3)), float(epochs[0].group(5))
    assert eps * dt == pytest.approx(n_pairs, rel=0.02)


@pytest.mark.parametrize("ps", [
    "loss=bpr-max,final_act=elu-0.5,layers=32/16,embedding=16,dropout_p_embed=0.2,dropout_p_hidden=0.1",
    "loss=bpr-max,final_act=linear,layers=32,embedding=0,n_sample=0,momentum=0.3",
    "loss=xe_logit,final_act=softmax_logit,layers=32,constrained_embedding=True,train_random_order=True",
])
def test_other_modes_train(synthetic_train, ps):
    model = GRU4Rec.from_param_string(ps + ",n_epochs=2,batch_size=16,n_sample=64")
    model.fit(small(synthetic_train, 6000))
    losses = [r.loss for r in model.history]
    assert len(losses) == 2 and np.all(np.isfinite(losses)) and losses[1] < losses[0]


@pytest.mark.parametrize("random_order", [False, True])
def test_schedule_is_built_once_unless_the_order_changes(synthetic_train, monkeypatch, random_order):
    """Without train_random_order every epoch trains on the first one's schedule, built once;
    with it, every epoch builds the schedule of a permutation of its own."""
    from gru4rec import training
    orders, build = [], training.session_parallel_schedule

    def recording(items, offsets, order, *args, **kwargs):
        orders.append(np.array(order))
        return build(items, offsets, order, *args, **kwargs)

    monkeypatch.setattr(training, "session_parallel_schedule", recording)
    model = GRU4Rec(layers=[8], batch_size=8, n_sample=16, n_epochs=3, steps_per_call=4,
                    train_random_order=random_order)
    model.fit(small(synthetic_train))
    assert len(model.history) == 3 and len(orders) == (3 if random_order else 1)
    assert all(np.array_equal(np.sort(o), np.arange(len(o))) for o in orders)
    assert random_order == (not np.array_equal(orders[0], orders[-1]))


def test_logq_with_in_batch_negatives_only(synthetic_train):
    """logQ corrects the in-batch targets' scores also without extra samples (spec 4.6): the
    trainer must build the popularity table then too."""
    data = small(synthetic_train, 3000)
    loss = {logq: GRU4Rec(loss="cross-entropy", final_act="softmax", constrained_embedding=True, layers=[16],
                          batch_size=16, n_sample=0, logq=logq, n_epochs=1).fit(data).history[0].loss
            for logq in (0.0, 1.0)}
    assert np.isfinite(loss[0.0]) and np.isfinite(loss[1.0]) and loss[0.0] != loss[1.0]


def test_history_and_callback_match_the_epoch_lines(synthetic_train, caplog):
    """model.history holds one record per epoch, the callback gets the same records as they
    finish, and each record's line is the logged epoch line."""
    seen = []
    caplog.set_level(logging.INFO, logger="gru4rec")
    model = GRU4Rec(layers=[8], n_epochs=2, batch_size=4, n_sample=8)
    model.fit(small(synthetic_train), callback=seen.append, show_progress=False)
    lines = [l for l in caplog.messages if l.startswith("Epoch")]
    assert seen == model.history and [r.epoch for r in seen] == [1, 2]
    assert [r.line() for r in seen] == lines and all(EPOCH.match(l) for l in lines)
    n_pairs = sum(len(s) - 1 for _, s in small(synthetic_train).groupby("SessionId"))
    for r in seen:
        assert r.events == n_pairs and r.mb_per_s == pytest.approx(r.minibatches / r.seconds)
        assert r.events_per_s == pytest.approx(n_pairs / r.seconds) and np.isfinite(r.loss)


def test_fit_leaves_frame_and_uses_keys(synthetic_train):
    df = small(synthetic_train).rename(columns={"SessionId": "s", "ItemId": "i", "Time": "t"})
    before = df.copy()
    model = GRU4Rec(layers=[8], n_epochs=1, batch_size=4, n_sample=8, session_key="s", item_key="i", time_key="t")
    model.fit(df)
    pd.testing.assert_frame_equal(df, before)
    assert len(model.itemidmap) == df["i"].nunique()


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d.drop(columns=["Time"]), "Time"),
    (lambda d: d.iloc[:0], "empty"),
    (lambda d: d.assign(ItemId=d["ItemId"].where(d.index != 3)), "ItemId.*missing"),
    (lambda d: d.head(7), "fewer than batch_size=32"),
])
def test_bad_input_to_fit(synthetic_train, mutate, msg):
    with pytest.raises(DataError, match=msg):
        GRU4Rec(layers=[8], n_epochs=1, n_sample=8).fit(mutate(small(synthetic_train)))


def test_init_matches_reference_draw_order():
    for cfg in [dict(layers=[5, 3], embedding=4, constrained_embedding=False),
                dict(layers=[6], embedding=0, constrained_embedding=True),
                dict(layers=[4, 4], embedding=0, constrained_embedding=False, sigma=0.1)]:
        p = P.updated(P.DEFAULTS, list(cfg.items()))
        ours = init_weights(11, p)
        theirs = ref.init_weights(11, dict(cfg, sigma=p["sigma"], init_as_normal=False), seed=42)
        for k, v in ours.items():
            if k[:-1] in ("Wx", "Wh", "Wrz", "Bh"):
                other = theirs[k[:-1]][int(k[-1])]
            else:
                other = theirs[k]
            np.testing.assert_allclose(v, other, rtol=1e-6, atol=1e-7, err_msg=k)


def test_save_load_roundtrip_and_errors(synthetic_train, tmp_path):
    model = GRU4Rec(layers=[8], n_epochs=1, batch_size=4, n_sample=8, loss="cross-entropy",
                    final_act="softmax").fit(small(synthetic_train))
    path = tmp_path / "m.gru4rec"
    model.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.gru4rec"]  # no temporary left behind
    loaded = GRU4Rec.load(path)
    assert loaded.params == model.params
    assert list(loaded.itemidmap.index) == list(model.itemidmap.index)
    for k, v in model.net.weights().items():
        np.testing.assert_array_equal(loaded.net.weights()[k], v)
    (tmp_path / "garbage").write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a readable GRU4Rec model"):
        GRU4Rec.load(tmp_path / "garbage")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a GRU4Rec model file"):
        GRU4Rec.load(tmp_path / "foreign.npz")
    with pytest.raises(ModelFileError, match="not found"):
        GRU4Rec.load(tmp_path / "nothing")
    data = path.read_bytes()
    (tmp_path / "truncated").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        GRU4Rec.load(tmp_path / "truncated")


def test_interrupted_save_leaves_old_file(synthetic_train, tmp_path, monkeypatch):
    model = GRU4Rec(layers=[8], n_epochs=1, batch_size=4, n_sample=8).fit(small(synthetic_train))
    path = tmp_path / "m.gru4rec"
    model.save(path)
    good = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.gru4rec"]


def test_nan_stops_training_and_flags_model(synthetic_train, caplog):
    # weights of 1e38 overflow the scores to inf, and inf - inf is NaN
    model = GRU4Rec(layers=[8], n_epochs=3, batch_size=4, n_sample=8, sigma=1e38)
    model.fit(small(synthetic_train))
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "Epoch" in r.getMessage()] == \
        [("WARNING", "Epoch1: NaN error!")]
    assert model.error_during_train
    assert model.history == []  # the aborted epoch has no record


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numba", "c"])
def test_backends_agree_with_jax(synthetic_train, backend):
    """Without dropout the runs differ only in float rounding: the same epoch losses."""
    def losses(b):
        model = GRU4Rec(layers=[8], n_epochs=2, batch_size=8, n_sample=16, momentum=0.3, backend=b,
                        steps_per_call=4).fit(small(synthetic_train, 1500))
        return [r.loss for r in model.history]
    np.testing.assert_allclose(losses(backend), losses("jax"), rtol=1e-4)
