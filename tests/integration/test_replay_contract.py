"""One suite, every backend: InMemoryReplay and RedisReplay behave the same.

Backends: ``memory``; ``redis`` (mirror thread); ``redis-sync`` (no prefetch: each sample
pulls); ``redis-chunked`` (data strings of 3 rows, so every insert and read crosses chunk
edges). Rows carry an ``id`` extra equal to their insert number, so order is checkable.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tandem.replay.redis_scripts as redis_scripts
from tandem.core.types import Batch
from tandem.replay import InMemoryReplay, RedisReplay, ReplayError, SchemaMismatchError

BACKENDS = ["memory", "redis", "redis-sync", "redis-chunked"]


def make_batch(ids, obs_dim: int = 3) -> Batch:
    ids = np.asarray(ids, np.int64)
    obs = np.repeat(ids[:, None].astype(np.float32), obs_dim, axis=1)
    return Batch(
        obs=obs,
        actions=np.stack([ids, -ids], axis=1).astype(np.float32),
        rewards=ids.astype(np.float32) * 0.5,
        next_obs=obs + 1,
        terminated=ids % 2 == 0,
        truncated=ids % 3 == 0,
        extras={"id": ids},
    )


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def make(backend, request, monkeypatch):
    """``make(capacity, **kw)``: a fresh, empty buffer of the parametrized backend."""
    made = []
    if backend == "redis-chunked":
        monkeypatch.setattr(redis_scripts, "MAX_CHUNK_BYTES", 3 * 12)  # obs rows are 12 bytes
    url = request.getfixturevalue("redis_url") if backend != "memory" else None

    def _make(capacity, **kw):
        if backend == "memory":
            r = InMemoryReplay(capacity, **kw)
        else:
            r = RedisReplay(
                url, f"contract-{uuid.uuid4().hex[:12]}", capacity, prefetch=backend != "redis-sync", **kw
            )
        made.append(r)
        return r

    yield _make
    for r in made:
        if isinstance(r, RedisReplay):
            r.drop()
        r.close()


def ids_in(r) -> np.ndarray:
    rows, _ = r.live_rows()
    return rows["id"] if rows else np.zeros(0, np.int64)


def test_fifo_eviction_order_and_capacity(make):
    r = make(10)
    next_id = 0
    for n in [3, 4, 2, 5, 10, 1, 7, 9]:
        r.add(make_batch(range(next_id, next_id + n)))
        next_id += n
        assert len(r) == min(next_id, 10)
        assert ids_in(r).tolist() == list(range(max(0, next_id - 10), next_id))
    assert r.inserted == next_id


def test_sample_returns_a_batch_with_indices_and_weights(make):
    r = make(64, seed=0)
    r.add(make_batch(range(40)))
    b = r.sample(32)
    assert isinstance(b, Batch) and len(b) == 32
    assert b.obs.shape == (32, 3) and b.obs.dtype == np.float32
    assert b.actions.shape == (32, 2)
    assert b.terminated.dtype == bool and b.truncated.dtype == bool
    assert b.extras["id"].dtype == np.int64
    assert b.indices.dtype == np.int64 and b.indices.shape == (32,)
    assert b.weights.dtype == np.float32 and np.all(b.weights == 1.0)
    ids = b.extras["id"]
    # every row is one consistent transition
    assert np.all(b.obs[:, 0] == ids) and np.all(b.rewards == ids * 0.5)
    assert np.all(b.terminated == (ids % 2 == 0)) and np.all(b.truncated == (ids % 3 == 0))
    # indices name the sampled rows
    assert np.all(ids - b.indices == ids[0] - b.indices[0])


def test_empty_and_oversized(make):
    r = make(8)
    assert len(r) == 0
    with pytest.raises(ReplayError, match="empty replay buffer"):
        r.sample(4)
    with pytest.raises(ReplayError, match="exceeds the replay capacity 8"):
        r.add(make_batch(range(9)))


def test_schema_mismatch_writes_nothing(make):
    r = make(16)
    r.add(make_batch(range(4)))
    with pytest.raises(SchemaMismatchError, match="obs float32\\[3\\] != obs float32\\[5\\]"):
        r.add(make_batch(range(4, 8), obs_dim=5))
    bad = make_batch(range(4, 8))
    with pytest.raises(SchemaMismatchError, match="float64"):
        r.add(Batch.from_arrays({**bad.arrays(), "rewards": bad.rewards.astype(np.float64)}))
    assert len(r) == 4 and ids_in(r).tolist() == [0, 1, 2, 3]


def test_uniform_sampling_chi_square(make, chi2_critical):
    cap = 50
    r = make(cap, seed=1)
    r.add(make_batch(range(cap)))
    counts = np.zeros(cap)
    for _ in range(100):
        counts += np.bincount(r.sample(200).extras["id"], minlength=cap)
    expected = counts.sum() / cap
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < chi2_critical(cap - 1)
    assert counts.min() > 0


def test_prioritized_frequencies_and_weights_match_priorities(make, chi2_critical):
    cap, alpha, beta = 20, 0.7, 0.5
    r = make(cap, prioritized=True, alpha=alpha, beta=beta, seed=2)
    r.add(make_batch(range(cap)))
    _, idx = r.live_rows()
    pri = np.arange(1, cap + 1, dtype=np.float64)
    r.update_priorities(idx, pri)
    p = (pri + 1e-6) ** alpha
    prob = p / p.sum()
    counts = np.zeros(cap)
    for _ in range(100):
        b = r.sample(200)
        counts += np.bincount(b.extras["id"], minlength=cap)
        expect_w = (prob[b.extras["id"]] / prob.min()) ** (-beta)
        np.testing.assert_allclose(b.weights, expect_w, rtol=1e-5)
    expected = prob * counts.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < chi2_critical(cap - 1)
    assert np.all(np.abs(counts / counts.sum() - prob) < 0.01)


def test_new_transitions_get_max_priority_and_stale_updates_are_dropped(make):
    r = make(4, prioritized=True, alpha=1.0, seed=3)
    r.add(make_batch(range(4)))
    _, idx = r.live_rows()
    r.update_priorities(idx, [1.0, 1.0, 1.0, 9.0])
    r.add(make_batch([4, 5]))  # evicts ids 0, 1
    r.update_priorities(idx[:2], [100.0, 100.0])  # stale: must not touch ids 4, 5
    r.sample(1)  # let the mirror catch up
    tree = r._ring.sampler.tree
    _, live = r.live_rows()
    np.testing.assert_allclose(tree[live % 4], [1.0, 9.0, 9.0, 9.0], rtol=1e-5)
    r.beta = 1.0
    assert r.beta == 1.0 and r._ring.sampler.beta == 1.0


def test_update_priorities_rejects_nan(make):
    r = make(4, prioritized=True)
    r.add(make_batch(range(4)))
    b = r.sample(2)
    with pytest.raises(ReplayError, match="finite"):
        r.update_priorities(b.indices, [np.nan, 1.0])
    make(4).update_priorities(np.arange(2), [1.0, 2.0])  # uniform / empty: a no-op


def test_reuse_accounting(make):
    r = make(10, seed=4, uses_bins=8)
    r.add(make_batch(range(10)))
    for _ in range(30):
        r.sample(10)
    r.add(make_batch(range(10, 15)))  # evicts ids 0..4
    s = r.stats()
    assert s["replay/size"] == 10 and s["replay/inserted"] == 15 and s["replay/sampled"] == 300
    assert s["replay/evicted"] == 5
    live, ev = np.array(s["replay/uses_hist_live"]), np.array(s["replay/uses_hist_evicted"])
    assert len(live) == 8 and live.sum() == 10 and ev.sum() == 5
    assert live[0] == 5  # the five new ones
    total_uses = s["replay/uses_mean_live"] * 10 + s["replay/uses_mean_evicted"] * 5
    assert total_uses == pytest.approx(300)
    for key in ("replay/uses_mean_live", "replay/uses_mean_evicted"):
        assert isinstance(s[key], float)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cap=st.integers(1, 12),
    ops=st.lists(st.tuples(st.integers(1, 12), st.integers(0, 3)), min_size=1, max_size=12),
)
def test_ring_matches_a_simple_model(make, cap, ops):
    """Property: after any sequence of adds and samples, the ring equals a bounded FIFO model."""
    r = make(cap, seed=5)
    model: list[int] = []
    next_id = 0
    sampled = 0
    for n, k in ops:
        n = min(n, cap)
        r.add(make_batch(range(next_id, next_id + n)))
        model = (model + list(range(next_id, next_id + n)))[-cap:]
        next_id += n
        assert len(r) == len(model) <= cap
        assert ids_in(r).tolist() == model
        if k:
            b = r.sample(k)
            sampled += k
            assert set(b.extras["id"].tolist()) <= set(model)
            assert np.all(b.obs[:, 0] == b.extras["id"])
    s = r.stats()
    assert s["replay/inserted"] == next_id and s["replay/sampled"] == sampled
    assert sum(s["replay/uses_hist_live"]) == len(model)
    assert s["replay/evicted"] == next_id - len(model)
