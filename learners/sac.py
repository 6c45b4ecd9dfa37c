"""Soft Actor-Critic (``--algo sac``), Haarnoja et al. 2018 (v2, automatic temperature).

One :meth:`SACLearner.update`, in the order of the paper's algorithm:

    1. critic   y = r + γ (1 - terminated) [ min_i Q'_i(s', u') - α log π(u'|s') ],  u' ~ π(·|s')
                L_Q = ½ Σ_i (Q_i(s, u) - y)²
    2. actor    L_π = E_s[ α log π(u|s) - min_i Q_i(s, u) ],  u = tanh(μ + σ ε)  (reparameterized)
    3. α        L_α = -log α · (log π(u|s) + H_target),  H_target = -|A|
    4. targets  θ'_i ← τ θ_i + (1 - τ) θ'_i

Actions live in the unit box for the networks (see :mod:`agents.continuous`). A truncated
step (HalfCheetah only truncates, at 1000 steps) bootstraps from s' like any other step;
only ``terminated`` zeroes the bootstrap.
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
    TanhGaussianActor,
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
class SACConfig(ActorCriticReplayConfig):
    """SAC hyperparameters. Defaults: the paper's MuJoCo settings; ENV_PRESETS adjusts them for the
    small envs (why: benchmarks/NOTES.md, SAC)."""

    actor_lr: float = 3e-4
    """Adam step size of the actor."""
    alpha_lr: float = 1e-3
    """Adam step size of log α."""
    init_alpha: float = 1.0
    """Initial temperature α."""
    autotune: bool = True
    """Learn α to keep the policy's entropy near ``target_entropy``."""
    target_entropy: float | None = None
    """Entropy target in the unit action box (None: -|A|)."""
    policy_frequency: int = 1
    """Critic updates per actor (and α) update."""


# Applied before the user's --config / --set (see AlgoSpec.preset); the reasons for each are in
# benchmarks/NOTES.md under SAC and the env's name.
ENV_PRESETS: dict[str, dict[str, Any]] = {
    "Pendulum-v1": {"min_size": 1_000, "actor_lr": 1e-3},
    "InvertedPendulum-v5": {"min_size": 1_000, "actor_lr": 1e-3, "hidden": (64, 64)},
}


# ----------------------------------------------------------------------------- the math


def sac_critic_target(
    rewards: torch.Tensor,
    next_q1: torch.Tensor,
    next_q2: torch.Tensor,
    next_logp: torch.Tensor,
    terminated: torch.Tensor,
    discount: torch.Tensor | float,
    alpha: torch.Tensor | float,
) -> torch.Tensor:
    """Soft TD target with clipped double-Q, all [B]:

    y = r + γ (1 - terminated) [ min(Q'_1, Q'_2)(s', u') - α log π(u'|s') ],  u' ~ π(·|s')
    """
    return td_target(rewards, torch.min(next_q1, next_q2) - alpha * next_logp, terminated, discount)


def sac_actor_loss(logp: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor, alpha) -> torch.Tensor:
    """L_π = mean_s [ α log π(u|s) - min(Q_1, Q_2)(s, u) ],  u the reparameterized sample."""
    return (alpha * logp - torch.min(q1, q2)).mean()


def sac_alpha_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """L_α = -mean[ log α · (log π(u|s) + H_target) ]: α grows when the entropy -log π is below target."""
    return -(log_alpha * (logp.detach() + target_entropy)).mean()


# ----------------------------------------------------------------------------- learner


class SACLearner:
    """Actor, twin critics with Polyak targets, and the temperature, each with its Adam."""

    def __init__(self, obs_space: gym.Space, act_space: gym.spaces.Box, cfg: SACConfig):
        self.obs_space, self.act_space, self.cfg = obs_space, act_space, cfg
        obs_dim, act_dim = flat_obs_dim(obs_space), int(np.prod(act_space.shape))
        self.device = learner_device(cfg)
        self.scaler = ActionScaler(act_space)
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.critic = TwinQ(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(float(np.log(cfg.init_alpha)), requires_grad=True, device=self.device)
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
        self.actor_optim = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optim = adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.alpha_optim = adam([self.log_alpha], lr=cfg.alpha_lr)
        self.updates = 0
        self._actor_metrics: dict[str, float] = {}
        self.bonus = make_count_bonus(obs_space, cfg)  # None unless exploration_bonus='count'

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    def set_progress(self, fraction: float) -> None:
        """No schedule: the temperature tunes itself, the learning rates are constant."""

    def update(self, batch: Batch) -> UpdateResult:
        cfg = self.cfg
        b = batch_to_tensors(batch, self.obs_space, self.act_space, cfg.gamma, self.device)
        rewards, bonus_metrics = with_bonus(self.bonus, batch, b.rewards)
        u = self.scaler.to_unit(b.actions)
        alpha = self.alpha

        # 1. critics toward the soft target
        with torch.no_grad():
            next_u, next_logp = self.actor(b.next_obs)
            y = sac_critic_target(
                rewards, *self.critic_target(b.next_obs, next_u), next_logp, b.terminated, b.discount, alpha
            )
        q1, q2 = self.critic(b.obs, u)
        critic_loss, td = twin_q_loss(q1, q2, y, b.weights)
        optimizer_step(self.critic_optim, critic_loss, self.critic.parameters())

        # 2-3. actor and temperature
        if self.updates % cfg.policy_frequency == 0:
            new_u, logp = self.actor(b.obs)
            with frozen(self.critic):
                actor_loss = sac_actor_loss(logp, *self.critic(b.obs, new_u), alpha)
            optimizer_step(self.actor_optim, actor_loss, self.actor.parameters())
            self._actor_metrics = {
                "loss/actor": float(actor_loss.detach()),
                "stats/entropy": float(-logp.detach().mean()),
            }
            if cfg.autotune:
                alpha_loss = sac_alpha_loss(self.log_alpha, logp, self.target_entropy)
                optimizer_step(self.alpha_optim, alpha_loss, [self.log_alpha])
                self._actor_metrics["loss/alpha"] = float(alpha_loss.detach())

        # 4. target critics
        polyak_update(self.critic_target, self.critic, cfg.tau)
        self.updates += 1
        metrics = {
            "loss/q": float(critic_loss.detach()),
            **self._actor_metrics,
            "stats/alpha": float(alpha),
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
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "alpha_optim": self.alpha_optim.state_dict(),
            "updates": self.updates,
            "bonus": None if self.bonus is None else self.bonus.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        self.alpha_optim.load_state_dict(state["alpha_optim"])
        self.updates = int(state["updates"])
        if self.bonus is not None and state.get("bonus") is not None:
            self.bonus.load_state_dict(state["bonus"])


def make_policy(obs_space, act_space, cfg: SACConfig, *, worker_index: int = 0, num_workers: int = 1):
    actor = TanhGaussianActor(flat_obs_dim(obs_space), int(np.prod(act_space.shape)), cfg.hidden)
    return ContinuousActorPolicy(
        obs_space, act_space, actor, random_warmup=cfg.random_warmup, worker_index=worker_index
    )


SPEC = AlgoSpec(
    name="sac",
    config_cls=SACConfig,
    on_policy=False,
    make_policy=make_policy,
    make_learner=SACLearner,
    check_spaces=continuous_only("sac"),
    preset=lambda obs_space, act_space, env_id: dict(ENV_PRESETS.get(env_id, {})),
)
