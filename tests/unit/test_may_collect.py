"""The off-policy driver's admission rule: the rate limiter's, except where it would deadlock."""

from __future__ import annotations

from tandem.replay import RateLimiter
from tandem.runner.off_policy import may_collect


def stuck_limiter() -> RateLimiter:
    """rwr's numbers (64 samples per insert, batches of 256, fragments of 32 transitions) with
    the limiter's slack between one insert and one batch: it refuses both."""
    lim = RateLimiter(min_size=1000, samples_per_insert=64, error_buffer=1024)
    lim.record_insert(1000 + 32 * 10)
    # (inserted · 64 - sampled) - 64 · min_size = -900: an insert of 32 needs it <= 1024 - 2048,
    # a batch of 256 needs it >= -1024 + 256; neither holds.
    lim.record_sample(320 * 64 + 900)
    assert not lim.can_insert(32) and not lim.can_sample(256)
    return lim


def test_the_limiter_decides_when_it_allows_the_insert():
    lim = RateLimiter(min_size=100, samples_per_insert=4)
    assert may_collect(lim, 32, 64, busy=5, replay_short=False)


def test_held_back_while_something_else_can_move():
    lim = stuck_limiter()
    assert not may_collect(lim, 32, 256, busy=1, replay_short=False)  # a call or slice in flight
    lim2 = RateLimiter(min_size=100, samples_per_insert=8, error_buffer=64)
    lim2.record_insert(200)
    assert not lim2.can_insert(32) and lim2.can_sample(32)
    assert not may_collect(lim2, 32, 32, busy=0, replay_short=False)  # the learner will sample


def test_one_call_goes_when_nothing_else_could():
    assert may_collect(stuck_limiter(), 32, 256, busy=0, replay_short=False)  # the slack window
    lim = RateLimiter(min_size=100, samples_per_insert=8, error_buffer=64)
    lim.record_insert(200)
    # the limiter would let the learner sample, but the replay holds < min_size rows (rwr)
    assert may_collect(lim, 32, 32, busy=0, replay_short=True)
