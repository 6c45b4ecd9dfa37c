"""A2C: synchronous advantage actor-critic (Mnih et al. 2016, the synchronous form of A3C).

The estimator, in the lecture's notation:

    ∇_θ J ≈ 1/B Σ_t ∇_θ log π_θ(a_t|s_t) Â_t  +  λ_H ∇_θ H(π_θ(·|s_t))
    Â_t   = G_t - V_φ(s_t)
    L_V   = 1/B Σ_t ½ (V_φ(s_t) - G_t)²

where the target G_t is bootstrapped from the critic instead of running to the episode end:

- ``target="n_step"``: G_t = Σ_{k<m} γ^k r_{t+k} + γ^m V_φ(s_{t+m}) (:func:`n_step_targets`),
  m = min(n, steps to the episode or fragment end);
- ``target="lambda"``: the TD(λ) return G_t^λ = Â_t^GAE + V_φ(s_t) (:func:`gae`).

Truncation is handled as everywhere else (Pardo et al. 2018): a truncated step bootstraps from
V_φ of the true final observation, a terminated one from 0.

Beside ``pg`` (REINFORCE with a Monte-Carlo baseline) it is the same loop with the same reuse:
each fresh batch gets exactly one gradient step (actor and critic together) and is dropped, so
samples_trained / env_steps = 1. What changes is Â: the bootstrapped target trades a little bias
(V_φ is wrong early) for a much lower variance than the Monte-Carlo R̂_t - b(s_t).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch

from tandem.agents.torch_utils import DeviceConfig
from tandem.core.schedules import linear_schedule
from tandem.core.types import Rollout, UpdateResult
from tandem.learners.finite import checked
from tandem.learners.on_policy import (
    ActorCriticLearner,
    critic_values,
    explained_variance,
    flatten,
    make_policy,
    normalize,
)
from tandem.learners.registry import AlgoSpec, discrete_or_box
from tandem.learners.returns import gae, n_step_targets


@dataclass
class A2CConfig(DeviceConfig):
    """A2C hyperparameters (one gradient step per batch: data reuse is exactly 1)."""

    fragment_length: int = 8
    """Steps per sub-env per iteration (batch = workers * envs_per_worker * fragment_length)."""
    gamma: float = 0.99
    """Discount γ."""
    target: Literal["n_step", "lambda"] = "lambda"
    """Critic target and advantage: bootstrapped n-step returns or TD(λ) returns (GAE)."""
    n_steps: int | None = None
    """n of the n-step target; None: up to the fragment end (A3C's forward view)."""
    gae_lambda: float = 0.95
    """λ of the TD(λ) target (``target="lambda"``)."""
    lr: float = 1e-3
    """Adam step size at the start (actor, critic and log σ share one optimizer)."""
    anneal_lr: bool = True
    """Decay the step size linearly to 0 over the run's env-step budget."""
    vf_coef: float = 0.5
    """Weight c_v of the critic loss in L = L_π + c_v L_V - λ_H H."""
    entropy_coef: float = 0.0
    """Entropy bonus λ_H."""
    max_grad_norm: float = 0.5
    """Gradient clipping (global norm)."""
    normalize_advantages: bool = True
    """Standardize Â per batch."""
    hidden: tuple[int, ...] = (64, 64)
    """MLP hidden sizes for policy and critic."""
    init_log_std: float = 0.0
    """Initial log σ of the Gaussian policy (continuous actions)."""


def a2c_targets(
    rollout: Rollout, values: np.ndarray, next_values: np.ndarray, cfg: A2CConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(Â_t, G_t), both ``[T, N]``, for the configured target (see the module docstring)."""
    r, term, trunc = rollout.rewards, rollout.terminated, rollout.truncated
    if cfg.target == "lambda":
        return gae(r, values, next_values, term, trunc, cfg.gamma, cfg.gae_lambda)
    if cfg.target != "n_step":
        raise ValueError(f"a2c target must be 'n_step' or 'lambda', not {cfg.target!r}")
    n = cfg.n_steps or r.shape[0]
    ret = n_step_targets(r, next_values, term, trunc, cfg.gamma, n)
    return (ret - values).astype(np.float32), ret


def a2c_loss(
    logp: torch.Tensor,
    adv: torch.Tensor,
    v: torch.Tensor,
    ret: torch.Tensor,
    entropy: torch.Tensor,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L = -mean[log π(a|s) Â] + c_v mean[½ (V(s) - G)²] - λ_H mean[H]; Â and G held constant.

    Returns (total, policy part, value part).
    """
    pi_loss = -(logp * adv.detach()).mean()
    v_loss = 0.5 * (v - ret.detach()).pow(2).mean()
    return pi_loss + vf_coef * v_loss - ent_coef * entropy.mean(), pi_loss, v_loss


class A2CLearner(ActorCriticLearner):
    """One actor-critic gradient step per fresh batch; the driver then discards the batch."""

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: A2CConfig):
        self.init_one_optimizer(obs_space, act_space, cfg)

    def update(self, rollout: Rollout) -> UpdateResult:
        cfg, m = self.cfg, self.model
        # 1. targets and advantages from the critic before the step
        values, next_values = critic_values(m, rollout)
        adv, ret = a2c_targets(rollout, values, next_values, cfg)
        fb = flatten(m, rollout, adv, ret, values)
        a = normalize(fb.advantages) if cfg.normalize_advantages else fb.advantages
        # 2. one gradient step on actor and critic together
        lr = max(linear_schedule(cfg.lr, 0.0, self.progress), 1e-7) if cfg.anneal_lr else cfg.lr
        for g in self.opt.param_groups:
            g["lr"] = lr
        d = m.dist(fb.x)
        ent = m.entropy(d)
        loss, pi_loss, v_loss = a2c_loss(
            m.log_prob(d, fb.actions), a, m.value(fb.x), fb.returns, ent, cfg.vf_coef, cfg.entropy_coef
        )
        self.opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.max_grad_norm)
        self.opt.step()
        self.updates += 1
        explained = explained_variance(fb.returns, fb.values_old)
        return checked(
            UpdateResult(
                metrics={
                    "loss/policy": pi_loss.item(),
                    "loss/value": v_loss.item(),
                    "stats/entropy": ent.mean().item(),
                    "stats/grad_norm": float(grad_norm),
                    "stats/lr": lr,
                    "stats/explained_variance": explained,
                    "stats/target_mean": float(fb.returns.mean()),
                },
                grad_steps=1,
                samples_trained=len(fb),
            ),
            rollout,
            self.updates,
        )


SPEC = AlgoSpec(
    name="a2c",
    config_cls=A2CConfig,
    on_policy=True,
    make_policy=make_policy,
    make_learner=A2CLearner,
    check_spaces=discrete_or_box("a2c"),
)
