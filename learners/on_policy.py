"""What pg and ppo share: turning a time-major Rollout into flat training tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tandem.agents.actor_critic import ActorCritic
from tandem.agents.torch_utils import to_device
from tandem.core.types import Rollout


@dataclass
class FlatBatch:
    """A rollout flattened to [B = T*N] tensors, with advantages and return targets attached."""

    x: torch.Tensor
    """Encoded observations [B, D]."""
    actions: torch.Tensor
    """[B] (Discrete) or [B, A] (Box)."""
    logp_old: torch.Tensor
    """log π_old(a|s) recorded by the worker [B]."""
    advantages: torch.Tensor
    """Â_t [B], not yet normalized."""
    returns: torch.Tensor
    """Value-function targets [B]."""
    values_old: torch.Tensor
    """V_old(s_t) [B]."""

    def __len__(self) -> int:
        return int(self.x.shape[0])


@torch.no_grad()
def critic_values(model: ActorCritic, rollout: Rollout) -> tuple[np.ndarray, np.ndarray]:
    """V(s_t) and V(s_{t+1}) as [T, N] numpy arrays, from one batched forward pass on the
    model's device."""
    T, N = rollout.rewards.shape
    both = np.concatenate([rollout.obs, rollout.next_obs], axis=0)
    flat = torch.as_tensor(both.reshape(2 * T * N, *both.shape[2:]))
    x = model.obs_tensor(to_device(flat, model_device(model)))
    v = model.value(x).cpu().numpy().reshape(2, T, N)
    return v[0], v[1]


def flatten(
    model: ActorCritic, rollout: Rollout, advantages: np.ndarray, returns: np.ndarray, values: np.ndarray
) -> FlatBatch:
    """The rollout as flat tensors on the model's device (one pinned copy per field on CUDA;
    this runs once per iteration, not per minibatch)."""
    T, N = rollout.rewards.shape
    device = model_device(model)
    obs = rollout.obs.reshape(T * N, *rollout.obs.shape[2:])
    acts = rollout.actions.reshape(T * N, *rollout.actions.shape[2:])
    put = lambda a: to_device(torch.as_tensor(a), device)
    return FlatBatch(
        x=model.obs_tensor(put(obs)),
        actions=put(acts),
        logp_old=put(rollout.extras["logp"].reshape(-1)),
        advantages=put(advantages.reshape(-1)),
        returns=put(returns.reshape(-1)),
        values_old=put(values.reshape(-1).astype(np.float32)),
    )


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a module's parameters (all of a learner's live on one)."""
    return next(model.parameters()).device


def normalize(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(Â - mean) / std: a per-batch baseline and scale (unbiased up to the scale)."""
    if adv.numel() < 2:
        return adv
    return (adv - adv.mean()) / (adv.std() + eps)
