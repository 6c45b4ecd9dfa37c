"""Networks for continuous control, shared by SAC and TD3.

Conventions. The networks work in the unit box [-1, 1]^A; :class:`ActionScaler` maps to and
from the env's ``Box(low, high)``. Replay stores actions in env units, so a learner maps
sampled actions back with ``to_unit`` before feeding the critic. Entropy (SAC) is measured
in the unit box, as in Stable-Baselines3, so the target entropy -|A| does not depend on
the env's action bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tandem.agents.numpy_net import numpy_mirror, obs_array
from tandem.agents.offpolicy import policy_rng
from tandem.agents.torch_utils import load_module_weights, mlp, module_weights, obs_to_tensor
from tandem.core.errors import TandemError

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class ActionScaler:
    """Affine map between the unit box and the env's bounds:  a = c + h · u,  u ∈ [-1, 1]^A.

    c = (high + low) / 2 and h = (high - low) / 2.
    """

    def __init__(self, space: gym.spaces.Box):
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise TandemError(
                f"sac and td3 need finite action bounds, but the env's action space is {space}: "
                "wrap the env to bound its actions, or use --algo ppo"
            )
        self.center = ((high + low) / 2).astype(np.float32)
        self.half_range = ((high - low) / 2).astype(np.float32)
        self.dtype = space.dtype
        self._unit_consts: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def to_env(self, u: np.ndarray) -> np.ndarray:
        return (self.center + self.half_range * np.clip(u, -1.0, 1.0)).astype(self.dtype)

    def to_unit(self, a: torch.Tensor) -> torch.Tensor:
        if a.device not in self._unit_consts:  # once per device: no host-to-device copy per update
            self._unit_consts[a.device] = (
                torch.as_tensor(self.center, device=a.device),
                torch.as_tensor(self.half_range, device=a.device),
            )
        c, h = self._unit_consts[a.device]
        return ((a - c) / h).clamp(-1.0, 1.0)


def tanh_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log π(u | s) of u = tanh(x), x ~ N(μ, σ²), summed over action dims (SAC paper, appendix C):

        log π(u|s) = Σ_j [ log N(x_j; μ_j, σ_j) - log(1 - tanh²(x_j)) ]

    with the numerically stable  log(1 - tanh² x) = 2 (log 2 - x - softplus(-2x)).
    Shapes: x, mean, log_std [B, A] -> [B].
    """
    gauss = -0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    log_det = 2.0 * (math.log(2.0) - x - F.softplus(-2.0 * x))
    return (gauss - log_det).sum(dim=-1)


class TanhGaussianActor(nn.Module):
    """SAC's actor: s -> (μ, log σ), u = tanh(μ + σ ε).

    | method                 | returns                                  |
    |------------------------|------------------------------------------|
    | forward(obs)           | u [B, A] (reparameterized), log π [B]    |
    | forward(obs, True)     | tanh(μ) [B, A], its log π [B]            |
    | explore_action(obs, e) | u [B, A] without gradients (acting)      |

    log σ is squashed into [LOG_STD_MIN, LOG_STD_MAX] with a tanh, as in CleanRL.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        hidden = list(hidden)
        self.trunk = nn.Sequential(*mlp([obs_dim, *hidden], activation=nn.ReLU), nn.ReLU())
        self.mean = mlp([hidden[-1], act_dim], out_gain=0.01)
        self.log_std = mlp([hidden[-1], act_dim], out_gain=0.01)

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(obs)
        log_std = torch.tanh(self.log_std(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)
        return self.mean(h), log_std

    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.dist_params(obs)
        x = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(x), tanh_gaussian_log_prob(x, mean, log_std)

    @torch.no_grad()
    def explore_action(self, obs: torch.Tensor, explore: bool) -> torch.Tensor:
        return self.forward(obs, deterministic=not explore)[0]

    def explore_action_numpy(
        self, x: np.ndarray, explore: bool, rng: np.random.Generator
    ) -> np.ndarray | None:
        """``explore_action`` in numpy (``agents.numpy_net``); None where it cannot run there."""
        nets = numpy_mirror(self, self.trunk, self.mean, self.log_std)
        if nets is None:
            return None
        h = nets[0](x)
        mean = nets[1](h)
        if not explore:
            return np.tanh(mean)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (np.tanh(nets[2](h)) + 1.0)
        return np.tanh(mean + np.exp(log_std) * rng.standard_normal(mean.shape, np.float32))


class DeterministicActor(nn.Module):
    """TD3's actor: u = tanh(μ(s)). Exploration adds N(0, σ²) in the unit box, then clips."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], exploration_noise: float = 0.1):
        super().__init__()
        self.net = mlp([obs_dim, *hidden, act_dim], activation=nn.ReLU, out_gain=0.01)
        self.exploration_noise = exploration_noise

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    @torch.no_grad()
    def explore_action(self, obs: torch.Tensor, explore: bool) -> torch.Tensor:
        u = self.forward(obs)
        if explore and self.exploration_noise > 0:
            u = (u + self.exploration_noise * torch.randn_like(u)).clamp(-1.0, 1.0)
        return u

    def explore_action_numpy(
        self, x: np.ndarray, explore: bool, rng: np.random.Generator
    ) -> np.ndarray | None:
        """``explore_action`` in numpy (``agents.numpy_net``); None where it cannot run there."""
        nets = numpy_mirror(self, self.net)
        if nets is None:
            return None
        u = np.tanh(nets[0](x))
        if explore and self.exploration_noise > 0:
            u = np.clip(u + self.exploration_noise * rng.standard_normal(u.shape, np.float32), -1.0, 1.0)
        return u


class TwinQ(nn.Module):
    """Clipped double-Q critics (Fujimoto et al. 2018): two independent Q(s, u) MLPs.

    forward(obs [B, D], u [B, A]) -> (Q1 [B], Q2 [B]); u is in the unit box.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden, 1]
        self.q1 = mlp(sizes, activation=nn.ReLU)
        self.q2 = mlp(sizes, activation=nn.ReLU)

    def forward(self, obs: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, u], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def first(self, obs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Q1 alone [B] (TD3's actor loss uses only the first critic)."""
        return self.q1(torch.cat([obs, u], dim=-1)).squeeze(-1)


def twin_q_loss(
    q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Critic regression of both heads onto one target y, importance weighted:

        L = (1/B) Σ_i w_i · ½ [(Q1_i - y_i)² + (Q2_i - y_i)²]

    Returns (loss, |TD error| per row = ½(|Q1 - y| + |Q2 - y|), detached, for priorities).
    """
    per_sample = 0.5 * ((q1 - target) ** 2 + (q2 - target) ** 2)
    td = 0.5 * ((q1 - target).abs() + (q2 - target).abs())
    return (weights * per_sample).mean(), td.detach()


class ContinuousActorPolicy:
    """The acting side of SAC and TD3: a CPU actor plus the env's action scaling.

    With ``random_warmup``, it acts uniformly at random in the action box until the learner
    has published trained weights (version > 0): the learner trains only once replay holds
    ``min_size`` transitions, so this is the usual uniform warm-up of SAC and TD3 without
    the worker needing to count steps.
    """

    def __init__(
        self,
        obs_space: gym.Space,
        act_space: gym.spaces.Box,
        actor: nn.Module,
        *,
        random_warmup: bool = True,
        worker_index: int = 0,
    ):
        self.obs_space = obs_space
        self.actor = actor
        self.scaler = ActionScaler(act_space)
        self.act_dim = int(np.prod(act_space.shape))
        self.random_warmup = random_warmup
        self.version = 0
        self.rng = policy_rng(worker_index)

    def act(self, obs: np.ndarray, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if explore and self.random_warmup and self.version <= 0:
            u = self.rng.uniform(-1.0, 1.0, size=(obs.shape[0], self.act_dim))
        else:
            u = self.actor.explore_action_numpy(obs_array(obs, self.obs_space), explore, self.rng)
            if u is None:
                u = self.actor.explore_action(obs_to_tensor(obs, self.obs_space), explore).numpy()
        return self.scaler.to_env(u), {}

    def set_progress(self, fraction: float) -> None:
        """No acting schedule: the exploration noise (or SAC's sampling) is constant."""

    def set_weights(self, weights: dict[str, np.ndarray], version: int) -> None:
        load_module_weights(self.actor, weights)
        self.version = version

    def get_weights(self) -> dict[str, np.ndarray]:
        return module_weights(self.actor)
