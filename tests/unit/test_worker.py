"""Terminated, truncated and autoreset handling in the rollout worker (no Ray: the plain class)."""

import numpy as np
import pytest

from tandem.learners.ppo import PPOConfig
from tandem.runner.worker import RolloutWorker
from tests import fake_envs  # noqa: F401  (registers the fake envs)


def make_worker(env_id, n=2):
    return RolloutWorker(env_id, n, "ppo", PPOConfig(hidden=(8,)), seed=3)


def test_terminated_episodes_never_leak_reset_steps():
    w = make_worker("TandemTest/Terminating-v0")
    ro = w.sample(7)
    # Steps t=1,2,3 then a fresh episode: the reward sequence has no zero-reward reset step.
    np.testing.assert_array_equal(ro.rewards[:, 0], [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(ro.terminated[:, 0], [0, 0, 1, 0, 0, 1, 0])
    assert not ro.truncated.any()
    # next_obs at the end of an episode is the final observation (t=3), not the reset one.
    np.testing.assert_array_equal(ro.next_obs[2, 0], [3, 0])
    np.testing.assert_array_equal(ro.obs[3, 0], [0, 1])  # the next step starts from the reset obs
    np.testing.assert_array_equal(ro.episode_returns, [6, 6, 6, 6])
    np.testing.assert_array_equal(ro.episode_lengths, [3, 3, 3, 3])


def test_truncated_episodes_are_marked_truncated_with_final_obs():
    w = make_worker("TandemTest/Truncating-v0", n=1)
    ro = w.sample(9)
    np.testing.assert_array_equal(ro.truncated[:, 0], [0, 0, 0, 1, 0, 0, 0, 1, 0])
    assert not ro.terminated.any()
    np.testing.assert_array_equal(ro.next_obs[3, 0], [4, 0])
    np.testing.assert_array_equal(ro.rewards[:, 0], [1, 2, 3, 4, 1, 2, 3, 4, 1])


def test_episode_spanning_fragments_is_counted_once():
    w = make_worker("TandemTest/Truncating-v0", n=1)
    a, b = w.sample(3), w.sample(3)
    assert len(a.episode_returns) == 0
    np.testing.assert_array_equal(b.episode_returns, [10])
    np.testing.assert_array_equal(b.obs[0, 0], a.next_obs[-1, 0])


def test_sub_envs_get_distinct_seeds_and_shapes_are_time_major():
    w = RolloutWorker("CartPole-v1", 3, "ppo", PPOConfig(hidden=(8,)), seed=0)
    ro = w.sample(5)
    assert ro.obs.shape == (5, 3, 4) and ro.actions.shape == (5, 3) and ro.extras["logp"].shape == (5, 3)
    assert len({tuple(o) for o in ro.obs[0]}) == 3
    other = RolloutWorker("CartPole-v1", 3, "ppo", PPOConfig(hidden=(8,)), seed=0, worker_index=1)
    assert not np.allclose(other.sample(1).obs[0], ro.obs[0])


def test_weights_and_version_reach_the_policy():
    w = make_worker("TandemTest/Terminating-v0")
    weights = {k: np.zeros_like(v) for k, v in w.policy.get_weights().items()}
    ro = w.sample(2, weights, version=7)
    assert ro.policy_version == 7
    assert all(np.all(v == 0) for v in w.policy.get_weights().values())


def test_continuous_actions_are_clipped_for_the_env_but_stored_raw():
    w = RolloutWorker("Pendulum-v1", 1, "ppo", PPOConfig(hidden=(8,), init_log_std=2.0), seed=0)
    ro = w.sample(50)
    assert np.abs(ro.actions).max() > 2.0  # σ = e² makes raw samples exceed the ±2 bounds


@pytest.mark.parametrize("algo", ["pg", "ppo"])
def test_batch_flattening_keeps_extras(algo):
    from tandem.learners.registry import get_algo

    w = RolloutWorker("CartPole-v1", 2, algo, get_algo(algo).config_cls(hidden=(8,)), seed=0)
    b = w.sample(4).to_batch()
    assert len(b) == 8 and b.extras["logp"].shape == (8,)
