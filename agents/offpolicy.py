"""Pieces every replay-fed learner shares: batch -> tensors, weighted losses, Polyak targets,
the per-worker exploration generator.

DQN, SAC and TD3 all read a :class:`core.types.Batch` sampled from replay, weight each
row's loss by the prioritized-replay importance weight when there is one, and keep
slowly-moving target networks. Those three steps live here once.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tandem.agents.torch_utils import obs_to_tensor, to_device
from tandem.core.types import Batch


class TensorBatch(NamedTuple):
    """A replay batch as float/long tensors (B rows).

    | field      | shape    | dtype                          | meaning                              |
    |------------|----------|--------------------------------|--------------------------------------|
    | obs        | [B, D]   | float32                        | s (Discrete obs one-hot encoded)     |
    | actions    | [B]/[B,A]| int64 (Discrete) / float32 (Box)| a, as stored (env units)            |
    | rewards    | [B]      | float32                        | r, or the n-step return G            |
    | next_obs   | [B, D]   | float32                        | bootstrap state s'                   |
    | terminated | [B]      | float32                        | 1.0: no bootstrap                    |
    | discount   | [B]      | float32                        | γ^m for the bootstrap (γ if 1-step)  |
    | weights    | [B]      | float32                        | importance weights (ones if uniform) |
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    discount: torch.Tensor
    weights: torch.Tensor


def batch_to_tensors(
    batch: Batch, obs_space: gym.Space, act_space: gym.Space, gamma: float, device: torch.device | None = None
) -> TensorBatch:
    """Convert a replay :class:`Batch` (dtypes as the env produced them) to tensors on ``device``.

    ``batch.truncated`` is not used: a time limit bootstraps like any other step
    (Pardo et al. 2018). ``extras["discount"]`` (n-step folding) overrides ``gamma`` per row.

    Every field is packed as float32 columns of one host array, so a CUDA learner receives
    the whole batch in one pinned, asynchronous copy (:func:`to_device`) instead of seven
    small ones; integer fields (Discrete actions and observations) are exact in float32 up to
    2^24 and are cast back on the device.

    | columns          | field                     |
    |------------------|---------------------------|
    | D_obs            | obs (as stored)           |
    | D_obs            | next_obs                  |
    | 1 or A           | actions                   |
    | 4                | rewards, terminated, discount, weights |
    """
    n = len(batch)
    discrete = isinstance(act_space, gym.spaces.Discrete)
    discount = batch.extras["discount"] if "discount" in batch.extras else np.full(n, gamma)
    weights = np.ones(n) if batch.weights is None else batch.weights
    columns = [
        np.asarray(batch.obs).reshape(n, -1),
        np.asarray(batch.next_obs).reshape(n, -1),
        np.asarray(batch.actions).reshape(n, -1),
        *(np.asarray(x).reshape(n, 1) for x in (batch.rewards, batch.terminated, discount, weights)),
    ]
    host = torch.from_numpy(np.concatenate(columns, axis=1, dtype=np.float32))
    packed = to_device(host, device or torch.device("cpu"))
    d_obs = columns[0].shape[1]
    obs, next_obs, actions, rewards, terminated, discount_t, weights_t = packed.split(
        [d_obs, d_obs, columns[2].shape[1], 1, 1, 1, 1], dim=1
    )
    return TensorBatch(
        obs=obs_to_tensor(obs, obs_space),
        actions=actions.long().reshape(n) if discrete else actions,
        rewards=rewards.reshape(n),
        next_obs=obs_to_tensor(next_obs, obs_space),
        terminated=terminated.reshape(n),
        discount=discount_t.reshape(n),
        weights=weights_t.reshape(n),
    )


def weighted_mean(per_sample: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Importance-weighted loss  L = (1/B) Σ_i w_i ℓ_i  (w = 1 for uniform replay; Schaul et al. 2016)."""
    return (weights * per_sample).mean()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Target network tracking:  θ' ← τ θ + (1 - τ) θ'.  τ = 1 is the hard copy of DQN.

    Buffers (e.g. normalisation statistics) are copied as they are.
    """
    t_params, o_params = list(target.parameters()), list(online.parameters())
    if tau >= 1.0:
        for t, o in zip(t_params, o_params, strict=True):
            t.copy_(o)
    else:
        torch._foreach_lerp_(t_params, o_params, tau)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def policy_rng(worker_index: int) -> np.random.Generator:
    """A numpy generator for a worker's exploration, derived from torch's global seed.

    The rollout worker seeds torch with a seed drawn from ``SeedSequence([run_seed,
    worker_index])`` (``runner.envs.derive_seeds``) before ``make_policy``, so exploration is
    reproducible and differs between workers; ``worker_index`` keeps two policies built in one
    process (tests, the in-process driver) apart.
    """
    return np.random.default_rng([int(torch.initial_seed()) % (2**63), int(worker_index)])


def optimizer_step(
    optim: torch.optim.Optimizer, loss: torch.Tensor, params, max_grad_norm: float | None = None
) -> float:
    """zero_grad, backward, optional global-norm clipping, step. Returns the norm (0 if not clipped)."""
    optim.zero_grad(set_to_none=True)
    loss.backward()
    norm = 0.0
    if max_grad_norm is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
    optim.step()
    return norm


@contextmanager
def frozen(module: nn.Module):
    """Turn off gradients of ``module``'s parameters inside the block.

    For the actor loss of SAC and TD3: gradients flow through the critic into the action
    but the critic's own weights need none, which saves their backward computation.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)
