"""Short single-process learning checks: vector env -> policy -> numpy replay -> learner.

No Ray, no Redis: :func:`train_offpolicy` is the off-policy driver reduced to a plain loop
(same-step autoreset, a numpy ring buffer, the ``samples_per_insert`` replay ratio counted
from ``min_size``, weights published every ``weights_publish_interval`` updates), so that
each algorithm's defaults can be checked to learn at all.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.core.types import Batch, Rollout
from tandem.learners.registry import get_algo


class NumpyReplay:
    """A uniform ring buffer over the arrays of :meth:`Batch.arrays`."""

    def __init__(self, capacity: int, seed: int = 0):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.store: dict[str, np.ndarray] | None = None
        self.rng = np.random.default_rng(seed)

    def add(self, batch: Batch) -> None:
        arrays = batch.arrays()
        if self.store is None:
            self.store = {k: np.zeros((self.capacity, *v.shape[1:]), v.dtype) for k, v in arrays.items()}
        idx = (self.pos + np.arange(len(batch))) % self.capacity
        for k, v in arrays.items():
            self.store[k][idx] = v
        self.pos = int((self.pos + len(batch)) % self.capacity)
        self.size = min(self.capacity, self.size + len(batch))

    def sample(self, n: int) -> Batch:
        idx = self.rng.integers(0, self.size, size=n)
        return Batch.from_arrays({k: v[idx] for k, v in self.store.items()}, indices=idx)

    def __len__(self) -> int:
        return self.size


@dataclass
class RunResult:
    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    updates: int = 0
    seconds: float = 0.0
    last_metrics: dict[str, float] = field(default_factory=dict)

    def mean_return(self, last: int) -> float:
        return float(np.mean(self.episode_returns[-last:]))


def train_offpolicy(
    env_id: str,
    algo: str,
    total_steps: int,
    *,
    num_envs: int = 4,
    fragment_length: int | None = None,
    seed: int = 0,
    env_kwargs: dict | None = None,
    log_every: int = 0,
    **overrides,
) -> tuple[RunResult, object, object]:
    """Train ``algo`` on ``env_id`` for ``total_steps`` env steps; returns (result, learner, policy)."""
    torch.manual_seed(seed)
    spec = get_algo(algo)
    envs = gym.make_vec(
        env_id,
        num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **(env_kwargs or {}),
    )
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    preset = spec.preset(obs_space, act_space, env_id) if spec.preset else {}
    cfg = replace(spec.config_cls(), **{**preset, **overrides})  # like the CLI: preset, then overrides
    fragment_length = fragment_length or cfg.fragment_length
    assert spec.check_spaces(obs_space, act_space) is None
    policy = spec.make_policy(obs_space, act_space, cfg, worker_index=0, num_workers=1)
    learner = spec.make_learner(obs_space, act_space, cfg)
    policy.set_weights(learner.get_weights(), 0)
    replay = NumpyReplay(cfg.replay_capacity, seed)
    to_replay = spec.to_replay or (lambda rollout, _cfg: rollout.to_batch())

    res, t0 = RunResult(), time.perf_counter()
    obs, _ = envs.reset(seed=seed)
    ep_ret, steps, inserted_after_min = np.zeros(num_envs), 0, 0
    while steps < total_steps:
        for obj in (policy, learner):
            if hasattr(obj, "set_progress"):
                obj.set_progress(steps / total_steps)
        cols: dict[str, list] = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "term", "trunc")}
        for _ in range(fragment_length):
            actions, _ = policy.act(obs, explore=True)
            next_obs, rewards, term, trunc, info = envs.step(actions)
            real_next = np.array(next_obs, copy=True)
            done = term | trunc
            if done.any():
                real_next[done] = np.stack([info["final_obs"][i] for i in np.flatnonzero(done)])
            for k, v in zip(cols, (obs, actions, rewards, real_next, term, trunc), strict=True):
                cols[k].append(np.asarray(v))
            ep_ret += rewards
            steps += num_envs
            for i in np.flatnonzero(done):
                res.episode_returns.append(float(ep_ret[i]))
                res.episode_end_steps.append(steps)
                ep_ret[i] = 0.0
            obs = next_obs
        rollout = Rollout(
            obs=np.stack(cols["obs"]),
            actions=np.stack(cols["actions"]),
            rewards=np.stack(cols["rewards"]).astype(np.float32),
            next_obs=np.stack(cols["next_obs"]),
            terminated=np.stack(cols["term"]),
            truncated=np.stack(cols["trunc"]),
            extras={},
            episode_returns=np.zeros(0),
            episode_lengths=np.zeros(0),
            policy_version=res.updates,
        )
        batch = to_replay(rollout, cfg)
        replay.add(batch)
        if len(replay) < cfg.min_size:
            continue
        inserted_after_min += len(batch)
        due = int(inserted_after_min * cfg.samples_per_insert / cfg.batch_size) - res.updates
        for _ in range(due):
            res.last_metrics = learner.update(replay.sample(cfg.batch_size))
            res.updates += 1
            if res.updates % cfg.weights_publish_interval == 0:
                policy.set_weights(learner.get_weights(), res.updates)
        if log_every and steps % log_every < num_envs * fragment_length and res.episode_returns:
            print(
                f"{steps:>7} steps  {time.perf_counter() - t0:6.1f}s  updates {res.updates:>6}  "
                f"return(last 10) {res.mean_return(10):9.2f}  {res.last_metrics}",
                flush=True,
            )
    envs.close()
    res.seconds = time.perf_counter() - t0
    return res, learner, policy


def greedy_success_rate(env_id: str, policy, episodes: int, seed: int = 123, **env_kwargs) -> float:
    """Mean return of the greedy policy (the success rate for FrozenLake)."""
    env = gym.make(env_id, **env_kwargs)
    total = 0.0
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            action, _ = policy.act(np.array([obs]), explore=False)
            obs, r, term, trunc, _ = env.step(int(action[0]))
            total += r
            done = term or trunc
    return total / episodes


# ----------------------------------------------------------------------------- tests

slow = pytest.mark.skipif(
    not os.environ.get("TANDEM_SLOW_TESTS"), reason="minutes of CPU: set TANDEM_SLOW_TESTS=1"
)


def test_qlearn_solves_frozenlake_not_slippery():
    res, learner, policy = train_offpolicy(
        "FrozenLake-v1", "qlearn", 20_000, env_kwargs={"is_slippery": False}, samples_per_insert=16
    )
    assert greedy_success_rate("FrozenLake-v1", policy, 5, is_slippery=False) == 1.0
    assert res.mean_return(50) > 0.8


@pytest.mark.timeout(180)
def test_dqn_cartpole_beats_random():
    """Random CartPole returns ~22; with the defaults DQN is near 200 after 10k steps."""
    torch.set_num_threads(1)
    res, _, _ = train_offpolicy("CartPole-v1", "dqn", 12_000, num_envs=4, seed=1)
    assert res.mean_return(20) > 100, res.episode_returns[-20:]


@slow
def test_qlearn_frozenlake_slippery_near_optimal():
    """The benchmark task: success rate 0.74 is optimal with the 100-step limit."""
    res, _, policy = train_offpolicy("FrozenLake-v1", "qlearn", 200_000)
    assert res.mean_return(1000) > 0.7
    assert greedy_success_rate("FrozenLake-v1", policy, 1000) > 0.7


@slow
def test_sac_pendulum_learns():
    torch.set_num_threads(1)
    res, _, _ = train_offpolicy("Pendulum-v1", "sac", 12_000, num_envs=2)
    assert res.mean_return(10) > -300, res.episode_returns[-10:]
