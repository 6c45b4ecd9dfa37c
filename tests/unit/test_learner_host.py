"""``LearnerHost``, the Ray-free learner side, in this process: the off-policy slice holds the rate
limiter's ratio and counts weight versions as the driver did; the on-policy update reports what
the driver counts. No Ray, no Redis."""

from __future__ import annotations

import numpy as np
import pytest

from tandem.core.types import Batch
from tandem.learners.tabular import QLearnConfig
from tandem.runner.envs import env_spaces
from tandem.runner.learner_host import LearnerHost, LocalLearner, ReplayPlan


def plan(**kw) -> ReplayPlan:
    base = dict(
        url="memory",
        name="t",
        capacity=10_000,
        prioritized=False,
        alpha=0.6,
        beta=0.4,
        seed=0,
        batch_size=32,
        min_size=100,
        samples_per_insert=4.0,
        error_buffer=64.0,
        publish_every=3,
    )
    return ReplayPlan(**{**base, **kw})


def frozenlake_batch(n: int, rng: np.random.Generator) -> Batch:
    return Batch(
        obs=rng.integers(0, 16, n).astype(np.int64),
        actions=rng.integers(0, 4, n).astype(np.int64),
        rewards=np.zeros(n, np.float32),
        next_obs=rng.integers(0, 16, n).astype(np.int64),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
    )


def host(**kw) -> LearnerHost:
    obs, act = env_spaces("FrozenLake-v1", {})
    return LearnerHost.build("qlearn", obs, act, QLearnConfig(), replay=plan(**kw))


def test_a_slice_learns_up_to_the_ratio_and_counts_weight_versions():
    h = host()
    rng = np.random.default_rng(0)
    h.add([frozenlake_batch(60, rng)])
    step = h.learn(inserted=60, progress=0.0, budget_s=30)
    assert step.updates == 0 and step.replay_short, "no update before min_size"
    h.add([frozenlake_batch(140, rng)])
    step = h.learn(inserted=200, progress=0.1, budget_s=30)
    # sampled may reach spi * (inserted - min_size) + error_buffer = 4 * 100 + 64 = 464:
    # 14 batches of 32 (448), the 15th would pass it.
    assert step.updates == 14 and step.samples_trained == 14 * 32 and not step.replay_short
    assert step.version_bumps == 14 // 3 and step.weights is None
    again = h.learn(inserted=200, progress=0.1, budget_s=30)
    assert again.updates == 0, "the limiter holds the learner until more is inserted"
    more = h.learn(inserted=210, progress=0.1, budget_s=30)  # 40 more samples allowed: one batch
    assert more.updates == 1
    # 15 updates so far: the 15th crossed the 5th boundary of 3.
    assert more.version_bumps == 1
    stats = h.replay_stats()
    assert stats["replay_size"] == 200 and stats["replay/sampled"] == 15 * 32


def test_a_resumed_plan_continues_the_ratio_and_the_publish_schedule():
    h = host(inserted=200, sampled=448, grad_updates=14)
    rng = np.random.default_rng(1)
    h.add([frozenlake_batch(200, rng)])
    step = h.learn(inserted=210, progress=0.5, budget_s=30)
    assert step.updates == 1 and step.version_bumps == 1


def test_the_local_service_runs_a_slice_when_polled_and_is_the_learner_itself():
    h = host()
    svc = LocalLearner(h)
    svc.add(frozenlake_batch(200, np.random.default_rng(2)))
    handle = svc.learn(200, 0.0, budget_s=30.0)
    assert h.limiter.sampled == 0, "nothing runs before the poll"
    step = svc.poll(handle, timeout=0)
    assert step.updates == 14
    svc.sync_to(h.learner)  # a no-op: the service runs that very learner
    other = host().learner
    svc.sync_to(other)
    for k, v in h.learner.state_dict().items():
        np.testing.assert_array_equal(np.asarray(other.state_dict()[k]), np.asarray(v))


@pytest.mark.parametrize("bad", [{"GPU": "one"}, {"GPU": -1}])
def test_actor_mode_with_the_local_backend_is_a_one_line_error(bad):
    from tandem.cli import main

    assert (
        main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--backend", "local", "--learner", "actor"])
        == 2
    )
    with pytest.raises(SystemExit):
        main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--learner-resources", str(bad)])
