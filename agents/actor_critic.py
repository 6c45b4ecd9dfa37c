"""Stochastic policies with an optional value head, for the on-policy learners (pg, ppo).

| action space | distribution                                  | act() extras        |
|--------------|-----------------------------------------------|---------------------|
| Discrete(n)  | Categorical(logits = π_θ(s))                  | logp [N], value [N] |
| Box(d,)      | Normal(μ_θ(s), diag σ), σ = exp(log_std) state-independent | logp [N], value [N] |

Continuous actions are returned unclipped (the log-prob must match the sampled value); the
worker clips them to the Box bounds before ``env.step``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

from tandem.agents.numpy_net import (
    categorical_sample,
    gaussian_log_prob,
    log_softmax,
    numpy_mirror,
    obs_array,
    take_rows,
)
from tandem.agents.torch_utils import flat_obs_dim, load_module_weights, mlp, module_weights, obs_to_tensor


class ActorCritic(nn.Module):
    """π_θ(a|s) and V_φ(s) as two separate MLPs (no shared trunk: PPO's default on control tasks)."""

    def __init__(
        self,
        obs_space: gym.Space,
        act_space: gym.Space,
        hidden: tuple[int, ...] = (64, 64),
        use_value: bool = True,
        init_log_std: float = 0.0,
    ):
        super().__init__()
        self.obs_space, self.act_space = obs_space, act_space
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        d_in = flat_obs_dim(obs_space)
        d_out = int(act_space.n) if self.discrete else int(np.prod(act_space.shape))
        # Small last-layer gain: near-uniform initial policy (Andrychowicz et al. 2021, "What matters").
        self.pi = mlp([d_in, *hidden, d_out], out_gain=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((d_out,), float(init_log_std)))
        self.v = mlp([d_in, *hidden, 1], out_gain=1.0) if use_value else None
        self.version = 0

    def obs_tensor(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        return obs_to_tensor(obs, self.obs_space)

    def dist(self, x: torch.Tensor) -> Distribution:
        """The action distribution for encoded observations ``x`` [B, D]."""
        out = self.pi(x)
        if self.discrete:
            return Categorical(logits=out)
        return Normal(out, self.log_std.exp().expand_as(out))

    def log_prob(self, d: Distribution, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s) [B]; diagonal Gaussian dims are independent, so their log-probs add."""
        return d.log_prob(actions) if self.discrete else d.log_prob(actions).sum(-1)

    def entropy(self, d: Distribution) -> torch.Tensor:
        """H(π(·|s)) [B]."""
        return d.entropy() if self.discrete else d.entropy().sum(-1)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """V(s) [B]; zeros when the policy has no critic (plain REINFORCE)."""
        if self.v is None:
            return x.new_zeros(x.shape[0])
        return self.v(x).squeeze(-1)

    # --- the Policy protocol, used inside rollout workers ---------------------------------
    def act(self, obs: np.ndarray, explore: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        nets = numpy_mirror(self, self.pi, *([self.v] if self.v is not None else []))
        if nets is not None:
            return self._act_numpy(nets, obs, explore)
        return self._act_torch(obs, explore)

    @torch.no_grad()
    def _act_torch(self, obs: np.ndarray, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = self.obs_tensor(obs)
        d = self.dist(x)
        if explore:
            a = d.sample()
        else:
            a = d.probs.argmax(-1) if self.discrete else d.mean
        extras = {
            "logp": self.log_prob(d, a).numpy().astype(np.float32),
            "value": self.value(x).numpy().astype(np.float32),
        }
        actions = a.numpy().astype(np.int64 if self.discrete else np.float32)
        return actions, extras

    def _act_numpy(self, nets, obs: np.ndarray, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``act`` in numpy (see ``agents.numpy_net``): the same distributions, sampled with a
        generator drawn once from torch's seed, so a seeded worker stays reproducible."""
        if self.__dict__.get("_rng") is None:
            self.__dict__["_rng"] = np.random.default_rng(int(torch.randint(2**62, ())))
        rng = self.__dict__["_rng"]
        x = obs_array(obs, self.obs_space)
        out = nets[0](x)
        if self.discrete:
            logp_all = log_softmax(out)
            a = categorical_sample(logp_all, rng) if explore else out.argmax(-1)
            logp = take_rows(logp_all, a)
            actions = a.astype(np.int64)
        else:
            log_std = self.log_std.detach().numpy()  # [A], broadcast over the batch
            actions = out + np.exp(log_std) * rng.standard_normal(out.shape, np.float32) if explore else out
            actions = actions.astype(np.float32, copy=False)
            logp = gaussian_log_prob(actions, out, log_std)
        value = self.value_numpy(nets[1](x)[:, 0]) if len(nets) > 1 else np.zeros(len(x), np.float32)
        return actions, {"logp": logp.astype(np.float32), "value": value.astype(np.float32, copy=False)}

    def value_numpy(self, v: np.ndarray) -> np.ndarray:
        """V(s) from the critic net's output, in numpy: a subclass that changes :meth:`value`
        changes this too."""
        return v

    def get_weights(self) -> dict[str, np.ndarray]:
        return module_weights(self)

    def set_weights(self, weights: dict[str, np.ndarray], version: int) -> None:
        load_module_weights(self, weights)
        self.version = version

    def set_progress(self, fraction: float) -> None:
        """No acting schedule: exploration is the policy's own entropy, trained by the learner."""
