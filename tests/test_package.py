"""What importing the package does to the process (nothing), what the first compile sets up
(float32, the compile caches under $GRU4REC_CACHE), and where a model's arrays live (its own
device, not JAX's process-wide default). Each check runs in a fresh interpreter."""
import json
import os
import subprocess
import sys
import textwrap

import pytest


def python(code, tmp_path, **env):
    """Runs code in a fresh interpreter (cwd tmp_path); returns the JSON it prints last."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=600, env=dict(os.environ, **env))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_light_modules_import_neither_pytensor_nor_jax(tmp_path):
    got = python("""
        import json, sys
        import gru4rec.params, gru4rec.cli_args, gru4rec.cli, gru4rec.tuning
        print(json.dumps([m for m in ("pytensor", "jax", "optuna") if m in sys.modules]))
    """, tmp_path)
    assert got == []


def test_import_changes_nothing_in_the_process(tmp_path):
    got = python("""
        import json, os, warnings
        import jax, pytensor

        def state():
            ours = [f[1].pattern for f in warnings.filters if f[1] is not None
                    and ("RandomType" in f[1].pattern or "dtype float64" in f[1].pattern)]
            return [os.environ.get("PYTENSOR_FLAGS"), pytensor.config.floatX, str(pytensor.config.base_compiledir),
                    jax.config.jax_enable_x64, str(jax.config.jax_default_device), ours]
        before = state()
        from gru4rec import GRU4Rec
        import gru4rec.evaluation, gru4rec.predict, gru4rec.sequence_eval, gru4rec.model, gru4rec.ops
        GRU4Rec(layers=[8])
        print(json.dumps([before, state()]))
    """, tmp_path, PYTENSOR_FLAGS="")
    before, after = got
    assert after == before and before[1] == "float64" and before[-1] == []


def test_first_compile_sets_float32_and_the_caches(tmp_path):
    """The compile caches land in $GRU4REC_CACHE: PyTensor's compiledir and Numba cache under
    pytensor/, JAX's persistent cache under jax/ (with the compiled training step in it).
    Numba is imported only when its backend is asked for (0.2-0.4 s of run.py's start)."""
    cache = tmp_path / "cache"
    got = python("""
        import json, sys
        import jax, pytensor
        from gru4rec import GRU4Rec
        from gru4rec.backend import mode_for
        from gru4rec.synthetic import generate
        train, _ = generate(n_sessions=400, n_items=100, seed=1)
        GRU4Rec(layers=[8], n_epochs=1, batch_size=8, n_sample=16).fit(train)
        jax_run_imported = [m for m in ("numba", "gru4rec.ops.numba_dispatch") if m in sys.modules]
        mode_for("numba")
        numba = sys.modules["pytensor.link.numba.cache"]
        print(json.dumps([pytensor.config.floatX, jax.config.jax_enable_x64, str(pytensor.config.compiledir),
                          jax.config.jax_compilation_cache_dir, jax_run_imported, str(numba.NUMBA_CACHE_PATH),
                          "gru4rec.ops.numba_dispatch" in sys.modules]))
    """, tmp_path, GRU4REC_CACHE=str(cache))
    floatx, x64, compiledir, jax_cache, jax_run_imported, numba_cache, numba_ops = got
    assert floatx == "float32" and x64 is False
    assert compiledir.startswith(str(cache / "pytensor") + os.sep)
    assert jax_cache == str(cache / "jax") and any((cache / "jax").iterdir())
    assert jax_run_imported == []
    assert numba_cache == str(cache / "pytensor" / "numba") and numba_ops


def test_a_second_process_compiles_nothing(tmp_path):
    """Every XLA program of training and evaluation comes from JAX's persistent cache in a
    second process, also the evaluation's small ones that compile in milliseconds."""
    code = """
        import collections, json
        import jax.monitoring
        from gru4rec import GRU4Rec
        from gru4rec.synthetic import generate
        events = collections.Counter()
        jax.monitoring.register_event_listener(lambda event, **kw: events.update([event.rsplit("/", 1)[-1]]))
        train, test = generate(n_sessions=400, n_items=100, seed=1)
        model = GRU4Rec(layers=[8], n_epochs=1, batch_size=8, n_sample=16)
        model.fit(train)
        model.evaluate(test, cut_off=[5])
        print(json.dumps([events["compile_requests_use_cache"], events["cache_hits"]]))
    """
    env = dict(GRU4REC_CACHE=str(tmp_path / "cache"))
    requests, hits = python(code, tmp_path, **env)
    assert requests > 1 and hits == 0  # the first process compiles them all
    assert python(code, tmp_path, **env) == [requests, requests]


def test_users_compiledir_is_kept(tmp_path):
    got = python("""
        import json
        import pytensor
        from gru4rec.backend import configure
        configure()
        print(json.dumps(str(pytensor.config.base_compiledir)))
    """, tmp_path, GRU4REC_CACHE=str(tmp_path / "cache"), PYTENSOR_FLAGS=f"base_compiledir={tmp_path / 'mine'}")
    assert got == str(tmp_path / "mine")


@pytest.mark.slow
def test_model_arrays_stay_on_the_models_device(tmp_path):
    """With two (host) devices, a model for 'cpu' trains, evaluates and recommends on the
    first one even while JAX's default device is the second: nothing goes through, or
    changes, the process-wide default."""
    got = python("""
        import json
        import jax
        from gru4rec import GRU4Rec
        from gru4rec.synthetic import generate
        train, test = generate(n_sessions=400, n_items=100, seed=1)
        first, second = jax.devices("cpu")
        with jax.default_device(second):
            model = GRU4Rec(layers=[8], n_epochs=1, batch_size=8, n_sample=16)
            model.fit(train)
            model.evaluate(test)
            model.recommend([train.ItemId.iloc[0]])
        where = {str(d) for v in model.net.W.values() for d in v.get_value(borrow=True).devices()}
        print(json.dumps([sorted(where), str(first), jax.config.jax_default_device]))
    """, tmp_path, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    where, first, default = got
    assert where == [first] and default is None
