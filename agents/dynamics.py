"""An ensemble of probabilistic dynamics models (PETS, Chua et al. 2018; the MBPO model).

Member e maps (s, u) to a diagonal Gaussian over y = (s' - s, r) and a termination logit:

    p_e(y | s, u) = N(μ_e(s, u), diag exp(ℓ_e(s, u))),   P_e(terminated | s, u) = σ(z_e(s, u))

trained by the Gaussian negative log-likelihood plus the termination cross-entropy:

    L = mean[ (μ - y)² e^{-ℓ} + ℓ ] + 0.01 (Σ ℓ_max - Σ ℓ_min) + BCE(z, terminated)

with ℓ soft-clamped into the learned [ℓ_min, ℓ_max] (PETS' bounds, which stop the variance
collapsing or exploding off the data). Inputs and targets are standardized by statistics of the
data seen so far. The E members are held as batched weight tensors [E, in, out], so one
``bmm`` evaluates them all; each member trains on its own random minibatch (a bootstrap of
the data without copying it), which is what makes them disagree off the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: [E, N, in] -> [E, N, out]."""

    def __init__(self, ensemble: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(ensemble, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def soft_clamp(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """high - softplus(high - x), then low + softplus(· - low): smooth, gradient-carrying bounds."""
    x = high - F.softplus(high - x)
    return low + F.softplus(x - low)


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean over elements of (μ - y)² e^{-ℓ} + ℓ (the NLL up to constants and a factor ½)."""
    return ((mean - target) ** 2 * torch.exp(-logvar) + logvar).mean()


class ProbabilisticEnsemble(nn.Module):
    """E Gaussian models of (Δs, r) and a termination logit, given (s, u) with u in the unit box."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], ensemble: int = 5):
        super().__init__()
        self.obs_dim, self.act_dim, self.ensemble = obs_dim, act_dim, ensemble
        sizes = [obs_dim + act_dim, *hidden]
        self.layers = nn.ModuleList(
            EnsembleLinear(ensemble, a, b) for a, b in zip(sizes, sizes[1:], strict=False)
        )
        self.out_dim = obs_dim + 1
        self.head = EnsembleLinear(ensemble, sizes[-1], 2 * self.out_dim + 1)
        self.max_logvar = nn.Parameter(torch.full((self.out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.out_dim,), -10.0))
        for name in ("in_mean", "in_std", "out_mean", "out_std"):
            d = obs_dim + act_dim if name.startswith("in") else self.out_dim
            self.register_buffer(name, torch.zeros(d) if name.endswith("mean") else torch.ones(d))

    def set_normalizer(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        """Standardize by the mean and std of ``inputs`` [N, s+u] and ``targets`` [N, Δs+r]."""
        for (m, s), x in ((("in_mean", "in_std"), inputs), (("out_mean", "out_std"), targets)):
            x = torch.as_tensor(x, dtype=torch.float32)
            getattr(self, m).copy_(x.mean(0))
            getattr(self, s).copy_(x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(x.shape[1]))

    def forward(self, obs: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(s, u) [E, N, ·] or [N, ·] -> standardized mean, log-variance [E, N, s+1], term logit [E, N]."""
        x = (torch.cat([obs, u], dim=-1) - self.in_mean) / self.in_std
        if x.dim() == 2:
            x = x.expand(self.ensemble, *x.shape)
        for layer in self.layers:
            x = F.silu(layer(x))
        out = self.head(x)
        mean, logvar, logit = out[..., : self.out_dim], out[..., self.out_dim : -1], out[..., -1]
        return mean, soft_clamp(logvar, self.min_logvar, self.max_logvar), logit

    def loss(self, obs, u, delta_obs, rewards, terminated) -> tuple[torch.Tensor, dict[str, float]]:
        """L over per-member minibatches: every argument is [E, N, ·] (or [E, N])."""
        mean, logvar, logit = self(obs, u)
        target = (torch.cat([delta_obs, rewards[..., None]], dim=-1) - self.out_mean) / self.out_std
        nll = gaussian_nll(mean, logvar, target)
        bce = F.binary_cross_entropy_with_logits(logit, terminated)
        bound = 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())
        mse = float(((mean.detach() - target) ** 2).mean())
        return nll + bound + bce, {
            "loss/model_nll": float(nll.detach()),
            "loss/model_term": float(bce.detach()),
            "stats/model_mse": mse,
        }

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, u: torch.Tensor, gen: torch.Generator | None = None):
        """One draw per row from a member chosen uniformly per row (MBPO's TS-1 propagation):
        s' = s + Δs, r, terminated = σ(z) > ½. All [N, ·] in, [N, ·] out."""
        mean, logvar, logit = self(obs, u)
        n = obs.shape[0]
        member = torch.randint(0, self.ensemble, (n,), generator=gen)
        rows = torch.arange(n)
        mean, std = mean[member, rows], torch.exp(0.5 * logvar[member, rows])
        y = (mean + std * torch.randn(mean.shape, generator=gen)) * self.out_std + self.out_mean
        return obs + y[:, : self.obs_dim], y[:, self.obs_dim], logit[member, rows] > 0
