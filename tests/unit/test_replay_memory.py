"""InMemoryReplay and the local ring, without any service."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.core.types import Batch
from tandem.replay import InMemoryReplay, PrioritizedSampler, ReplayError, make_replay
from tandem.replay.schema import Schema


def make_batch(ids) -> Batch:
    ids = np.asarray(ids, np.int64)
    obs = np.repeat(ids[:, None].astype(np.float32), 3, axis=1)
    return Batch(
        obs=obs,
        actions=obs[:, :2].copy(),
        rewards=ids.astype(np.float32),
        next_obs=obs + 1,
        terminated=ids % 2 == 0,
        truncated=np.zeros(len(ids), bool),
        extras={"id": ids},
    )


@settings(max_examples=150, deadline=None)
@given(
    cap=st.integers(1, 40),
    ops=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5)), min_size=1, max_size=25),
    prioritized=st.booleans(),
)
def test_ring_matches_a_bounded_fifo_model(cap, ops, prioritized):
    r = InMemoryReplay(cap, prioritized=prioritized, seed=0)
    model: list[int] = []
    next_id, sampled = 0, 0
    for n, k in ops:
        n = min(n, cap)
        r.add(make_batch(range(next_id, next_id + n)))
        model = (model + list(range(next_id, next_id + n)))[-cap:]
        next_id += n
        rows, pos = r.live_rows()
        assert len(r) == len(model) <= cap
        assert (rows["id"].tolist() if rows else []) == model
        assert (pos.tolist() if rows else []) == model  # indices are insert positions
        if k and model:
            b = r.sample(k)
            sampled += k
            assert np.all(b.indices == b.extras["id"])
            assert set(b.indices.tolist()) <= set(model)
            if prioritized:
                r.update_priorities(b.indices, np.abs(np.sin(b.indices)) * 3)
                assert np.all(b.weights > 0) and np.all(b.weights <= 1.0 + 1e-6)
    s = r.stats()
    assert s["replay/inserted"] == next_id
    assert s["replay/sampled"] == sampled
    assert s["replay/evicted"] == next_id - len(model)
    assert sum(s["replay/uses_hist_live"]) == len(model)
    assert sum(s["replay/uses_hist_evicted"]) == next_id - len(model)


def test_schema_from_example_and_from_first_batch():
    r = InMemoryReplay(10)
    assert len(r) == 0 and r.stats()["replay/size"] == 0
    r.add(make_batch([1, 2]))
    assert r.schema == Schema.from_batch(make_batch([0]))
    r2 = InMemoryReplay(10, example=make_batch([0]))
    assert r2.schema == r.schema and len(r2) == 0


def test_uses_histogram_last_bin_collects_the_tail():
    r = InMemoryReplay(2, seed=0, uses_bins=3)
    r.add(make_batch([0, 1]))
    for _ in range(50):
        r.sample(2)
    hist = r.stats()["replay/uses_hist_live"]
    assert hist == [0, 0, 2]


def test_prioritized_sampler_stratified_weights():
    s = PrioritizedSampler(4, alpha=1.0, beta=1.0)
    s.on_insert(np.arange(4))
    s.update(np.arange(4), np.array([1.0, 1.0, 2.0, 4.0]) - 1e-6)
    slots, w = s.sample(np.random.default_rng(0), 8, 4)
    # 8 equal slices of mass 8: two hit slot 0, 3 and 1 ... stratified covers all in order
    assert slots.tolist() == [0, 1, 2, 2, 3, 3, 3, 3]
    np.testing.assert_allclose(w, [1, 1, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25], rtol=1e-5)


def test_concurrent_add_and_sample_stay_consistent():
    r = InMemoryReplay(500, seed=0)
    r.add(make_batch(range(100)))
    errors = []

    def writer():
        for i in range(100, 5000, 50):
            r.add(make_batch(range(i, i + 50)))

    def reader():
        try:
            for _ in range(300):
                b = r.sample(64)
                assert np.all(b.obs[:, 0] == b.extras["id"]) and np.all(b.indices == b.extras["id"])
        except AssertionError as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_make_replay_memory_and_bad_url():
    r = make_replay("memory", capacity=5, prioritized=True)
    assert isinstance(r, InMemoryReplay) and r.prioritized
    with pytest.raises(ReplayError, match="pass 'memory', a redis:// or rediss:// URL"):
        make_replay("http://nope", capacity=5)
    with pytest.raises(ReplayError, match="capacity must be >= 1"):
        InMemoryReplay(0)
