"""RateLimiter: min_size warm-up and a samples-per-insert ratio, Reverb style."""

import pytest

from tandem.replay.limiter import RateLimiter


def test_min_size_only():
    lim = RateLimiter(min_size=100)
    assert not lim.can_sample(1)
    lim.record_insert(99)
    assert not lim.can_sample(1)
    lim.record_insert(1)
    assert lim.can_sample(10_000)
    assert lim.can_insert(10**9)


def test_ratio_is_held_after_warmup():
    spi, batch = 8.0, 32
    lim = RateLimiter(min_size=1000, samples_per_insert=spi, error_buffer=2 * batch)
    # simulate: actors insert 4 per step; learner samples whenever allowed
    for _ in range(5000):
        lim.record_insert(4)
        while lim.can_sample(batch):
            lim.record_sample(batch)
    target = spi * (lim.inserted - lim.min_size)
    assert abs(lim.sampled - target) <= 2 * batch + batch
    assert lim.stats()["limiter/ratio"] == pytest.approx(spi, rel=0.01)


def test_can_insert_blocks_actors_that_run_ahead():
    lim = RateLimiter(min_size=10, samples_per_insert=2.0, error_buffer=20)
    lim.record_insert(10)
    assert lim.can_insert(10)  # diff 40 <= offset 20 + 20
    lim.record_insert(10)
    assert not lim.can_insert(1)  # diff 40 + 2 > 40
    lim.record_sample(10)
    assert lim.can_insert(5)


def test_observe_inserted_is_monotonic():
    lim = RateLimiter(min_size=5)
    lim.observe_inserted(7)
    lim.observe_inserted(3)
    assert lim.inserted == 7


def test_bad_arguments():
    with pytest.raises(ValueError):
        RateLimiter(min_size=-1)
    with pytest.raises(ValueError):
        RateLimiter(samples_per_insert=0)
