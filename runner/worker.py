"""Rollout workers: a plain class, run in-process by ``runner.local`` (``--backend local``) and
wrapped by ``ray.remote`` in ``cluster.group`` only."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from tandem.core.errors import TandemError
from tandem.core.types import Fragment, Rollout
from tandem.learners.registry import get_algo
from tandem.runner.envs import derive_seeds, make_vector_env


def salted_seed(seed: int, salt: int) -> int:
    """A 31-bit seed for the ``salt``-th life of something seeded by ``seed`` (a restarted
    worker's incarnation, a resumed run's session): the first word of
    ``SeedSequence([seed, salt])``, so no two lives share seeds, nor do neighbouring run seeds."""
    return int(np.random.SeedSequence([seed, salt]).generate_state(1, np.uint32)[0] >> 1)


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
        vector_env: str = "auto",
    ):
        import torch

        torch.set_num_threads(1)  # many workers share a node's cores; intra-op threads only contend
        self.worker_index = worker_index
        self.seed = seed
        self.incarnation = 0
        torch.manual_seed(derive_seeds(seed, worker_index, num_envs + 1)[-1])  # before the policy's init
        self.env = make_vector_env(env_id, num_envs, env_kwargs, vector_env)
        self.spec = get_algo(algo)
        self.cfg = algo_config
        self.num_workers = num_workers
        self._make_policy()
        self.version = 0
        act_space = self.env.single_action_space
        self._clip = (act_space.low, act_space.high) if isinstance(act_space, gym.spaces.Box) else None
        self._reset(0, seed_torch=False)
        self.env_steps = 0
        self._replay = None
        if replay is not None:
            from tandem.replay import open_writer

            # A pure writer: no mirror thread, no local copy of the ring in the worker.
            self._replay = open_writer(replay, writer_index=worker_index)

    def _reset(self, incarnation: int, seed_torch: bool = True) -> None:
        """Seed torch, the action space and every sub-env for ``incarnation``, and start fresh
        episodes. Incarnation 0 keeps the run's seeds as they always were; a later one mixes its
        number in, so a restarted worker explores new episodes instead of repeating its first life."""
        import torch

        n = self.env.num_envs
        seed = self.seed if incarnation == 0 else salted_seed(self.seed, incarnation)
        seeds = derive_seeds(seed, self.worker_index, n + 1)
        if seed_torch:
            torch.manual_seed(seeds[-1])
        self.env.action_space.seed(seeds[-1])
        self.obs, _ = self.env.reset(seed=seeds[:n])
        self._ep_ret = np.zeros(n)
        self._ep_len = np.zeros(n, dtype=np.int64)
        self.incarnation = incarnation

    def _make_policy(self) -> None:
        """A fresh policy: its exploration RNG seeds itself from torch's seed (``policy_rng``)."""
        self.policy = self.spec.make_policy(
            self.env.single_observation_space,
            self.env.single_action_space,
            self.cfg,
            worker_index=self.worker_index,
            num_workers=self.num_workers,
        )
        # The adder holds unfinished episodes (rwr): a fresh policy starts fresh episodes.
        self._adder = self.spec.make_adder(self.cfg, self.policy) if self.spec.make_adder else None

    def ping(self) -> int:
        return self.worker_index

    def reincarnate(self, incarnation: int) -> int:
        """Called once on a worker that its group restarted (the ``incarnation``-th time): reseed
        and restart the episodes. Ray rebuilds a lost actor with its first constructor arguments,
        which would replay the first incarnation's episodes bit for bit."""
        self._reset(incarnation)
        self._make_policy()  # after _reset seeded torch: new exploration draws too
        self.version = -1  # so the next call loads the published weights, whatever their version
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
        if num_steps < 1:
            raise TandemError(
                f"a rollout fragment needs at least 1 step per env, got fragment_length={num_steps}: "
                "--set fragment_length=64"
            )
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
        if self._adder is not None:  # may hold steps back (None: nothing to write yet)
            batch = self._adder(rollout)
        else:
            batch = self.spec.to_replay(rollout, self.cfg) if self.spec.to_replay else rollout.to_batch()
        written = 0
        if self._replay is not None:
            if batch is not None:
                self._replay.add(batch)  # returns once Redis acknowledged the insert
                written = len(batch)
            batch = None
        return Fragment(
            worker_index=self.worker_index,
            env_steps=rollout.num_steps,
            episode_returns=rollout.episode_returns,
            episode_lengths=rollout.episode_lengths,
            policy_version=rollout.policy_version,
            seconds=time.perf_counter() - t0,
            batch=batch,
            written=written,
        )

    def close(self) -> None:
        self.env.close()
        if self._replay is not None:
            self._replay.close()
