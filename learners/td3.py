"""TD3 (``--algo td3``): Twin Delayed DDPG, Fujimoto et al. 2018.

One :meth:`TD3Learner.update`, in the order of the paper's algorithm:

    1. target policy smoothing  u' = clip(μ'(s') + clip(ε, -c, c), -1, 1),  ε ~ N(0, σ²)
    2. critic                   y = r + γ (1 - terminated) min_i Q'_i(s', u');  L_Q = ½ Σ_i (Q_i(s, u) - y)²
    3. every ``policy_delay`` updates:
       actor                    L_μ = -mean_s Q_1(s, μ(s))
       targets                  θ' ← τ θ + (1 - τ) θ' for the critics and the actor

Workers explore with Gaussian noise N(0, exploration_noise²) added to μ(s) in the unit
box (:class:`agents.continuous.DeterministicActor`). The twin critics, Polyak update and
action scaling are the ones SAC uses.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from tandem.agents.continuous import (
    ActionScaler,
    ContinuousActorPolicy,
    DeterministicActor,
    TwinQ,
    twin_q_loss,
)
from tandem.agents.offpolicy import (
    batch_to_tensors,
    frozen,
    optimizer_step,
    polyak_update,
)
from tandem.agents.torch_utils import adam, flat_obs_dim, learner_device, module_weights
from tandem.core.types import Batch, UpdateResult
from tandem.learners.config import ActorCriticReplayConfig
from tandem.learners.exploration import make_count_bonus, with_bonus
from tandem.learners.finite import checked
from tandem.learners.registry import AlgoSpec, continuous_only
from tandem.learners.returns import td_target


@dataclass
class TD3Config(ActorCriticReplayConfig):
    """TD3 hyperparameters. Defaults: the paper's MuJoCo settings with a 5k-step random warm-up;
    ENV_PRESETS shortens the warm-up for the small envs (benchmarks/NOTES.md, TD3)."""

    actor_lr: float = 1e-3
    """Adam step size of the actor."""
    exploration_noise: float = 0.1
    """Std of the workers' Gaussian action noise (unit box: a fraction of the half-range)."""
    policy_noise: float = 0.2
    """Std σ of the target policy smoothing noise."""
    noise_clip: float = 0.5
    """Clip c of the smoothing noise."""
    policy_delay: int = 2
    """Critic updates per actor and target update."""


ENV_PRESETS: dict[str, dict[str, Any]] = {
    "Pendulum-v1": {"min_size": 1_000},
    "InvertedPendulum-v5": {"min_size": 1_000},
}


# ----------------------------------------------------------------------------- the math


def smoothed_target_action(next_mu: torch.Tensor, noise: torch.Tensor, noise_clip: float) -> torch.Tensor:
    """Target policy smoothing  u' = clip(μ'(s') + clip(ε, -c, c), -1, 1)  in the unit box, [B, A]."""
    return (next_mu + noise.clamp(-noise_clip, noise_clip)).clamp(-1.0, 1.0)


def td3_critic_target(
    rewards: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    terminated: torch.Tensor,
    discount: torch.Tensor | float,
) -> torch.Tensor:
    """Clipped double-Q target  y = r + γ (1 - terminated) min(Q'_1, Q'_2)(s', u'),  all [B]."""
    return td_target(rewards, torch.min(next_q1, next_q2), terminated, discount)


def td3_actor_loss(q1: torch.Tensor) -> torch.Tensor:
    """Deterministic policy gradient through the first critic:  L_μ = -mean_s Q_1(s, μ(s))."""
    return -q1.mean()


# ----------------------------------------------------------------------------- learner


class TD3Learner:
    """Actor and twin critics, each with a Polyak target and an Adam optimizer."""

    def __init__(self, obs_space: gym.Space, act_space: gym.spaces.Box, cfg: TD3Config):
        self.obs_space, self.act_space, self.cfg = obs_space, act_space, cfg
        obs_dim, act_dim = flat_obs_dim(obs_space), int(np.prod(act_space.shape))
        self.device = learner_device(cfg)
        self.scaler = ActionScaler(act_space)
        self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden, cfg.exploration_noise).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = TwinQ(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optim = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optim = adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.updates = 0
        self._actor_metrics: dict[str, float] = {}
        self.bonus = make_count_bonus(obs_space, cfg)  # None unless exploration_bonus='count'

    def set_progress(self, fraction: float) -> None:
        """No schedule: exploration noise and learning rates are constant."""

    def update(self, batch: Batch) -> UpdateResult:
        cfg = self.cfg
        b = batch_to_tensors(batch, self.obs_space, self.act_space, cfg.gamma, self.device)
        u = self.scaler.to_unit(b.actions)
        rewards, bonus_metrics = with_bonus(self.bonus, batch, b.rewards)

        # 1-2. critics toward the smoothed clipped double-Q target
        with torch.no_grad():
            next_mu = self.actor_target(b.next_obs)
            next_u = smoothed_target_action(
                next_mu, cfg.policy_noise * torch.randn_like(next_mu), cfg.noise_clip
            )
            y = td3_critic_target(rewards, *self.critic_target(b.next_obs, next_u), b.terminated, b.discount)
        q1, q2 = self.critic(b.obs, u)
        critic_loss, td = twin_q_loss(q1, q2, y, b.weights)
        optimizer_step(self.critic_optim, critic_loss, self.critic.parameters())
        self.updates += 1

        # 3. delayed actor and target updates
        if self.updates % cfg.policy_delay == 0:
            with frozen(self.critic):
                actor_loss = td3_actor_loss(self.critic.first(b.obs, self.actor(b.obs)))
            optimizer_step(self.actor_optim, actor_loss, self.actor.parameters())
            polyak_update(self.critic_target, self.critic, cfg.tau)
            polyak_update(self.actor_target, self.actor, cfg.tau)
            self._actor_metrics = {"loss/actor": float(actor_loss.detach())}

        metrics = {
            "loss/q": float(critic_loss.detach()),
            **self._actor_metrics,
            "stats/q_mean": float(q1.detach().mean()),
            "stats/target_mean": float(y.mean()),
            "stats/td_abs": float(td.mean()),
            **bonus_metrics,
        }
        return checked(
            UpdateResult(metrics, grad_steps=1, samples_trained=len(batch), priorities=td.cpu().numpy()),
            batch,
            self.updates,
        )

    def get_weights(self) -> dict[str, np.ndarray]:
        return module_weights(self.actor)

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "updates": self.updates,
            "bonus": None if self.bonus is None else self.bonus.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        self.updates = int(state["updates"])
        if self.bonus is not None and state.get("bonus") is not None:
            self.bonus.load_state_dict(state["bonus"])


def make_policy(obs_space, act_space, cfg: TD3Config, *, worker_index: int = 0, num_workers: int = 1):
    actor = DeterministicActor(
        flat_obs_dim(obs_space), int(np.prod(act_space.shape)), cfg.hidden, cfg.exploration_noise
    )
    return ContinuousActorPolicy(
        obs_space, act_space, actor, random_warmup=cfg.random_warmup, worker_index=worker_index
    )


SPEC = AlgoSpec(
    name="td3",
    config_cls=TD3Config,
    on_policy=False,
    make_policy=make_policy,
    make_learner=TD3Learner,
    check_spaces=continuous_only("td3"),
    preset=lambda obs_space, act_space, env_id: dict(ENV_PRESETS.get(env_id, {})),
)
