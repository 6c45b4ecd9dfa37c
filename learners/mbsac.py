"""Model-based SAC (``--algo mbsac``): Dyna for continuous control, the MBPO recipe (Janner et
al. 2019) on the off-policy path.

Each :meth:`MBSACLearner.update` on a replay batch of B real transitions:

    1. data     transitions seen for the first time (by replay index, learners.exploration.FirstSeen)
                join the learner's model-training set D_env (a ring of ``model_data_capacity``)
    2. model    ``model_train_steps`` gradient steps of the ensemble {p_e(s' - s, r | s, u)} on
                per-member minibatches from D_env (agents.dynamics: Gaussian NLL + termination BCE)
    3. rollouts every ``rollout_interval`` updates: from ``rollout_batch`` states s_0 ~ D_env,
                    u_t ~ π(·|s_t),  e ~ U{1..E},  (s_{t+1}, r_t, term_t) ~ p_e(·|s_t, u_t)
                for t < ``rollout_length`` (stopping at predicted terminations); every step goes
                to the model buffer D_model (FIFO of ``model_buffer_capacity``)
    4. policy   one SAC update (learners.sac) on a mixed batch: the first ⌈real_ratio · B⌉ real
                rows plus ⌊(1 - real_ratio) · B⌋ rows of D_model

The replay stays the single source of real data; the model only sees what the learner samples
from it. ``samples_model`` in the update result counts the model rows of step 4 (the
dashboard's reuse panel shows them as their own bar); ``samples_trained`` counts the B replay
rows (all of which feed D_env). The workers run the plain SAC policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from tandem.agents.continuous import ActionScaler
from tandem.agents.dynamics import ProbabilisticEnsemble
from tandem.agents.torch_utils import adam, flat_obs_dim
from tandem.core.errors import TandemError
from tandem.core.types import Batch, UpdateResult
from tandem.learners.exploration import FirstSeen
from tandem.learners.finite import checked
from tandem.learners.registry import AlgoSpec, continuous_only
from tandem.learners.sac import ENV_PRESETS, SACConfig, SACLearner, make_policy


class MBSACConfigError(TandemError):
    pass


@dataclass
class MBSACConfig(SACConfig, samples_per_insert=1024.0):
    """SAC's fields plus the model, the rollouts and the real/model mix. 1024 replay rows per env
    step are 4 SAC updates of batch 256, whose real quarter (``real_ratio``) is as many real rows
    per env step as plain SAC trains on (benchmarks/NOTES.md, MBSAC)."""

    ensemble_size: int = 5
    """E: members of the dynamics ensemble."""
    model_hidden: tuple[int, ...] = (200, 200, 200)
    """Hidden sizes of each member's MLP."""
    model_lr: float = 1e-3
    """Adam step size of the ensemble."""
    model_batch: int = 256
    """Rows per member per model gradient step."""
    model_train_steps: int = 1
    """Model gradient steps per learner update."""
    model_data_capacity: int = 100_000
    """Distinct real transitions kept for model training and rollout starts."""
    rollout_interval: int = 250
    """Learner updates between rollout rounds."""
    rollout_batch: int = 2_000
    """Start states per rollout round."""
    rollout_length: int = 1
    """Model steps per branched rollout (MBPO: 1 for the pendulums, up to 15 elsewhere)."""
    model_buffer_capacity: int = 40_000
    """Model transitions kept (FIFO): 20 rounds at the defaults."""
    real_ratio: float = 0.25
    """Fraction of each SAC batch drawn from real data; the rest comes from the model buffer."""
    model_warmup: int = 1_000
    """Model gradient steps before the first rollout round."""


def mix_sizes(batch_size: int, real_ratio: float) -> tuple[int, int]:
    """(real rows, model rows) of a SAC batch: ⌈ρ B⌉ and B - ⌈ρ B⌉."""
    real = min(batch_size, max(1, math.ceil(real_ratio * batch_size)))
    return real, batch_size - real


class TransitionRing:
    """A FIFO of (s, a, r, s', terminated) numpy rows, sampled uniformly with replacement."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, bool)

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        n = len(rewards)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx], self.actions[idx], self.rewards[idx] = obs, actions, rewards
        self.next_obs[idx], self.terminated[idx] = next_obs, terminated
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)

    def sample_idx(self, shape, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self.size, shape)

    def batch(self, idx: np.ndarray) -> Batch:
        return Batch(
            obs=self.obs[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_obs=self.next_obs[idx],
            terminated=self.terminated[idx],
            truncated=np.zeros(len(idx), bool),
        )


def concat_batches(a: Batch, b: Batch) -> Batch:
    """Rows of ``a`` then ``b`` (transition fields only: weights and indices are dropped)."""
    cat = lambda x, y: np.concatenate([np.asarray(x), np.asarray(y).astype(np.asarray(x).dtype)])  # noqa: E731
    return Batch(
        obs=cat(a.obs, b.obs),
        actions=cat(a.actions, b.actions),
        rewards=cat(a.rewards, b.rewards),
        next_obs=cat(a.next_obs, b.next_obs),
        terminated=cat(a.terminated, b.terminated),
        truncated=cat(a.truncated, b.truncated),
    )


class MBSACLearner:
    """SAC trained on real and model transitions, with the ensemble trained from replay."""

    def __init__(self, obs_space: gym.Space, act_space: gym.spaces.Box, cfg: MBSACConfig):
        if not 0.0 < cfg.real_ratio <= 1.0:
            raise MBSACConfigError(
                f"real_ratio must be in (0, 1] (got {cfg.real_ratio}): --set real_ratio=0.5"
            )
        if cfg.rollout_length < 1:
            raise MBSACConfigError(f"rollout_length must be >= 1 (got {cfg.rollout_length})")
        self.cfg = cfg
        self.sac = SACLearner(obs_space, act_space, cfg)
        self.obs_dim, self.act_dim = flat_obs_dim(obs_space), int(np.prod(act_space.shape))
        self.scaler = ActionScaler(act_space)
        self.model = ProbabilisticEnsemble(self.obs_dim, self.act_dim, cfg.model_hidden, cfg.ensemble_size)
        self.model_optim = adam(self.model.parameters(), lr=cfg.model_lr)
        self.env_data = TransitionRing(cfg.model_data_capacity, self.obs_dim, self.act_dim)
        self.model_buffer = TransitionRing(cfg.model_buffer_capacity, self.obs_dim, self.act_dim)
        self.first_seen = FirstSeen()
        self.rng = np.random.default_rng(int(torch.initial_seed()) % (2**32))
        self.updates = 0
        self.model_steps = 0
        self.samples_model = 0
        self._model_metrics: dict[str, float] = {}

    # the workers' policy is SAC's; these pass straight through
    def get_weights(self) -> dict[str, np.ndarray]:
        return self.sac.get_weights()

    def _flat(self, x) -> np.ndarray:
        return np.asarray(x, np.float32).reshape(len(x), -1)

    def train_model(self) -> dict[str, float]:
        """``model_train_steps`` NLL steps, each member on its own uniform minibatch of D_env."""
        cfg, d = self.cfg, self.env_data
        # The statistics move slowly once D_env is large; recomputing them over all of it each
        # step would cost more than the step.
        if self.model_steps % cfg.rollout_interval == 0 or d.size < 5_000:
            inputs = np.concatenate([d.obs[: d.size], self._unit(d.actions[: d.size])], axis=1)
            targets = np.concatenate(
                [d.next_obs[: d.size] - d.obs[: d.size], d.rewards[: d.size, None]], axis=1
            )
            self.model.set_normalizer(inputs, targets)
        metrics: dict[str, float] = {}
        for _ in range(cfg.model_train_steps):
            idx = d.sample_idx((cfg.ensemble_size, cfg.model_batch), self.rng)
            t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
            loss, metrics = self.model.loss(
                t(d.obs[idx]),
                t(self._unit(d.actions[idx])),
                t(d.next_obs[idx] - d.obs[idx]),
                t(d.rewards[idx]),
                t(d.terminated[idx]),
            )
            self.model_optim.zero_grad(set_to_none=True)
            loss.backward()
            self.model_optim.step()
            self.model_steps += 1
        return metrics

    def _unit(self, actions: np.ndarray) -> np.ndarray:
        return self.scaler.to_unit(torch.as_tensor(actions, dtype=torch.float32)).numpy()

    @torch.no_grad()
    def rollout(self) -> int:
        """Branched rollouts from states of D_env into the model buffer; returns steps added."""
        cfg = self.cfg
        obs = torch.as_tensor(self.env_data.obs[self.env_data.sample_idx(cfg.rollout_batch, self.rng)])
        added = 0
        for _ in range(cfg.rollout_length):
            u, _ = self.sac.actor(obs)
            next_obs, r, term = self.model.sample(obs, u)
            actions = self.scaler.to_env(u.numpy())
            self.model_buffer.add(obs.numpy(), actions, r.numpy(), next_obs.numpy(), term.numpy())
            added += len(r)
            obs = next_obs[~term]
            if len(obs) == 0:
                break
        return added

    def set_progress(self, fraction: float) -> None:
        """No schedule: the model, rollout and SAC rates are constant over the run."""

    def update(self, batch: Batch) -> UpdateResult:
        cfg = self.cfg
        fresh = self.first_seen.new_rows(batch.indices, len(batch))
        if fresh.any():
            self.env_data.add(
                self._flat(batch.obs)[fresh],
                self._flat(batch.actions)[fresh],
                np.asarray(batch.rewards)[fresh],
                self._flat(batch.next_obs)[fresh],
                np.asarray(batch.terminated)[fresh],
            )
        self._model_metrics = self.train_model() or self._model_metrics
        if self.model_steps >= cfg.model_warmup and self.updates % cfg.rollout_interval == 0:
            self.rollout()

        n_real, n_model = mix_sizes(len(batch), cfg.real_ratio)
        if self.model_buffer.size == 0:
            n_real, n_model = len(batch), 0
        mixed = batch.take(np.arange(n_real))
        if n_model:
            mixed = concat_batches(
                mixed, self.model_buffer.batch(self.model_buffer.sample_idx(n_model, self.rng))
            )
        out = self.sac.update(mixed)
        sac_metrics = out.metrics if isinstance(out, UpdateResult) else out
        self.updates += 1
        self.samples_model += n_model
        return checked(
            UpdateResult(
                metrics={
                    **sac_metrics,
                    **self._model_metrics,
                    "stats/model_buffer": float(self.model_buffer.size),
                    "stats/model_fraction": n_model / len(mixed),
                },
                grad_steps=1 + cfg.model_train_steps,
                samples_trained=len(batch),
                priorities=None,
                samples_model=n_model,
            ),
            batch,
            self.updates,
        )

    def state_dict(self) -> dict[str, Any]:
        fields = ("obs", "actions", "rewards", "next_obs", "terminated")
        ring = lambda r: {k: torch.as_tensor(getattr(r, k)[: r.size]) for k in fields}  # noqa: E731
        return {
            "sac": self.sac.state_dict(),
            "model": self.model.state_dict(),
            "model_optim": self.model_optim.state_dict(),
            "env_data": ring(self.env_data),
            "first_seen": self.first_seen.state_dict(),
            "updates": self.updates,
            "model_steps": self.model_steps,
            "samples_model": self.samples_model,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sac.load_state_dict(state["sac"])
        self.model.load_state_dict(state["model"])
        self.model_optim.load_state_dict(state["model_optim"])
        d = state["env_data"]
        self.env_data.size = self.env_data.pos = 0
        self.env_data.add(
            *(np.asarray(d[k]) for k in ("obs", "actions", "rewards", "next_obs", "terminated"))
        )
        self.first_seen.load_state_dict(state["first_seen"])
        self.updates = int(state["updates"])
        self.model_steps = int(state["model_steps"])
        self.samples_model = int(state["samples_model"])


SPEC = AlgoSpec(
    name="mbsac",
    config_cls=MBSACConfig,
    on_policy=False,
    make_policy=make_policy,
    make_learner=MBSACLearner,
    check_spaces=continuous_only("mbsac"),
    preset=lambda obs_space, act_space, env_id: dict(ENV_PRESETS.get(env_id, {})),
)
