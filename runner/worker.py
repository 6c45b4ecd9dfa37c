"""Rollout workers: a plain class, run in-process by ``runner.local`` (``--backend local``) and
wrapped by ``ray.remote`` in ``cluster.group`` only."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from tandem.core.types import Fragment, Rollout
from tandem.learners.registry import get_algo
from tandem.runner.envs import derive_seeds, make_vector_env


class RolloutWorker:
    """Steps a vector env of ``num_envs`` sub-envs with the latest policy.

    The env and the episode bookkeeping persist across calls, so an episode can span
    several fragments; the next fragment starts where the last one stopped.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        algo: str,
        algo_config: Any,
        seed: int = 0,
        worker_index: int = 0,
        num_workers: int = 1,
        env_kwargs: dict[str, Any] | None = None,
        replay: dict[str, Any] | None = None,
    ):
        import torch

        torch.set_num_threads(1)  # many workers share a node's cores; intra-op threads only contend
        seeds = derive_seeds(seed, worker_index, num_envs + 1)
        torch.manual_seed(seeds[-1])
        self.worker_index = worker_index
        self.env = make_vector_env(env_id, num_envs, env_kwargs)
        self.env.action_space.seed(seeds[-1])
        self.spec = get_algo(algo)
        self.cfg = algo_config
        self.policy = self.spec.make_policy(
            self.env.single_observation_space,
            self.env.single_action_space,
            algo_config,
            worker_index=worker_index,
            num_workers=num_workers,
        )
        self.version = 0
        act_space = self.env.single_action_space
        self._clip = (act_space.low, act_space.high) if isinstance(act_space, gym.spaces.Box) else None
        self.obs, _ = self.env.reset(seed=seeds[:num_envs])
        self._ep_ret = np.zeros(num_envs)
        self._ep_len = np.zeros(num_envs, dtype=np.int64)
        self.env_steps = 0
        self._replay = None
        if replay is not None:
            from tandem.replay import open_writer

            # A pure writer: no mirror thread, no local copy of the ring in the worker.
            self._replay = open_writer(replay, writer_index=worker_index)

    def ping(self) -> int:
        return self.worker_index

    def set_weights(self, weights: dict[str, np.ndarray] | None, version: int) -> None:
        if weights is not None and version != self.version:
            self.policy.set_weights(weights, version)
            self.version = version

    def sample(
        self,
        num_steps: int,
        weights: dict[str, np.ndarray] | None = None,
        version: int = 0,
        progress: float = 0.0,
        explore: bool = True,
    ) -> Rollout:
        """Step every sub-env ``num_steps`` times and return the [T, N] fragment."""
        self.set_weights(weights, version)
        self.policy.set_progress(progress)
        obs_l, act_l, rew_l, next_l, term_l, trunc_l = [], [], [], [], [], []
        extras_l: dict[str, list[np.ndarray]] = {}
        ep_returns: list[float] = []
        ep_lengths: list[int] = []
        for _ in range(num_steps):
            actions, extras = self.policy.act(self.obs, explore)
            env_actions = actions if self._clip is None else np.clip(actions, *self._clip)
            next_obs, rew, term, trunc, info = self.env.step(env_actions)
            done = term | trunc
            real_next = next_obs
            if done.any():
                # Same-step autoreset: next_obs is already the reset observation for finished
                # sub-envs; the true s_{t+1} (needed to bootstrap a truncation) is in info.
                real_next = next_obs.copy()
                for i in np.flatnonzero(done):
                    real_next[i] = info["final_obs"][i]
            self._ep_ret += rew
            self._ep_len += 1
            for i in np.flatnonzero(done):
                ep_returns.append(float(self._ep_ret[i]))
                ep_lengths.append(int(self._ep_len[i]))
                self._ep_ret[i] = 0.0
                self._ep_len[i] = 0
            obs_l.append(self.obs)
            act_l.append(actions)
            rew_l.append(rew.astype(np.float32))
            next_l.append(real_next)
            term_l.append(term)
            trunc_l.append(trunc)
            for k, v in extras.items():
                extras_l.setdefault(k, []).append(v)
            self.obs = next_obs
        self.env_steps += num_steps * self.env.num_envs
        return Rollout(
            obs=np.stack(obs_l),
            actions=np.stack(act_l),
            rewards=np.stack(rew_l),
            next_obs=np.stack(next_l),
            terminated=np.stack(term_l),
            truncated=np.stack(trunc_l),
            extras={k: np.stack(v) for k, v in extras_l.items()},
            episode_returns=np.asarray(ep_returns, dtype=np.float64),
            episode_lengths=np.asarray(ep_lengths, dtype=np.int64),
            policy_version=self.version,
            worker_index=self.worker_index,
        )

    def collect(
        self,
        num_steps: int,
        weights: dict[str, np.ndarray] | None = None,
        version: int = 0,
        progress: float = 0.0,
    ) -> Fragment:
        """Off-policy: sample a fragment and write it to the replay from here.

        With a remote (Redis) replay only a few numbers return to the driver; with an
        in-memory replay, which lives in the driver, the batch itself is returned.
        """
        t0 = time.perf_counter()
        rollout = self.sample(num_steps, weights, version, progress)
        batch = self.spec.to_replay(rollout, self.cfg) if self.spec.to_replay else rollout.to_batch()
        if self._replay is not None:
            self._replay.add(batch)
            batch = None
        return Fragment(
            worker_index=self.worker_index,
            env_steps=rollout.num_steps,
            episode_returns=rollout.episode_returns,
            episode_lengths=rollout.episode_lengths,
            policy_version=rollout.policy_version,
            seconds=time.perf_counter() - t0,
            batch=batch,
        )

    def close(self) -> None:
        self.env.close()
        if self._replay is not None:
            self._replay.close()
