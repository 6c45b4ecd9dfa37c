"""Acting in numpy: a rollout worker's forward pass and action sampling without torch.

A worker acts on a few observations at a time (its sub-envs). At that size torch's per-call
overhead dominates: for a 64x64 actor-critic on 4 CartPole observations, ``torch`` took about
10x longer per ``act`` than the same arithmetic in numpy, longer than stepping the 4 envs
(``benchmarks/scaling.py --mode worker`` measures it). The learner keeps torch; acting reads the
same parameter memory through numpy views, so there is one set of weights and nothing to sync.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class NumpyMLP:
    """An ``nn.Sequential`` of Linear, Tanh and ReLU layers, evaluated in float32 numpy.

    Its arrays are views of the module's CPU parameters (``y = x Wᵀ + b`` reads ``W`` in
    place), so optimizer steps and ``load_state_dict`` show through. :func:`numpy_mirror`
    rebuilds it when the parameters move (``.to()``, a deep copy).
    """

    def __init__(self, seq: nn.Sequential):
        self.ops: list[tuple[str, np.ndarray | None, np.ndarray | None]] = []
        for m in seq:
            if isinstance(m, nn.Linear):
                w = m.weight.detach().numpy().T
                b = None if m.bias is None else m.bias.detach().numpy()
                self.ops.append(("linear", w, b))
            elif isinstance(m, nn.Tanh):
                self.ops.append(("tanh", None, None))
            elif isinstance(m, nn.ReLU):
                self.ops.append(("relu", None, None))
            else:
                raise TypeError(f"no numpy forward for {type(m).__name__}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for op, w, b in self.ops:
            if op == "linear":
                x = x @ w
                if b is not None:
                    x += b
            elif op == "tanh":
                np.tanh(x, out=x)
            else:
                np.maximum(x, 0.0, out=x)
        return x


def numpy_mirror(owner: nn.Module, *parts: nn.Sequential) -> tuple[NumpyMLP, ...] | None:
    """Numpy views of ``parts`` (submodules of ``owner``), cached on ``owner`` and rebuilt when
    its parameters' storage changed; None when a parameter is off the CPU or a layer has no
    numpy forward (the caller then acts in torch)."""
    cached = owner.__dict__.get("_numpy_mirror")
    # Walking owner.parameters() costs more than the forward pass. Moving a module (.to()) or
    # copying it (deepcopy) gives every parameter new storage, so the first one tells.
    if cached is not None and cached[0].data_ptr() == cached[1]:
        return cached[2]
    params = list(owner.parameters())
    mirror = None
    if all(p.device.type == "cpu" for p in params):
        try:
            mirror = tuple(NumpyMLP(p) for p in parts)
        except TypeError:
            pass
    owner.__dict__["_numpy_mirror"] = (params[0], params[0].data_ptr(), mirror)
    return mirror


def obs_array(obs: np.ndarray, space: gym.Space) -> np.ndarray:
    """[B, *obs] -> [B, D] float32 (one-hot for Discrete spaces), as ``obs_to_tensor``."""
    obs = np.asarray(obs)
    if isinstance(space, gym.spaces.Discrete):
        out = np.zeros((obs.shape[0], int(space.n)), np.float32)
        out[np.arange(obs.shape[0]), obs.reshape(-1).astype(np.int64)] = 1.0
        return out
    return obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log π(a|s) = z_a - log Σ_b exp z_b, row-wise, shifted by the max for stability."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def categorical_sample(logp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """a ~ Categorical(exp logp) per row by the Gumbel-max trick: argmax_a (log π_a + g_a),
    g_a = -log(-log U_a), U_a ~ Uniform(0, 1)."""
    u = rng.random(logp.shape)
    return np.argmax(logp - np.log(-np.log(u)), axis=-1)


def gaussian_log_prob(x: np.ndarray, mean: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """Σ_j log N(x_j; μ_j, σ_j) = Σ_j [-½((x_j - μ_j)/σ_j)² - log σ_j - ½ log 2π], over the last axis."""
    z = (x - mean) / np.exp(log_std)
    return (-0.5 * z * z - log_std - LOG_SQRT_2PI).sum(axis=-1)


def take_rows(values: np.ndarray, index: Sequence[int] | np.ndarray) -> np.ndarray:
    """values[i, index[i]] for every row i."""
    return values[np.arange(values.shape[0]), np.asarray(index)]
