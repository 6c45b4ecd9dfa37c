"""What the actor-critic learners (pg, a2c, ppo, rwr) share: turning a time-major Rollout into
flat training tensors, and the weights/checkpoint/progress bookkeeping around their updates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tandem.agents.actor_critic import ActorCritic
from tandem.agents.torch_utils import adam, learner_device, to_device
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


def explained_variance(returns: torch.Tensor, values: torch.Tensor) -> float:
    """1 - Var[G - V] / Var[G]: the share of the targets' variance the critic explains (NaN when
    the targets are constant)."""
    var_y = float(returns.var())
    return float("nan") if var_y == 0 else 1 - float((returns - values).var()) / var_y


class ActorCriticLearner:
    """The bookkeeping of an actor-critic learner around its ``update``: weights for the
    workers, checkpoint state, the run's progress. A subclass sets ``model``, ``updates`` and
    one attribute per name in ``OPTIMIZERS`` (``None`` for one it does not use)."""

    OPTIMIZERS: tuple[str, ...] = ("opt",)
    model: ActorCritic
    updates: int = 0
    progress: float = 0.0
    """Fraction of the run done, for the schedules (learning rate, clip range, entropy)."""

    def init_one_optimizer(self, obs_space: Any, act_space: Any, cfg: Any) -> None:
        """a2c's and ppo's set-up: ``make_policy``'s model on the learner's device and one Adam
        (ε = 1e-5, the baselines' value) over actor, critic and log σ together."""
        self.cfg = cfg
        self.device = learner_device(cfg)
        self.model = make_policy(obs_space, act_space, cfg).to(self.device)
        self.opt = adam(self.model.parameters(), lr=cfg.lr, eps=1e-5)
        self.progress = 0.0
        self.updates = 0

    def set_progress(self, fraction: float) -> None:
        self.progress = fraction

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.model.get_weights()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"model": self.model.state_dict()}
        for name in self.OPTIMIZERS:
            opt = getattr(self, name)
            state[name] = None if opt is None else opt.state_dict()
        return {**state, "progress": self.progress, "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for name in self.OPTIMIZERS:
            opt = getattr(self, name)
            # None on either side: a checkpoint of a run without this optimizer (pg's baseline)
            if opt is not None and state.get(name) is not None:
                opt.load_state_dict(state[name])
        self.progress = state.get("progress", 0.0)
        self.updates = state["updates"]


def make_policy(obs_space, act_space, cfg, *, worker_index: int = 0, num_workers: int = 1) -> ActorCritic:
    """The workers' copy of a2c's and ppo's model (``cfg.hidden``, ``cfg.init_log_std``)."""
    return ActorCritic(obs_space, act_space, cfg.hidden, init_log_std=cfg.init_log_std)
