"""Tabular policy evaluation (``--algo qeval``): fit Q^π of a fixed policy π from replay.

    Q(s, a) ← Q(s, a) + α [ r + γ (1 - terminated) Σ_a' π(a'|s') Q(s', a') - Q(s, a) ]

the Bellman expectation backup (expected SARSA toward a fixed π). Because the backup takes
the expectation over π at s' and a is given, it is off-policy: the workers may act with any
behaviour that visits every (s, a) (uniformly at random by default) or with π itself.
π is uniform by default, or a table loaded from a ``.npy`` file: [S, A] probabilities, or
[S] deterministic actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tandem.agents.offpolicy import policy_rng
from tandem.core.errors import TandemError
from tandem.learners.config import OffPolicyConfig
from tandem.learners.registry import AlgoSpec
from tandem.learners.returns import td_target
from tandem.learners.tabular import TabularTDLearner, check_tabular_spaces


@dataclass
class QEvalConfig(OffPolicyConfig, replay_capacity=200_000, weights_publish_interval=50):
    """Hyperparameters of tabular policy evaluation."""

    gamma: float = 0.99
    """Discount γ."""
    lr: float = 0.05
    """Step size α (the floor of α when ``lr_count_power`` > 0)."""
    lr_count_power: float = 0.6
    """If > 0, α(s,a) = max(lr, n(s,a)^-power), n = updates of (s,a) so far; 0: α = lr."""
    target_policy: str = "uniform"
    """π to evaluate: 'uniform', or a path to a .npy table ([S, A] probabilities or [S] actions)."""
    behavior: Literal["uniform", "target"] = "uniform"
    """How workers act: 'uniform' (random actions, covers every (s, a)) or 'target' (sample π)."""


def policy_table(spec: str | np.ndarray, num_states: int, num_actions: int) -> np.ndarray:
    """π as an [S, A] row-stochastic array from 'uniform', a .npy path, or an array.

    An [S] integer array means the deterministic policy π(a|s) = 1[a = table[s]].
    """
    if isinstance(spec, str):
        if spec == "uniform":
            return np.full((num_states, num_actions), 1.0 / num_actions)
        try:
            spec = np.load(spec)
        except (OSError, ValueError) as e:
            raise TandemError(f"target_policy {spec!r}: cannot load it as a .npy table ({e})") from None
    table = np.asarray(spec)
    if table.shape == (num_states,):
        return np.eye(num_actions)[table.astype(np.int64)]
    if table.shape != (num_states, num_actions) or not np.allclose(table.sum(axis=1), 1.0):
        raise TandemError(
            f"target_policy table has shape {table.shape}: it must be [S]={num_states} actions or "
            f"[S, A]=[{num_states}, {num_actions}] probabilities with rows summing to 1"
        )
    return table.astype(np.float64)


def expectation_target(pi: np.ndarray):
    """The expectation backup  y = r + γ (1 - terminated) Σ_a' π(a'|s') Q(s', a')  for a fixed π."""

    def bootstrap(q, rewards, next_states, terminated, gamma):
        next_v = (pi[next_states] * q[next_states]).sum(axis=1)
        return td_target(rewards, next_v, terminated.astype(np.float64), gamma)

    return bootstrap


def policy_q_values(P: Mapping, pi: np.ndarray, gamma: float) -> np.ndarray:
    """The analytic Q^π of a toy-text model ``P[s][a] = [(prob, s', r, terminated), ...]``.

    Solves the linear Bellman expectation equations  Q = R + γ T Π Q,  i.e.
    (I - γ T Π) Q = R, with R(s,a) = Σ p r, T[(s,a), s'] = Σ p (1 - terminated),
    Π[s', (s',a')] = π(a'|s').
    """
    num_states, num_actions = pi.shape
    n = num_states * num_actions
    R = np.zeros(n)
    T = np.zeros((n, num_states))
    for s in range(num_states):
        for a in range(num_actions):
            for p, s2, r, done in P[s][a]:
                R[s * num_actions + a] += p * r
                T[s * num_actions + a, s2] += p * (1.0 - done)
    Pi = np.zeros((num_states, n))
    for s in range(num_states):
        Pi[s, s * num_actions : (s + 1) * num_actions] = pi[s]
    return np.linalg.solve(np.eye(n) - gamma * T @ Pi, R).reshape(num_states, num_actions)


class BehaviorPolicy:
    """Acts uniformly at random, or by sampling π. The Q table it receives is only kept for display."""

    def __init__(self, pi: np.ndarray, behavior: str, worker_index: int = 0):
        if behavior not in ("uniform", "target"):
            raise TandemError(
                f"behavior must be 'uniform' or 'target', not {behavior!r}: --set behavior=uniform"
            )
        self.pi = pi if behavior == "target" else np.full_like(pi, 1.0 / pi.shape[1])
        self.q = np.zeros_like(pi, dtype=np.float32)
        self.version = -1
        self.rng = policy_rng(worker_index)

    def act(self, obs: np.ndarray, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        probs = self.pi[np.asarray(obs, dtype=np.int64).reshape(-1)]
        u = self.rng.random((probs.shape[0], 1))
        actions = np.minimum((u > probs.cumsum(axis=1)).sum(axis=1), probs.shape[1] - 1)
        return actions.astype(np.int64), {}

    def set_progress(self, fraction: float) -> None:
        """No schedule: the behaviour policy is fixed while Q^π is evaluated."""

    def set_weights(self, weights: dict[str, np.ndarray], version: int) -> None:
        self.q = np.asarray(weights["q"], dtype=np.float32).copy()
        self.version = version

    def get_weights(self) -> dict[str, np.ndarray]:
        return {"q": self.q.copy()}


def make_policy(obs_space, act_space, cfg: QEvalConfig, *, worker_index: int = 0, num_workers: int = 1):
    pi = policy_table(cfg.target_policy, int(obs_space.n), int(act_space.n))
    return BehaviorPolicy(pi, cfg.behavior, worker_index)


def make_learner(obs_space, act_space, cfg: QEvalConfig) -> TabularTDLearner:
    pi = policy_table(cfg.target_policy, int(obs_space.n), int(act_space.n))
    return TabularTDLearner(int(obs_space.n), int(act_space.n), cfg, expectation_target(pi))


SPEC = AlgoSpec(
    name="qeval",
    config_cls=QEvalConfig,
    on_policy=False,
    make_policy=make_policy,
    make_learner=make_learner,
    check_spaces=check_tabular_spaces,
)
