"""Q-value networks and epsilon-greedy acting, shared by tabular Q-learning and DQN.

Exploration schedules (:mod:`core.schedules`) are plain functions of the run's progress
(0..1 of the env-step budget), which the rollout worker passes to ``Policy.set_progress``
before each fragment.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tandem.agents.numpy_net import numpy_mirror, obs_array
from tandem.agents.offpolicy import policy_rng
from tandem.agents.torch_utils import flat_obs_dim, load_module_weights, mlp, module_weights, obs_to_tensor
from tandem.core.errors import TandemError
from tandem.core.schedules import linear_schedule


def apex_epsilon(base: float, alpha: float, worker_index: int, num_workers: int) -> float:
    """Ape-X's fixed per-worker epsilon (Horgan et al. 2018):  ε_i = ε^(1 + α i / (N - 1)).

    Worker 0 explores most (ε), the last one least (ε^(1+α)); with one worker, ε.
    """
    if num_workers <= 1:
        return base
    return float(base ** (1.0 + alpha * worker_index / (num_workers - 1)))


def epsilon_greedy(q_values: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """[N, A] Q-values -> [N] int64 actions: argmax with prob 1-ε, uniform with prob ε.

    Ties in the argmax are broken at random, so an all-zero table does not always pick action 0.
    """
    n, num_actions = q_values.shape
    is_max = q_values == q_values.max(axis=1, keepdims=True)
    greedy = np.argmax(is_max * rng.random(q_values.shape), axis=1)
    random = rng.integers(0, num_actions, size=n)
    return np.where(rng.random(n) < epsilon, random, greedy).astype(np.int64)


class QNetwork(nn.Module):
    """s -> Q(s, ·) for every discrete action, optionally with a dueling head.

    Dueling (Wang et al. 2016):  Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a').

    | input  | shape  |        | output | shape  |
    |--------|--------|--------|--------|--------|
    | obs    | [B, D] |   ->   | Q      | [B, A] |
    """

    def __init__(self, obs_dim: int, num_actions: int, hidden: Sequence[int], dueling: bool = False):
        super().__init__()
        self.dueling = dueling
        hidden = list(hidden)
        if dueling and not hidden:
            raise TandemError("dueling heads need a hidden layer: --set hidden=[64] or --set dueling=false")
        if dueling:
            self.trunk = mlp([obs_dim, *hidden], activation=nn.ReLU)
            self.trunk.append(nn.ReLU())
            self.value = mlp([hidden[-1], 1], out_gain=1.0)
            self.advantage = mlp([hidden[-1], num_actions], out_gain=1.0)
        else:
            self.net = mlp([obs_dim, *hidden, num_actions], activation=nn.ReLU, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.dueling:
            return self.net(obs)
        h = self.trunk(obs)
        adv = self.advantage(h)
        return self.value(h) + adv - adv.mean(dim=1, keepdim=True)

    def q_numpy(self, x: np.ndarray) -> np.ndarray | None:
        """``forward`` in numpy (``agents.numpy_net``); None where it cannot run there."""
        if not self.dueling:
            nets = numpy_mirror(self, self.net)
            return None if nets is None else nets[0](x)
        nets = numpy_mirror(self, self.trunk, self.value, self.advantage)
        if nets is None:
            return None
        h = nets[0](x)
        adv = nets[2](h)
        return nets[1](h) + adv - adv.mean(axis=1, keepdims=True)


class EpsilonGreedyQPolicy:
    """The acting side of DQN: a CPU copy of the Q network plus an exploration schedule.

    ``epsilon`` is either annealed with the run's progress (``set_progress``), or fixed per
    worker (Ape-X). ``explore=False`` acts greedily.
    """

    def __init__(
        self,
        obs_space: gym.Space,
        act_space: gym.spaces.Discrete,
        net: QNetwork,
        *,
        epsilon_start: float,
        epsilon_end: float,
        exploration_fraction: float,
        apex_alpha: float | None = None,
        worker_index: int = 0,
        num_workers: int = 1,
    ):
        self.obs_space = obs_space
        self.net = net
        self.schedule = (epsilon_start, epsilon_end, exploration_fraction)
        self.fixed_epsilon = (
            None if apex_alpha is None else apex_epsilon(epsilon_start, apex_alpha, worker_index, num_workers)
        )
        self.epsilon = epsilon_start if self.fixed_epsilon is None else self.fixed_epsilon
        self.version = -1
        self.rng = policy_rng(worker_index)

    def set_progress(self, fraction: float) -> None:
        """Anneal ε with the fraction of the env-step budget done (no-op for Ape-X epsilons)."""
        if self.fixed_epsilon is None:
            start, end, duration = self.schedule
            self.epsilon = linear_schedule(start, end, fraction, duration)

    def act(self, obs: np.ndarray, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        q = self.net.q_numpy(obs_array(obs, self.obs_space))
        if q is None:
            with torch.no_grad():
                q = self.net(obs_to_tensor(obs, self.obs_space)).numpy()
        return epsilon_greedy(q, self.epsilon if explore else 0.0, self.rng), {}

    def set_weights(self, weights: dict[str, np.ndarray], version: int) -> None:
        load_module_weights(self.net, weights)
        self.version = version

    def get_weights(self) -> dict[str, np.ndarray]:
        return module_weights(self.net)


def make_q_network(obs_space: gym.Space, act_space: gym.spaces.Discrete, hidden, dueling: bool) -> QNetwork:
    """The Q network for these spaces (Discrete observations are one-hot encoded)."""
    return QNetwork(flat_obs_dim(obs_space), int(act_space.n), hidden, dueling)
