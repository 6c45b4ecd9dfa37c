"""DQN (``--algo dqn``): Q-learning with a neural network, replay and a target network.

    y = G + γ^m (1 - terminated) · Q_target(s', argmax_a' Q(s', a'))     (Double DQN)
    L = (1/B) Σ_i w_i · Huber(Q(s_i, a_i) - y_i)

Mnih et al. 2015 (target network, Huber loss, ε-greedy), van Hasselt et al. 2016 (Double
DQN), Wang et al. 2016 (dueling heads), Horgan et al. 2018 (Ape-X per-worker ε).
With ``n_step`` > 1 the workers fold their fragments into n-step transitions before
writing them (:func:`to_replay`): G is the n-step return, m ≤ n the steps actually
folded, and γ^m travels in ``extras["discount"]``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.nn import functional as F

from tandem.agents.offpolicy import (
    batch_to_tensors,
    optimizer_step,
    polyak_update,
    weighted_mean,
)
from tandem.agents.q import EpsilonGreedyQPolicy, make_q_network
from tandem.agents.torch_utils import adam, learner_device, module_weights
from tandem.core.schedules import linear_schedule
from tandem.core.types import Batch, Rollout, UpdateResult
from tandem.learners.config import PrioritizedReplayConfig
from tandem.learners.exploration import make_count_bonus, with_bonus
from tandem.learners.finite import checked
from tandem.learners.registry import AlgoSpec, discrete_only
from tandem.learners.returns import n_step_returns, td_target


@dataclass
class DQNConfig(PrioritizedReplayConfig, batch_size=64, prioritized=True):
    """DQN hyperparameters. Defaults: tuned for CartPole-v1 (benchmarks/NOTES.md)."""

    gamma: float = 0.99
    """Discount γ."""
    lr: float = 5e-4
    """Adam step size."""
    lr_final: float | None = None
    """Step size at the end of the env-step budget, reached linearly from ``lr``; None keeps ``lr``."""
    hidden: tuple[int, ...] = (128, 128)
    """MLP hidden sizes of the Q network."""
    dueling: bool = True
    """Dueling heads: Q = V + A - mean(A)."""
    double_q: bool = True
    """Double DQN: the online net picks a', the target net evaluates it."""
    n_step: int = 3
    """Steps folded into each transition by the workers (1: plain one-step targets)."""
    huber_delta: float = 1.0
    """Huber loss threshold (quadratic below, linear above)."""
    max_grad_norm: float = 10.0
    """Gradient clipping (global norm)."""
    target_update_interval: int = 250
    """Updates between target-network updates."""
    tau: float = 1.0
    """Target update rate: 1.0 copies the online net; < 1 is a Polyak step every interval."""
    epsilon_start: float = 1.0
    """ε at the start of the run."""
    epsilon_end: float = 0.02
    """ε after ``exploration_fraction`` of the env-step budget."""
    exploration_fraction: float = 0.2
    """Fraction of the env-step budget over which ε anneals linearly."""
    apex: bool = False
    """Ape-X exploration: fixed ε_i = apex_epsilon^(1 + apex_alpha i / (N - 1)) per worker, no annealing."""
    apex_epsilon: float = 0.4
    """Ape-X base ε."""
    apex_alpha: float = 7.0
    """Ape-X exponent spread α."""


# ----------------------------------------------------------------------------- the math


def dqn_next_values(q_target_next: torch.Tensor, q_online_next: torch.Tensor | None = None) -> torch.Tensor:
    """V(s') of the DQN target, [B, A] -> [B].

        plain DQN:   V(s') = max_a' Q_target(s', a')
        Double DQN:  V(s') = Q_target(s', argmax_a' Q_online(s', a'))

    Double DQN picks with one net and evaluates with the other, which removes most of the
    max operator's overestimation bias (van Hasselt et al. 2016).
    """
    if q_online_next is None:
        return q_target_next.max(dim=1).values
    best = q_online_next.argmax(dim=1, keepdim=True)
    return q_target_next.gather(1, best).squeeze(1)


def fold_n_step(rollout: Rollout, gamma: float, n: int) -> Batch:
    """A [T, N] fragment -> T*N n-step transitions (s_t, a_t, G_t, s_{t+m}, terminated, γ^m).

    Uses :func:`learners.returns.n_step_returns`: the window stops at an episode end or at
    the fragment's end (m < n there), next_obs is the step t+m-1's (the true final
    observation when the episode ended), ``terminated`` is set if the episode terminated
    inside the window, and γ^m goes to ``extras["discount"]``.
    """
    G, disc, term, last = n_step_returns(rollout.rewards, rollout.terminated, rollout.truncated, gamma, n)
    env = np.arange(rollout.rewards.shape[1])[None, :]
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    return Batch(
        obs=flat(rollout.obs),
        actions=flat(rollout.actions),
        rewards=flat(G),
        next_obs=flat(rollout.next_obs[last, env]),
        terminated=flat(term),
        truncated=flat(rollout.truncated[last, env] & ~term),
        extras={"discount": flat(disc)},
    )


def to_replay(rollout: Rollout, cfg: DQNConfig) -> Batch:
    """What workers write: one-step transitions, or n-step folded ones when ``n_step`` > 1."""
    if cfg.n_step <= 1:
        return rollout.to_batch()
    return fold_n_step(rollout, cfg.gamma, cfg.n_step)


# ----------------------------------------------------------------------------- learner


class DQNLearner:
    """Online Q network, target network and Adam; one :meth:`update` is one gradient step."""

    def __init__(self, obs_space: gym.Space, act_space: gym.spaces.Discrete, cfg: DQNConfig):
        self.obs_space, self.act_space, self.cfg = obs_space, act_space, cfg
        self.device = learner_device(cfg)
        self.q = make_q_network(obs_space, act_space, cfg.hidden, cfg.dueling).to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.optim = adam(self.q.parameters(), lr=cfg.lr)
        self.updates = 0
        self.epsilon = cfg.epsilon_start
        self.bonus = make_count_bonus(obs_space, cfg)  # None unless exploration_bonus='count'

    def set_progress(self, fraction: float) -> None:
        """The learning-rate schedule, and (for reporting) the ε the workers act with now."""
        cfg = self.cfg
        self.epsilon = linear_schedule(cfg.epsilon_start, cfg.epsilon_end, fraction, cfg.exploration_fraction)
        if cfg.lr_final is not None:
            lr = linear_schedule(cfg.lr, cfg.lr_final, fraction)
            for group in self.optim.param_groups:
                group["lr"] = lr

    def update(self, batch: Batch) -> UpdateResult:
        cfg = self.cfg
        b = batch_to_tensors(batch, self.obs_space, self.act_space, cfg.gamma, self.device)
        rewards, bonus_metrics = with_bonus(self.bonus, batch, b.rewards)
        n = b.obs.shape[0]
        # One forward pass of the online net over s and s' (s' is needed for Double DQN).
        q_all = self.q(torch.cat([b.obs, b.next_obs]) if cfg.double_q else b.obs)
        q = q_all[:n].gather(1, b.actions[:, None]).squeeze(1)
        with torch.no_grad():
            next_v = dqn_next_values(self.q_target(b.next_obs), q_all[n:] if cfg.double_q else None)
            y = td_target(rewards, next_v, b.terminated, b.discount)
        loss = weighted_mean(F.huber_loss(q, y, reduction="none", delta=cfg.huber_delta), b.weights)

        grad_norm = optimizer_step(self.optim, loss, self.q.parameters(), cfg.max_grad_norm)
        self.updates += 1
        if self.updates % cfg.target_update_interval == 0:
            polyak_update(self.q_target, self.q, cfg.tau)

        td = (y - q).detach()
        metrics = {
            "loss/q": float(loss.detach()),
            "stats/q_mean": float(q.detach().mean()),
            "stats/target_mean": float(y.mean()),
            "stats/td_abs": float(td.abs().mean()),
            "stats/grad_norm": float(grad_norm),
            "stats/epsilon": float(self.epsilon),
            **bonus_metrics,
        }
        return checked(
            UpdateResult(metrics, grad_steps=1, samples_trained=n, priorities=td.abs().cpu().numpy()),
            batch,
            self.updates,
        )

    def get_weights(self) -> dict[str, np.ndarray]:
        return module_weights(self.q)

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optim": self.optim.state_dict(),
            "updates": self.updates,
            "epsilon": self.epsilon,
            "bonus": None if self.bonus is None else self.bonus.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.optim.load_state_dict(state["optim"])
        self.updates = int(state["updates"])
        self.epsilon = float(state["epsilon"])
        if self.bonus is not None and state.get("bonus") is not None:
            self.bonus.load_state_dict(state["bonus"])


def make_policy(obs_space, act_space, cfg: DQNConfig, *, worker_index: int = 0, num_workers: int = 1):
    net = make_q_network(obs_space, act_space, cfg.hidden, cfg.dueling)
    return EpsilonGreedyQPolicy(
        obs_space,
        act_space,
        net,
        epsilon_start=cfg.apex_epsilon if cfg.apex else cfg.epsilon_start,
        epsilon_end=cfg.epsilon_end,
        exploration_fraction=cfg.exploration_fraction,
        apex_alpha=cfg.apex_alpha if cfg.apex else None,
        worker_index=worker_index,
        num_workers=num_workers,
    )


SPEC = AlgoSpec(
    name="dqn",
    config_cls=DQNConfig,
    on_policy=False,
    make_policy=make_policy,
    make_learner=DQNLearner,
    check_spaces=discrete_only("dqn"),
    to_replay=to_replay,
)
