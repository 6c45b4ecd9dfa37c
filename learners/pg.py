"""REINFORCE (vanilla policy gradient) with reward-to-go, an optional learned baseline and an
annealed entropy bonus.

The estimator (Williams 1992), in its causality (reward-to-go) form: an action is weighted only by
the rewards that come after it, which drops terms of zero mean and lowers the variance:

    ∇J(θ) ≈ 1/B Σ_t ∇_θ log π_θ(a_t|s_t) · (R̂_t - b(s_t))  +  λ_H ∇_θ H(π_θ(·|s_t))

Each batch is used for exactly one policy-gradient step and then thrown away, so the data
reuse (samples_trained / env_steps) is 1. The baseline b = V_φ is a Monte-Carlo critic fitted
to R̂_t by one pass of minibatch regression over the same batch (each sample used once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import torch

from tandem.agents.actor_critic import ActorCritic
from tandem.agents.torch_utils import DeviceConfig, learner_device
from tandem.core.schedules import linear_schedule
from tandem.core.types import Rollout, UpdateResult
from tandem.learners.finite import checked
from tandem.learners.on_policy import ActorCriticLearner, critic_values, flatten, normalize
from tandem.learners.registry import AlgoSpec, discrete_or_box
from tandem.learners.returns import full_return, reward_to_go


@dataclass
class PGConfig(DeviceConfig):
    """REINFORCE hyperparameters."""

    fragment_length: int = 256
    """Steps per sub-env per iteration (batch = workers * envs_per_worker * fragment_length)."""
    gamma: float = 0.99
    """Discount γ."""
    lr: float = 3e-3
    """Adam step size for the policy."""
    vf_lr: float = 3e-3
    """Adam step size for the baseline critic."""
    vf_minibatches: int = 8
    """The critic's one pass over the batch is split into this many gradient steps."""
    baseline: bool = True
    """Subtract a learned V(s) baseline (actor-critic with a Monte-Carlo critic)."""
    return_type: Literal["reward_to_go", "full"] = "reward_to_go"
    """reward_to_go (causality form) or full (R(τ) for every step: higher variance)."""
    normalize_advantages: bool = True
    """Standardize R̂ - b per batch."""
    entropy_coef: float = 0.01
    """Initial entropy bonus λ_H; anneals linearly to 0 over the run."""
    hidden: tuple[int, ...] = (64, 64)
    """MLP hidden sizes for policy and critic."""
    max_grad_norm: float = 1.0
    """Gradient clipping (global norm)."""


def pg_loss(
    logp: torch.Tensor, weights: torch.Tensor, entropy: torch.Tensor, ent_coef: float
) -> torch.Tensor:
    """L(θ) = -mean_t[ log π_θ(a_t|s_t) · Ψ_t ] - λ_H mean_t H_t;  Ψ_t = R̂_t - b(s_t), held constant."""
    return -(logp * weights.detach()).mean() - ent_coef * entropy.mean()


class PGLearner(ActorCriticLearner):
    """One policy-gradient step per batch, then the batch is discarded by the driver."""

    OPTIMIZERS = ("pi_opt", "vf_opt")

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, cfg: PGConfig):
        self.cfg = cfg
        self.device = learner_device(cfg)
        self.model = ActorCritic(obs_space, act_space, cfg.hidden, use_value=cfg.baseline).to(self.device)
        pi_params = [p for n, p in self.model.named_parameters() if not n.startswith("v.")]
        self.pi_opt = torch.optim.Adam(pi_params, lr=cfg.lr)
        self.vf_opt = torch.optim.Adam(self.model.v.parameters(), lr=cfg.vf_lr) if cfg.baseline else None
        self.progress = 0.0
        self.updates = 0

    def update(self, rollout: Rollout) -> UpdateResult:
        cfg, m = self.cfg, self.model
        values, next_values = critic_values(m, rollout)
        ret_fn = reward_to_go if cfg.return_type == "reward_to_go" else full_return
        returns = ret_fn(rollout.rewards, rollout.terminated, rollout.truncated, next_values, cfg.gamma)
        # The critic always regresses on reward-to-go: it estimates V(s_t), a causal quantity.
        rtg = (
            returns
            if cfg.return_type == "reward_to_go"
            else reward_to_go(rollout.rewards, rollout.terminated, rollout.truncated, next_values, cfg.gamma)
        )
        adv = returns - values if cfg.baseline else returns
        fb = flatten(m, rollout, adv, rtg, values)
        psi = normalize(fb.advantages) if cfg.normalize_advantages else fb.advantages

        ent_coef = linear_schedule(cfg.entropy_coef, 0.0, self.progress)
        d = m.dist(fb.x)
        logp, ent = m.log_prob(d, fb.actions), m.entropy(d)
        loss = pg_loss(logp, psi, ent, ent_coef)
        self.pi_opt.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.max_grad_norm)
        self.pi_opt.step()
        grad_steps = 1

        v_loss = torch.zeros((), device=self.device)
        if self.vf_opt is not None:
            for idx in torch.randperm(len(fb), device=self.device).chunk(cfg.vf_minibatches):
                v_loss = 0.5 * (m.value(fb.x[idx]) - fb.returns[idx]).pow(2).mean()
                self.vf_opt.zero_grad()
                v_loss.backward()
                self.vf_opt.step()
        self.updates += grad_steps
        metrics = {
            "loss/policy": loss.item(),
            "loss/value": v_loss.item(),
            "stats/entropy": float(ent.mean().detach()),
            "stats/entropy_coef": ent_coef,
            "stats/grad_norm": float(grad_norm),
            "stats/return_to_go_mean": float(fb.returns.mean()),
        }
        return checked(
            UpdateResult(metrics, grad_steps=grad_steps, samples_trained=len(fb)), rollout, self.updates
        )


def make_policy(
    obs_space, act_space, cfg: PGConfig, *, worker_index: int = 0, num_workers: int = 1
) -> ActorCritic:
    return ActorCritic(obs_space, act_space, cfg.hidden, use_value=cfg.baseline)


SPEC = AlgoSpec(
    name="pg",
    config_cls=PGConfig,
    on_policy=True,
    make_policy=make_policy,
    make_learner=PGLearner,
    check_spaces=discrete_or_box("pg"),
)
