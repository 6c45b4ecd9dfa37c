"""Small torch helpers shared by all policies and learners."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tandem.core.errors import TandemError

DEVICE_FORMS = "cpu, cuda, cuda:N or auto"


class DeviceError(TandemError):
    """A learner device that does not exist or is not spelled right."""


@dataclass
class DeviceConfig:
    """The learner's torch device: one field that every learner config inherits."""

    device: str = "cpu"
    """Where the learner computes: cpu, cuda, cuda:N or auto (cuda when this node has a GPU).
    Weights always leave the learner as CPU numpy arrays, so workers never touch CUDA."""


_CUDA_FORM = re.compile(r"cuda(?::(\d+))?")


def resolve_device(spec: str | torch.device) -> torch.device:
    """``cpu | cuda | cuda:N | auto`` -> a torch.device that exists on this node.

    ``auto`` is ``cuda`` (device 0) when torch sees a GPU and ``cpu`` otherwise. Raises
    :class:`DeviceError` (one line, naming the valid forms) for anything else, and when a
    CUDA device is asked for that this node does not have.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = str(spec).strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    match = _CUDA_FORM.fullmatch(name)
    if match is None:
        raise DeviceError(f"unknown device {spec!r}: use {DEVICE_FORMS} (e.g. --set device=cuda:0)")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        found = f"this node has {count} CUDA device(s)" if count else "torch sees no CUDA GPU on this node"
        raise DeviceError(f"device {spec!r} was asked for but {found}: use device=cpu or device=auto")
    return torch.device("cuda", index)


def learner_device(cfg) -> torch.device:
    """The device a learner built from ``cfg`` computes on (``cfg.device``; cpu for configs
    that predate the field)."""
    return resolve_device(getattr(cfg, "device", "cpu"))


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One host-to-device copy. For CUDA the source is pinned first, so the copy is a DMA that
    runs asynchronously (``non_blocking``) instead of a staged pageable copy; on CPU it is a no-op."""
    if device.type == "cpu":
        return host
    return host.pin_memory().to(device, non_blocking=True)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh, out_gain: float = 1.0) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them.

    Orthogonal init (gain sqrt 2 hidden, ``out_gain`` last), the PPO implementation detail
    from Engstrom et al. 2020 that makes small policy nets train reliably.
    """
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        last = i == len(sizes) - 2
        nn.init.orthogonal_(lin.weight, out_gain if last else np.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


def adam(params, lr: float, **kwargs) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over all parameters instead of a Python loop over
    tensors. A replay learner steps 2-3 optimizers per update and is compute-bound; on one CPU
    core this cut a 256x256 MLP's optimizer step from 0.54 to 0.32 ms."""
    return torch.optim.Adam(params, lr=lr, fused=True, **kwargs)


def module_weights(module: nn.Module) -> dict[str, np.ndarray]:
    """A module's parameters and buffers as CPU numpy copies: what crosses process boundaries.
    A CUDA learner's weights come back to host memory here, so workers never touch CUDA."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_module_weights(module: nn.Module, weights: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`module_weights` (``load_state_dict`` copies onto the module's device)."""
    module.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in weights.items()})


def flat_obs_dim(space) -> int:
    """Input width for an MLP: Discrete observations are one-hot encoded."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(np.prod(space.shape))


def obs_to_tensor(obs: np.ndarray | torch.Tensor, space) -> torch.Tensor:
    """[B, *obs] numpy or tensor -> [B, D] float tensor (one-hot for Discrete spaces), on the
    input tensor's device."""
    import gymnasium as gym

    t = torch.as_tensor(obs)
    if isinstance(space, gym.spaces.Discrete):
        return nn.functional.one_hot(t.long().reshape(-1), int(space.n)).float()
    return t.float().reshape(t.shape[0], -1)
