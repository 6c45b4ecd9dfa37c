"""Two rollout workers on a real local Ray, one killed mid-run while training continues."""

import os
import signal
import time

import numpy as np
import pytest
import ray

from tandem.cluster.group import RayWorkerGroup, init_ray
from tandem.core.protocols import WorkerLost
from tandem.core.types import concat_rollouts
from tandem.learners.ppo import PPOConfig

pytestmark = pytest.mark.integration


def test_init_ray_rejects_an_unreachable_address():
    from tandem.core.errors import TandemError

    with pytest.raises(TandemError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        init_ray("127.0.0.1:1")


def test_two_workers_collect_and_survive_a_killed_worker(local_ray):
    group = RayWorkerGroup(
        2, env_id="CartPole-v1", num_envs=2, algo="ppo", algo_config=PPOConfig(hidden=(8,)), seed=0
    )
    weights = group.publish(_policy_weights())
    first = group.call_all("sample", 8, weights, 1)
    assert len(first) == 2 and concat_rollouts(first).obs.shape == (8, 4, 4)
    assert {r.worker_index for r in first} == {0, 1}

    # Kill worker 1's process the way a crash or an OOM kill would.
    pid = ray.get(group.actors[1].__ray_call__.remote(lambda self: os.getpid()))
    os.kill(pid, signal.SIGKILL)
    # The asynchronous API reports the death as WorkerLost; the driver parks the worker.
    handle = group.submit(1, "sample", 8, weights, 1)
    assert group.wait([handle], timeout=60) == [handle]
    with pytest.raises(WorkerLost, match="worker 1 died"):
        group.result(handle)
    group.park(1, WorkerLost(1, "test"))

    collected = 0
    saw_partial = False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rollouts = group.call_all("sample", 8, weights, 1)
        assert rollouts, "the driver must keep collecting from the surviving worker"
        collected += sum(r.num_steps for r in rollouts)
        saw_partial |= len(rollouts) == 1
        if saw_partial and len(group.alive) == 2 and len(rollouts) == 2:
            break
    assert saw_partial, "the killed worker should have been skipped while it restarted"
    assert len(group.alive) == 2, "Ray should have restarted the killed worker"
    assert group.restarts == 1
    assert collected > 0
    group.shutdown()


def _policy_weights():
    import gymnasium as gym

    from tandem.agents.actor_critic import ActorCritic

    env = gym.make("CartPole-v1")
    return ActorCritic(env.observation_space, env.action_space, (8,)).get_weights()


def test_weights_are_one_object_shared_by_all_workers(local_ray):
    group = RayWorkerGroup(
        2, env_id="CartPole-v1", num_envs=1, algo="ppo", algo_config=PPOConfig(hidden=(8,)), seed=1
    )
    w = _policy_weights()
    w = {k: np.full_like(v, 0.01) for k, v in w.items()}
    ref = ray.put(w)
    rollouts = group.call_all("sample", 2, ref, 5)
    assert all(r.policy_version == 5 for r in rollouts)
    got = ray.get([a.__ray_call__.remote(lambda self: self.policy.get_weights()) for a in group.actors])
    for g in got:
        for k in w:
            np.testing.assert_array_equal(g[k], w[k])
    group.shutdown()


def test_a_second_group_waits_for_the_cpus_instead_of_deadlocking(local_ray):
    """Two runs on a cluster too small for both: the second takes all its CPUs or none.

    Placing actors one at a time let each of two runs hold one of the two CPUs and wait
    forever for the other one (the start-up hang of two drivers in one process).
    """
    import threading

    kwargs = dict(env_id="CartPole-v1", num_envs=1, algo="ppo", algo_config=PPOConfig(hidden=(8,)), seed=2)
    first = RayWorkerGroup(2, **kwargs)
    second: list[RayWorkerGroup] = []
    t = threading.Thread(target=lambda: second.append(RayWorkerGroup(2, **kwargs)), daemon=True)
    t.start()
    t.join(timeout=5)
    assert t.is_alive(), "the second group cannot have its CPUs while the first holds them"
    assert first.call_all("sample", 2, ray.put(_policy_weights()), 0), "the first group must still work"
    first.shutdown()
    t.join(timeout=120)
    assert second, "the second group should start once the first one released its CPUs"
    assert len(second[0].call_all("sample", 2, ray.put(_policy_weights()), 0)) == 2
    second[0].shutdown()


def test_a_cluster_that_cannot_place_the_workers_fails_with_one_line(local_ray):
    from tandem.core.errors import TandemError

    kwargs = dict(env_id="CartPole-v1", num_envs=1, algo="ppo", algo_config=PPOConfig(hidden=(8,)), seed=3)
    first = RayWorkerGroup(2, **kwargs)
    try:
        with pytest.raises(TandemError, match=r"could not reserve 2 x 1.00 CPUs .* lower --workers"):
            RayWorkerGroup(2, start_timeout_s=12, **kwargs)
    finally:
        first.shutdown()


def test_small_weights_travel_in_the_call_and_large_ones_as_one_stored_object(local_ray):
    group = RayWorkerGroup(
        1, env_id="CartPole-v1", num_envs=1, algo="ppo", algo_config=PPOConfig(hidden=(8,)), seed=0
    )
    small = _policy_weights()
    assert group.publish(small) is small  # inlined by Ray: no store fetch per call
    large = {"w": np.zeros((256, 256), np.float32), "b": np.zeros(256, np.float32)}  # 257 KB
    ref = group.publish(large)
    assert isinstance(ref, ray.ObjectRef)
    np.testing.assert_array_equal(ray.get(ref)["w"], large["w"])
    # both forms reach the worker: it loads the small ones and samples with them
    assert group.call_all("sample", 4, small, 1)[0].obs.shape == (4, 1, 4)
    group.shutdown()
