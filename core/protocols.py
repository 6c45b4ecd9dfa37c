"""The interfaces that the drivers compose. Structural (``typing.Protocol``): no base classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tandem.core.types import Batch

Weights = dict[str, np.ndarray]


@runtime_checkable
class Policy(Protocol):
    """What a rollout worker acts with."""

    def act(self, obs: np.ndarray, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions for a [N, *obs] batch, plus per-step extras (e.g. ``logp``, ``value``)."""

    def set_weights(self, weights: Weights, version: int) -> None:
        """Load numpy weights published by the learner under ``version``."""

    def get_weights(self) -> Weights:
        """The policy's parameters as numpy arrays (what crosses process boundaries)."""


@runtime_checkable
class Learner(Protocol):
    """One algorithm's update rule. No I/O: the driver owns processes, files and sockets."""

    def update(self, batch: Any) -> dict[str, float]:
        """One update from ``batch``. Returns namespaced metrics (``loss/policy``, ``stats/entropy``)."""

    def get_weights(self) -> Weights:
        """Acting weights for the workers."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimizers, counters."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


@runtime_checkable
class ReplayBuffer(Protocol):
    """Storage that off-policy learners sample many times. In-memory and Redis share it."""

    def add(self, batch: Batch) -> None:
        """Append a whole fragment (one round trip for remote storage)."""

    def sample(self, n: int) -> Batch:
        """``n`` transitions with ``indices`` and importance ``weights`` set."""

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """New priorities (e.g. |TD error|) for sampled slots; a no-op for uniform replay."""

    def __len__(self) -> int:
        """Transitions currently stored."""
