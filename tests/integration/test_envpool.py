"""EnvPool as the workers' vector env: the same dynamics, observations, rewards, terminations and
time limits as Gymnasium's, and Gymnasium's same-step autoreset (what ``vector_env=auto`` relies on)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from tandem.runner.envpool_env import ENVPOOL_AUTO, EnvPoolVectorEnv, envpool_installed
from tandem.runner.envs import make_vector_env

pytestmark = pytest.mark.skipif(not envpool_installed(), reason="no EnvPool: tandem-rl[envpool]")

# MuJoCo locomotion observations leave out the root's x position (HalfCheetah, Hopper, Swimmer:
# the first qpos entry; Swimmer also y), and the dynamics do not depend on it: a Gymnasium env set
# to the state that EnvPool's observation gives must produce EnvPool's next observation.
ROOT_SKIPPED = {"HalfCheetah-v5": 1, "Hopper-v5": 1, "Swimmer-v5": 2}


def gym_from_obs(env: gym.Env, env_id: str, obs: np.ndarray) -> None:
    """Put Gymnasium's env in the state of EnvPool's observation ``obs``."""
    u = env.unwrapped
    if env_id == "CartPole-v1":
        u.state = obs.astype(np.float64)
        u.steps_beyond_terminated = None  # a fresh state: its terminal step still pays 1
        return
    skip = ROOT_SKIPPED[env_id]
    nq = u.model.nq
    u.set_state(np.concatenate([np.zeros(skip), obs[: nq - skip]]), obs[nq - skip : nq - skip + u.model.nv])


@pytest.mark.parametrize("env_id", ["CartPole-v1", *sorted(ENVPOOL_AUTO)])
def test_transitions_match_gymnasium(env_id):
    assert env_id == "CartPole-v1" or env_id in ROOT_SKIPPED  # every auto env is checked here
    rng = np.random.default_rng(0)
    pool = EnvPoolVectorEnv(env_id, 1)
    ref = gym.make(env_id)
    ref.reset(seed=0)
    obs, _ = pool.reset(seed=[3])
    space = pool.single_action_space
    worst_obs = worst_rew = 0.0
    ends = 0
    for _ in range(400):
        a = space.sample() if isinstance(space, gym.spaces.Discrete) else rng.uniform(space.low, space.high)
        gym_from_obs(ref, env_id, obs[0])
        g_obs, g_rew, g_term, _, _ = ref.unwrapped.step(a)
        nxt, rew, term, trunc, info = pool.step(np.asarray([a]))
        assert bool(term[0]) == bool(g_term)
        last = info["final_obs"][0] if term[0] or trunc[0] else nxt[0]
        worst_obs = max(worst_obs, float(np.abs(np.asarray(g_obs) - last).max()))
        worst_rew = max(worst_rew, abs(float(g_rew) - float(rew[0])))
        ends += int(term[0] or trunc[0])
        obs = nxt
    assert worst_obs < 1e-5, f"{env_id}: observations differ by {worst_obs}"
    assert worst_rew < 1e-5, f"{env_id}: rewards differ by {worst_rew}"
    if env_id in ("CartPole-v1", "Hopper-v5"):
        assert ends > 0  # random actions end episodes: termination was compared, not only skipped
    pool.close()


@pytest.mark.parametrize("env_id, limit", [("CartPole-v1", 500), ("HalfCheetah-v5", 1000)])
def test_time_limit_truncates_like_gymnasium(env_id, limit):
    pool = EnvPoolVectorEnv(env_id, 2)
    obs, _ = pool.reset(seed=[0, 1])
    spec_limit = gym.spec(env_id).max_episode_steps
    assert spec_limit == limit
    for t in range(1, limit + 1):
        if env_id == "CartPole-v1":  # balance: push toward the pole's lean
            a = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
        else:
            a = np.zeros((2, 6))
        obs, _, term, trunc, _ = pool.step(a)
        assert not term.any()
        assert trunc.all() == (t == limit), t
    pool.close()


def test_same_step_autoreset_like_gymnasium():
    """A finished sub-env comes back reset in the step that ended it: its last observation is in
    info["final_obs"], the returned one starts a new episode, and no step is a dead reset step."""
    pool = EnvPoolVectorEnv("CartPole-v1", 4)
    pool.reset(seed=[0, 1, 2, 3])
    resets = 0
    for _ in range(300):
        nxt, rew, term, trunc, info = pool.step(np.zeros(4, np.int64))  # always left: short episodes
        assert (rew == 1.0).all()  # every step a real transition (next-step mode would give 0s)
        done = term | trunc
        for i in np.flatnonzero(done):
            final = info["final_obs"][i]
            assert abs(final[0]) > 2.4 or abs(final[2]) > 12 * 2 * np.pi / 360  # the terminal state
            assert np.abs(nxt[i]).max() <= 0.05  # CartPole's reset distribution
            resets += 1
    assert resets > 10
    pool.close()


def test_seeds_reproduce_and_differ():
    a, b, c = (EnvPoolVectorEnv("HalfCheetah-v5", 2) for _ in range(3))
    oa, _ = a.reset(seed=[5, 6])
    ob, _ = b.reset(seed=[5, 6])
    oc, _ = c.reset(seed=[7, 8])
    assert np.array_equal(oa, ob) and not np.array_equal(oa, oc)
    assert not np.array_equal(oa[0], oa[1])
    for env in (a, b, c):
        env.close()


def test_auto_gives_workers_envpool_where_it_was_faster_and_gymnasium_elsewhere():
    for env_id, n, cls in (
        ("Hopper-v5", 4, EnvPoolVectorEnv),
        ("HalfCheetah-v5", 8, EnvPoolVectorEnv),
        ("HalfCheetah-v5", 4, gym.vector.SyncVectorEnv),
        ("CartPole-v1", 4, gym.vector.SyncVectorEnv),
    ):
        env = make_vector_env(env_id, n, None, "auto")
        assert isinstance(env, cls), (env_id, n)
        env.close()


def test_a_worker_samples_through_envpool():
    from tandem.learners.registry import get_algo
    from tandem.runner.envs import env_spaces
    from tandem.runner.session import resolve_config
    from tandem.runner.worker import RolloutWorker

    _, cfg, _ = resolve_config("ppo", "Hopper-v5")
    worker = RolloutWorker("Hopper-v5", 3, "ppo", cfg, seed=1, vector_env="envpool")
    assert isinstance(worker.env, EnvPoolVectorEnv)
    weights = get_algo("ppo").make_learner(*env_spaces("Hopper-v5"), cfg).get_weights()
    ro = worker.sample(200, weights, 1)
    assert ro.obs.shape == (200, 3, 11) and ro.actions.shape == (200, 3, 3)
    assert len(ro.episode_returns) > 0  # Hopper falls under a random policy: episodes ended and reset
    # on an episode's last step next_obs is the terminal state, not the reset one
    t, i = np.argwhere(ro.terminated[:-1] | ro.truncated[:-1])[0]
    assert not np.array_equal(ro.next_obs[t, i], ro.obs[t + 1, i])
    worker.close()
