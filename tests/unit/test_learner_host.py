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
from tandem.runner.rundir import Counters


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


class OneLiveWorker:
    """A ``LocalWorkerGroup`` of two workers where only worker 0 lives (worker 1 was lost)."""

    def __init__(self, **kw):
        from tandem.runner.local import LocalWorkerGroup

        self.inner = LocalWorkerGroup(2, **kw)
        self.nominal = 2
        self.alive = [0]
        self.calls = []

    def maintain(self) -> None:
        pass

    def submit(self, i, method, *args):
        self.calls.append(i)
        return self.inner.submit(i, method, *args)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class ModelSamples:
    """A learner whose updates also trained on model-generated transitions (as Dyna's do)."""

    def __init__(self, learner, model: int):
        self.learner, self.model = learner, model

    def update(self, batch):
        from dataclasses import replace

        return replace(self.learner.update(batch), samples_model=self.model)

    def __getattr__(self, name):
        return getattr(self.learner, name)


def test_the_local_service_keeps_the_nominal_batch_and_counts_model_samples():
    """With one of two workers left, ``collect_and_update`` still trains on two fragments (the
    live worker collects both), and the step carries the learner's model samples."""
    from tandem.learners.registry import get_algo

    spec = get_algo("pg")
    cfg = spec.config_cls()
    cfg.fragment_length = 8
    obs, act = env_spaces("CartPole-v1", {})
    group = OneLiveWorker(env_id="CartPole-v1", num_envs=2, algo="pg", algo_config=cfg)
    service = LocalLearner(LearnerHost(ModelSamples(spec.make_learner(obs, act, cfg), 5)))
    weights = service.publish(group)
    step = service.collect_and_update(group, group.nominal, (cfg.fragment_length, weights, 0, 0.0), 0.0)
    assert group.calls == [0, 0]
    assert [r.worker_index for r in step.rollouts] == [0, 0]
    assert sum(r.env_steps for r in step.rollouts) == 2 * 2 * 8
    assert step.updates == 1 and step.samples_model == 5 and step.samples_trained > 0
    c = Counters()
    c.record_update(step)  # what the on-policy driver does with it
    assert (c.grad_updates, c.samples_trained, c.samples_model) == (
        step.grad_steps,
        step.samples_trained,
        5,
    )
