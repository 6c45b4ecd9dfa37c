"""Tabular Q-learning (``--algo qlearn``): Watkins' update (Watkins and Dayan 1992), fed from replay.

    Q(s, a) ← Q(s, a) + α [ r + γ (1 - terminated) max_a' Q(s', a') - Q(s, a) ]

Each learner update applies it to every transition of a sampled minibatch. Workers act
either ε-greedily (ε annealed over the run) or with a count bonus
argmax_a Q(s, a) + c / N(s, a) (or c / √N), with the counts N kept by each worker's policy.
The published weights are the Q table itself. ``learners.tabular_eval`` (``qeval``) reuses
this module with the Bellman expectation backup in place of the max.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from tandem.agents.offpolicy import policy_rng
from tandem.agents.q import epsilon_greedy
from tandem.core.errors import TandemError
from tandem.core.schedules import linear_schedule
from tandem.core.types import Batch, UpdateResult
from tandem.learners.config import OffPolicyConfig
from tandem.learners.finite import checked
from tandem.learners.registry import AlgoSpec
from tandem.learners.returns import td_target

# ----------------------------------------------------------------------------- config


@dataclass
class QLearnConfig(OffPolicyConfig, replay_capacity=200_000, weights_publish_interval=50):
    """Hyperparameters of tabular Q-learning. Defaults: tuned for FrozenLake-v1 (slippery) and
    Taxi-v3 (benchmarks/NOTES.md)."""

    gamma: float = 0.99
    """Discount γ."""
    lr: float = 0.01
    """Step size α (the floor of α when ``lr_count_power`` > 0)."""
    lr_count_power: float = 0.6
    """If > 0, α(s,a) = max(lr, n(s,a)^-power), n = updates of (s,a) so far (Robbins-Monro); 0: α = lr."""
    exploration: Literal["epsilon", "count", "count_sqrt"] = "count"
    """'epsilon' (annealed ε-greedy), 'count' (argmax Q + c/N(s,a)) or 'count_sqrt' (argmax Q + c/√N)."""
    bonus_c: float = 1.0
    """Count-bonus scale c, in reward units."""
    epsilon_start: float = 1.0
    """ε at the start of the run ('epsilon' exploration)."""
    epsilon_end: float = 0.01
    """ε after ``exploration_fraction`` of the env-step budget."""
    exploration_fraction: float = 0.5
    """Fraction of the env-step budget over which ε anneals linearly."""


# ----------------------------------------------------------------------------- the math


def q_learning_target(
    q: np.ndarray, rewards: np.ndarray, next_states: np.ndarray, terminated: np.ndarray, gamma
) -> np.ndarray:
    """Q-learning target  y = r + γ (1 - terminated) max_a' Q(s', a').  [B] in, [B] out.

    ``gamma`` may be a [B] array of per-row discounts. Truncated rows bootstrap.
    """
    return td_target(rewards, q[next_states].max(axis=1), terminated.astype(np.float64), gamma)


def tabular_td_step(
    q: np.ndarray,
    update_counts: np.ndarray,
    states: np.ndarray,
    actions: np.ndarray,
    targets: np.ndarray,
    lr: float,
    lr_count_power: float = 0.0,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Move Q(s, a) toward y for every row of a minibatch, in place:

        Q(s, a) ← Q(s, a) + α(s, a) · mean_{i: (s_i, a_i) = (s, a)} w_i (y_i - Q(s, a))

    All targets are computed from the table before the step; rows that hit the same
    (s, a) are averaged, so a pair sampled k times moves by one step, not k. With
    ``lr_count_power`` = p > 0, α(s, a) = max(lr, n(s, a)^-p) where n counts the updates
    of the pair (``update_counts``, incremented here). Returns the TD errors y - Q [B].

    | arg           | shape  |
    |---------------|--------|
    | q             | [S, A] |
    | update_counts | [S, A] |
    | states, actions, targets, weights | [B] |
    """
    num_states, num_actions = q.shape
    td = targets - q[states, actions]
    w = np.ones_like(td) if weights is None else np.asarray(weights, dtype=np.float64)
    flat = states * num_actions + actions
    hits = np.bincount(flat, minlength=q.size).reshape(q.shape)
    td_sum = np.bincount(flat, weights=w * td, minlength=q.size).reshape(q.shape)
    update_counts += hits > 0
    touched = hits > 0
    alpha = np.full(q.shape, lr)
    if lr_count_power > 0:
        alpha[touched] = np.maximum(lr, update_counts[touched] ** -lr_count_power)
    q[touched] += alpha[touched] * td_sum[touched] / hits[touched]
    return td


# ----------------------------------------------------------------------------- learner


def batch_transitions(
    batch: Batch, default_gamma: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(s, a, r, s', γ) of a replay batch as flat [B] arrays; γ is the batch's per-row
    ``discount`` extra (n-step returns) when it has one, else ``default_gamma``."""
    s = np.asarray(batch.obs, dtype=np.int64).reshape(-1)
    a = np.asarray(batch.actions, dtype=np.int64).reshape(-1)
    s2 = np.asarray(batch.next_obs, dtype=np.int64).reshape(-1)
    r = np.asarray(batch.rewards, dtype=np.float64)
    gamma = np.asarray(batch.extras.get("discount", default_gamma), dtype=np.float64)
    return s, a, r, s2, gamma


class TabularTDLearner:
    """Replay-fed tabular TD learning. ``bootstrap(q, rewards, next_states, terminated, gamma)``
    gives the targets: :func:`q_learning_target` here, the expectation backup in ``qeval``.
    """

    def __init__(
        self,
        num_states: int,
        num_actions: int,
        cfg: Any,
        bootstrap: Callable[..., np.ndarray] = q_learning_target,
    ):
        self.cfg = cfg
        self.bootstrap = bootstrap
        self.q = np.zeros((num_states, num_actions), dtype=np.float64)
        self.update_counts = np.zeros((num_states, num_actions), dtype=np.int64)
        self.updates = 0

    def set_progress(self, fraction: float) -> None:
        """No schedule: the step size follows the visit counts, ε lives in the workers' policy."""

    def td_step(self, s, a, r, s2, terminated, gamma, weights=None) -> np.ndarray:
        """One tabular TD step on [B] transitions toward ``self.bootstrap``'s targets; the TD errors."""
        y = self.bootstrap(self.q, r, s2, terminated, gamma)
        cfg = self.cfg
        return tabular_td_step(self.q, self.update_counts, s, a, y, cfg.lr, cfg.lr_count_power, weights)

    def update(self, batch: Batch) -> UpdateResult:
        s, a, r, s2, gamma = batch_transitions(batch, self.cfg.gamma)
        td = self.td_step(s, a, r, s2, np.asarray(batch.terminated), gamma, batch.weights)
        self.updates += 1
        metrics = {
            "loss/td": float(np.mean(td**2)),
            "stats/q_mean": float(self.q[s, a].mean()),
            "stats/q_max": float(self.q.max()),
            "stats/pairs_visited": float((self.update_counts > 0).sum()),
        }
        # One sweep over the batch counts as one step, so grad_updates counts learner calls.
        return checked(
            UpdateResult(
                metrics, grad_steps=1, samples_trained=len(s), priorities=np.abs(td).astype(np.float32)
            ),
            batch,
            self.updates,
        )

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"q": self.q.astype(np.float32)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "q": torch.as_tensor(self.q),
            "update_counts": torch.as_tensor(self.update_counts),
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.q = np.asarray(state["q"], dtype=np.float64).copy()
        self.update_counts = np.asarray(state["update_counts"], dtype=np.int64).copy()
        self.updates = int(state["updates"])


# ----------------------------------------------------------------------------- acting


class TabularQPolicy:
    """Acts from a Q table: ε-greedy, or greedy on Q(s, a) + c / N(s, a) (or c / √N(s, a)).

    The counts N are this worker's own visits, updated in :meth:`act`; an untried action
    (N = 0) has an infinite bonus, so each is tried once per state first. ``explore=False``
    is greedy (ties broken at random).
    """

    def __init__(self, num_states: int, num_actions: int, cfg: QLearnConfig, worker_index: int = 0):
        if cfg.exploration not in ("epsilon", "count", "count_sqrt"):
            raise TandemError(
                f"exploration must be 'epsilon', 'count' or 'count_sqrt', not {cfg.exploration!r}: "
                "--set exploration=count"
            )
        self.cfg = cfg
        self.q = np.zeros((num_states, num_actions), dtype=np.float32)
        self.visits = np.zeros((num_states, num_actions), dtype=np.int64)
        self.epsilon = cfg.epsilon_start
        self.version = -1
        self.rng = policy_rng(worker_index)

    def set_progress(self, fraction: float) -> None:
        self.epsilon = linear_schedule(
            self.cfg.epsilon_start, self.cfg.epsilon_end, fraction, self.cfg.exploration_fraction
        )

    def act(self, obs: np.ndarray, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        s = np.asarray(obs, dtype=np.int64).reshape(-1)
        q = self.q[s].astype(np.float64)
        if not explore:
            return epsilon_greedy(q, 0.0, self.rng), {}
        if self.cfg.exploration == "epsilon":
            actions = epsilon_greedy(q, self.epsilon, self.rng)
        else:
            n = self.visits[s].astype(np.float64)
            with np.errstate(divide="ignore"):
                bonus = self.cfg.bonus_c / (n if self.cfg.exploration == "count" else np.sqrt(n))
            actions = epsilon_greedy(q + bonus, 0.0, self.rng)
        np.add.at(self.visits, (s, actions), 1)
        return actions, {}

    def set_weights(self, weights: dict[str, np.ndarray], version: int) -> None:
        self.q = np.asarray(weights["q"], dtype=np.float32).copy()
        self.version = version

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"q": self.q.copy()}


# ----------------------------------------------------------------------------- spec


def check_tabular_spaces(obs_space: gym.Space, act_space: gym.Space) -> str | None:
    """Tabular methods index a table by (s, a): both spaces must be Discrete."""
    if not (isinstance(obs_space, gym.spaces.Discrete) and isinstance(act_space, gym.spaces.Discrete)):
        return (
            f"tabular methods need Discrete observations and actions, got {obs_space} and {act_space}; "
            "use --algo dqn for Box observations"
        )
    return None


def make_policy(obs_space, act_space, cfg: QLearnConfig, *, worker_index: int = 0, num_workers: int = 1):
    return TabularQPolicy(int(obs_space.n), int(act_space.n), cfg, worker_index)


def make_learner(obs_space, act_space, cfg: QLearnConfig) -> TabularTDLearner:
    return TabularTDLearner(int(obs_space.n), int(act_space.n), cfg, q_learning_target)


def value_iteration(P: Mapping, num_states: int, num_actions: int, gamma: float, tol: float = 1e-12):
    """Q* from a Gymnasium toy-text model ``P[s][a] = [(prob, s', r, terminated), ...]``:

        Q(s, a) ← Σ_{s'} p(s'|s,a) [ r + γ (1 - terminated) max_a' Q(s', a') ]

    iterated to a fixed point. The ground truth for tests and for Q-error plots.
    """
    q = np.zeros((num_states, num_actions))
    while True:
        new = np.zeros_like(q)
        v = q.max(axis=1)
        for s in range(num_states):
            for a in range(num_actions):
                new[s, a] = sum(p * (r + gamma * (1.0 - done) * v[s2]) for p, s2, r, done in P[s][a])
        if np.max(np.abs(new - q)) < tol:
            return new
        q = new


SPEC = AlgoSpec(
    name="qlearn",
    config_cls=QLearnConfig,
    on_policy=False,
    make_policy=make_policy,
    make_learner=make_learner,
    check_spaces=check_tabular_spaces,
)
