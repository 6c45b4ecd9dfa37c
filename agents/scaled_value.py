"""An actor-critic whose critic works in standardized return units (for rwr).

    V(s) = μ_R + σ_R · v_φ(s)

μ_R and σ_R are buffers (so they travel with the weights to the workers, whose copy of V
bootstraps truncated episodes); the learner keeps them as slow moving averages of the
replayed returns and regresses v_φ on (R - μ_R) / σ_R. One critic step size then fits
rewards of +1 per step (CartPole) and -16 per step (Pendulum) alike.
"""

from __future__ import annotations

import torch

from tandem.agents.actor_critic import ActorCritic


class ScaledValueActorCritic(ActorCritic):
    """:class:`ActorCritic` with V(s) = μ_R + σ_R v_φ(s) (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("ret_mean", torch.zeros(()))
        self.register_buffer("ret_std", torch.ones(()))
        self.register_buffer("ret_seen", torch.zeros(()))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """V(s) [B] in return units."""
        return self.ret_mean + self.ret_std * super().value(x)

    def value_numpy(self, v):
        """:meth:`value` for the worker's numpy forward pass."""
        return float(self.ret_mean) + float(self.ret_std) * v

    def normalized_value(self, x: torch.Tensor) -> torch.Tensor:
        """v_φ(s) [B], in standardized units: what the critic loss regresses."""
        return super().value(x)

    @torch.no_grad()
    def track_returns(self, returns: torch.Tensor, rate: float) -> None:
        """μ ← (1-ρ) μ + ρ mean(R),  σ ← (1-ρ) σ + ρ std(R); ρ = 1 on the first call."""
        rho = 1.0 if self.ret_seen.item() == 0 else rate
        self.ret_seen.fill_(1.0)
        self.ret_mean.mul_(1 - rho).add_(rho * returns.mean())
        self.ret_std.mul_(1 - rho).add_(rho * returns.std().clamp(min=1e-3))
