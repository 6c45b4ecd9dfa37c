"""PPO with the clipped surrogate, GAE(λ) and several epochs of minibatches (Schulman et al. 2017).

    r_t(θ) = π_θ(a_t|s_t) / π_old(a_t|s_t)
    L^CLIP = -E_t[ min(r_t Â_t, clip(r_t, 1-ε, 1+ε) Â_t) ]
    L = L^CLIP + c_v · ½ (V_φ(s_t) - V̂_t)² - c_H · H(π_θ(·|s_t))

Each batch is reused for ``epochs`` passes, so samples_trained / env_steps = epochs: PPO's
data reuse sits between REINFORCE (1) and replay-based learners (many).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
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
from tandem.learners.returns import gae


@dataclass
class PPOConfig(DeviceConfig):
    """PPO hyperparameters. Defaults: tuned for CartPole-v1 on 2 workers x 4 envs (benchmarks/NOTES.md)."""

    fragment_length: int = 32
    """Steps per sub-env per iteration (batch = workers * envs_per_worker * fragment_length)."""
    epochs: int = 20
    """Passes over each batch: the data-reuse factor."""
    num_minibatches: int = 1
    """Minibatches per epoch (gradient steps per epoch)."""
    gamma: float = 0.98
    """Discount γ."""
    gae_lambda: float = 0.8
    """GAE λ: bias/variance trade-off of the advantage estimate."""
    lr: float = 1e-3
    """Adam step size at the start."""
    anneal_lr: bool = True
    """Decay the step size linearly to 0 over the run."""
    clip_eps: float = 0.2
    """Surrogate clip range ε."""
    anneal_clip: bool = True
    """Decay ε linearly to 0 over the run."""
    vf_coef: float = 0.5
    """Value loss weight c_v."""
    entropy_coef: float = 0.0
    """Entropy bonus c_H."""
    max_grad_norm: float = 0.5
    """Gradient clipping (global norm)."""
    normalize_advantages: bool = True
    """Standardize Â per minibatch."""
    target_kl: float | None = None
    """Stop the epochs early when the approximate KL exceeds this (None: never)."""
    hidden: tuple[int, ...] = (64, 64)
    """MLP hidden sizes for policy and critic."""
    init_log_std: float = 0.0
    """Initial log σ of the Gaussian policy (continuous actions)."""


# Applied for Box action spaces unless the user sets these keys (benchmarks/NOTES.md, PPO).
CONTINUOUS_PRESET: dict[str, Any] = {
    "fragment_length": 256,
    "epochs": 10,
    "num_minibatches": 32,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "lr": 3e-4,
    "anneal_clip": False,
}


# Per-env run budgets: the learning rate and clip range anneal over the budget, so the budget is
# part of the tuned schedule (benchmarks/NOTES.md, PPO).
PER_ENV: dict[str, dict[str, Any]] = {"CartPole-v1": {"total_steps": 50_000}}


def clipped_surrogate(
    logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, eps: float
) -> torch.Tensor:
    """L^CLIP = -mean[min(r Â, clip(r, 1-ε, 1+ε) Â)],  r = exp(log π - log π_old)."""
    ratio = (logp - logp_old).exp()
    return -torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv).mean()


class PPOLearner(ActorCriticLearner):
    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: PPOConfig):
        self.init_one_optimizer(obs_space, act_space, cfg)

    def update(self, rollout: Rollout) -> UpdateResult:
        cfg, m = self.cfg, self.model
        values, next_values = critic_values(m, rollout)
        adv, ret = gae(
            rollout.rewards,
            values,
            next_values,
            rollout.terminated,
            rollout.truncated,
            cfg.gamma,
            cfg.gae_lambda,
        )
        fb = flatten(m, rollout, adv, ret, values)
        lr = linear_schedule(cfg.lr, 0.0, self.progress) if cfg.anneal_lr else cfg.lr
        for g in self.opt.param_groups:
            g["lr"] = max(lr, 1e-7)
        eps = linear_schedule(cfg.clip_eps, 0.0, self.progress) if cfg.anneal_clip else cfg.clip_eps
        eps = max(eps, 1e-3)

        steps = samples = 0
        stats: dict[str, float] = {}
        for _epoch in range(cfg.epochs):
            minibatches = torch.randperm(len(fb), device=self.device).chunk(cfg.num_minibatches)
            for j, idx in enumerate(minibatches):
                d = m.dist(fb.x[idx])
                logp = m.log_prob(d, fb.actions[idx])
                a = normalize(fb.advantages[idx]) if cfg.normalize_advantages else fb.advantages[idx]
                pi_loss = clipped_surrogate(logp, fb.logp_old[idx], a, eps)
                v_loss = 0.5 * (m.value(fb.x[idx]) - fb.returns[idx]).pow(2).mean()
                ent = m.entropy(d).mean()
                loss = pi_loss + cfg.vf_coef * v_loss - cfg.entropy_coef * ent
                self.opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.max_grad_norm)
                self.opt.step()
                steps += 1
                samples += len(idx)
                if j < len(minibatches) - 1:
                    continue  # report each epoch's last minibatch: every float() is a sync on a GPU
                with torch.no_grad():
                    log_ratio = logp - fb.logp_old[idx]
                    approx_kl = float(((log_ratio.exp() - 1) - log_ratio).mean())  # Schulman's k3
                    clipfrac = float(((log_ratio.exp() - 1).abs() > eps).float().mean())
                stats = {
                    "loss/policy": pi_loss.item(),
                    "loss/value": v_loss.item(),
                    "stats/entropy": ent.item(),
                    "stats/approx_kl": approx_kl,
                    "stats/clip_frac": clipfrac,
                }
            if cfg.target_kl is not None and stats["stats/approx_kl"] > cfg.target_kl:
                break
        self.updates += steps
        explained = explained_variance(fb.returns, fb.values_old)
        metrics = {**stats, "stats/lr": lr, "stats/clip_eps": eps, "stats/explained_variance": explained}
        return checked(
            UpdateResult(metrics, grad_steps=steps, samples_trained=samples), rollout, self.updates
        )


SPEC = AlgoSpec(
    name="ppo",
    config_cls=PPOConfig,
    on_policy=True,
    make_policy=make_policy,
    make_learner=PPOLearner,
    check_spaces=discrete_or_box("ppo"),
    preset=lambda obs_space, act_space, env_id: (
        dict(CONTINUOUS_PRESET) if isinstance(act_space, gym.spaces.Box) else dict(PER_ENV.get(env_id, {}))
    ),
)
