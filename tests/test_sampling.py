"""The sample store (spec 5): its distribution, its regeneration, and the table search that
must give exactly what a binary search of the CDF gives."""
import threading
import time

import numpy as np
import pytest

from gru4rec.sampling import BUCKETS, CHUNK, InverseCdf, SampleStore


def _cdf(pop, alpha):
    w = np.asarray(pop, np.float64) ** alpha
    cdf = np.cumsum(w) / w.sum()
    cdf[-1] = 1.0
    return cdf


def _edge_uniforms(cdf):
    """Uniforms where a table could go wrong: 0, the buckets' edges and the floats beside
    them, every CDF entry and the floats beside it, the largest float below 1."""
    edges = np.arange(BUCKETS) / BUCKETS
    points = np.concatenate([edges, cdf[:-1]])
    u = np.concatenate([points, np.nextafter(points, 0), np.nextafter(points, 1), [0.0, np.nextafter(1.0, 0)]])
    return u[(u >= 0) & (u < 1)]


@pytest.mark.parametrize("n_items,alpha", [(5, 0.5), (3_000, 0.75), (200_000, 0.4), (200_000, 1.0)])
def test_inverse_cdf_equals_binary_search(n_items, alpha):
    rng = np.random.default_rng(n_items)
    pop = np.floor(rng.pareto(1.0, n_items) + 1)
    pop[rng.integers(0, n_items, max(1, n_items // 100))] = 0  # zero-weight items: never drawn
    cdf = _cdf(pop, alpha)
    inverse = InverseCdf(cdf)
    for u in (_edge_uniforms(cdf), rng.random(2_000_000)):
        np.testing.assert_array_equal(inverse(u), np.searchsorted(cdf, u, side="right"))
    # the big catalogues exercise both paths: table hits and searched buckets
    if n_items > BUCKETS // 100:
        assert 0.01 < np.mean(inverse.table < 0) < 0.99


def test_store_draws_the_stream_of_one_binary_search():
    """Drawn CHUNK uniforms at a time, a block equals searching one draw of all of them."""
    pop = np.arange(1, 1001)
    store = SampleStore(pop, 1000, 0.75, store_size=2 * CHUNK + 7000, steps_per_call=4, rng=np.random.default_rng(3))
    n = store.n_rows * 1000
    assert n > 2 * CHUNK
    expected = np.searchsorted(_cdf(pop, 0.75), np.random.default_rng(3).random(n), side="right")
    np.testing.assert_array_equal(store.block.ravel(), expected)
    assert store.block.dtype == np.int32 and store.block.shape == (store.n_rows, 1000)


def test_sample_store_distribution_and_regeneration():
    pop = np.array([1, 0, 4, 9, 16], np.float32)  # item 1 has zero weight: never drawn
    store = SampleStore(pop, 1000, 0.5, store_size=20000, steps_per_call=8, rng=np.random.default_rng(0))
    assert store.n_rows == 20
    freq = np.bincount(store.block.ravel(), minlength=5) / store.block.size
    w = pop ** 0.5
    np.testing.assert_allclose(freq, w / w.sum(), atol=0.01)
    assert freq[1] == 0
    offsets = [store.take() for _ in range(3)]
    assert [o for o, _ in offsets] == [0, 8, 0] and offsets[2][1] is not None  # 16 + 8 > 20: new block
    uniform = SampleStore(pop, 1000, 0.0, 20000, 8, np.random.default_rng(0))
    assert np.bincount(uniform.block.ravel(), minlength=5)[1] > 0
    assert uniform.block.dtype == np.int32


def test_first_block_is_drawn_on_another_thread_and_the_stream_stays_in_order(monkeypatch):
    """The first block is drawn off the caller's thread (while the training graph compiles);
    a block drawn later waits for it, so the blocks follow the generator's stream in order even
    when the first one is slow and `take` is called before anyone asked for it."""
    caller, threads, generate = threading.get_ident(), [], SampleStore.generate

    def slow_off_the_caller(self):
        threads.append(threading.get_ident())
        if threads[-1] != caller:
            time.sleep(0.3)
        return generate(self)

    monkeypatch.setattr(SampleStore, "generate", slow_off_the_caller)
    pop = np.arange(1, 51)
    store = SampleStore(pop, 10, 0.5, store_size=40, steps_per_call=2, rng=np.random.default_rng(7))
    later = [block for _, block in (store.take() for _ in range(5)) if block is not None]
    blocks = np.stack([store.block, *later])
    assert threads[0] != caller and threads[1:] == [caller, caller]
    u = np.random.default_rng(7).random(blocks.size)
    np.testing.assert_array_equal(blocks.ravel(), np.searchsorted(_cdf(pop, 0.5), u, side="right"))
