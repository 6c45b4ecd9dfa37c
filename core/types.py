"""Batches and rollouts: the numpy arrays that cross process and Redis boundaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np


@dataclass(frozen=True)
class Batch:
    """A flat batch of transitions (s, a, r, s', terminated, truncated).

    | field        | shape          | dtype   | meaning                                            |
    |--------------|----------------|---------|----------------------------------------------------|
    | obs          | [B, *obs]      | any     | s_t                                                |
    | actions      | [B, *act]      | any     | a_t                                                |
    | rewards      | [B]            | float32 | r_t                                                |
    | next_obs     | [B, *obs]      | any     | s_{t+1}: the true final observation at an episode end |
    | terminated   | [B]            | bool    | s_{t+1} is terminal: bootstrap with 0              |
    | truncated    | [B]            | bool    | time limit hit: bootstrap from V(s_{t+1})          |
    | extras       | {name: [B,..]} | any     | optional per-step data (logp, value, ...)          |
    | indices      | [B] or None    | int64   | replay insert positions (slot = index % capacity)  |
    | weights      | [B] or None    | float32 | importance weights, set by prioritized replay      |
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    indices: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """The transition fields and extras as one flat name -> array dict (no indices/weights)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name in TRANSITION_FIELDS}
        out.update(self.extras)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], **kw) -> Batch:
        """Inverse of :meth:`arrays`: names outside the transition fields become extras."""
        core = {k: arrays[k] for k in TRANSITION_FIELDS}
        extras = {k: v for k, v in arrays.items() if k not in TRANSITION_FIELDS}
        return cls(**core, extras=extras, **kw)

    def take(self, idx: np.ndarray) -> Batch:
        """Rows ``idx`` of every array (fancy indexing, so a copy)."""
        return replace(
            self,
            obs=self.obs[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_obs=self.next_obs[idx],
            terminated=self.terminated[idx],
            truncated=self.truncated[idx],
            extras={k: v[idx] for k, v in self.extras.items()},
            indices=None if self.indices is None else self.indices[idx],
            weights=None if self.weights is None else self.weights[idx],
        )


TRANSITION_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated")


@dataclass(frozen=True)
class Rollout:
    """A time-major fragment of T steps from the N sub-envs of one worker.

    | field           | shape          | meaning                                                 |
    |-----------------|----------------|---------------------------------------------------------|
    | obs             | [T, N, *obs]   | s_t                                                     |
    | actions         | [T, N, *act]   | a_t                                                     |
    | rewards         | [T, N]         | r_t                                                     |
    | next_obs        | [T, N, *obs]   | s_{t+1}; at an episode end, the final observation        |
    | terminated      | [T, N]         | true end of the episode                                 |
    | truncated       | [T, N]         | cut by a time limit                                     |
    | extras          | {k: [T, N,..]} | per-step policy outputs (logp, value)                   |
    | episode_returns | [E]            | undiscounted returns of the E episodes finished here    |
    | episode_lengths | [E]            | their lengths                                           |

    Every step is a real transition: workers run their vector env in same-step autoreset
    mode, so the reset step of Gymnasium's default next-step mode never appears. The
    bootstrap observation of the fragment is ``next_obs[-1]``.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    extras: Mapping[str, np.ndarray]
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    policy_version: int
    worker_index: int = 0

    @property
    def num_steps(self) -> int:
        """Env steps in the fragment: T * N."""
        return int(self.rewards.size)

    def to_batch(self) -> Batch:
        """Flatten [T, N, ...] to [T*N, ...] (time-major order is kept per env)."""

        def flat(x: np.ndarray) -> np.ndarray:
            return x.reshape(-1, *x.shape[2:])

        return Batch(
            obs=flat(self.obs),
            actions=flat(self.actions),
            rewards=flat(self.rewards),
            next_obs=flat(self.next_obs),
            terminated=flat(self.terminated),
            truncated=flat(self.truncated),
            extras={k: flat(v) for k, v in self.extras.items()},
        )


def concat_rollouts(rollouts: list[Rollout]) -> Rollout:
    """Join fragments of equal length T along the env axis: [T, sum N, ...].

    The result keeps the oldest policy version, so that policy lag is never understated.
    """
    if not rollouts:
        raise ValueError("concat_rollouts needs at least one rollout")
    cat = lambda name: np.concatenate([getattr(r, name) for r in rollouts], axis=1)  # noqa: E731
    keys = rollouts[0].extras.keys()
    return Rollout(
        obs=cat("obs"),
        actions=cat("actions"),
        rewards=cat("rewards"),
        next_obs=cat("next_obs"),
        terminated=cat("terminated"),
        truncated=cat("truncated"),
        extras={k: np.concatenate([r.extras[k] for r in rollouts], axis=1) for k in keys},
        episode_returns=np.concatenate([r.episode_returns for r in rollouts]),
        episode_lengths=np.concatenate([r.episode_lengths for r in rollouts]),
        policy_version=min(r.policy_version for r in rollouts),
        worker_index=-1,
    )


@dataclass(frozen=True)
class UpdateResult:
    """What ``Learner.update`` returns, on both paths.

    The drivers add ``grad_steps`` and ``samples_trained`` to the run's counters, so data reuse
    (``samples_trained / env_steps``) is counted by the learner that did the work: PPO's epochs
    and minibatches, a DQN step's batch, a Dyna learner's model samples.
    """

    metrics: Mapping[str, float]
    """Namespaced scalars for the metrics row (``loss/policy``, ``stats/entropy``)."""
    grad_steps: int = 1
    """Optimizer steps (or tabular sweeps) taken by this call."""
    samples_trained: int = 0
    """Transitions consumed by those steps, counted with repetition."""
    priorities: np.ndarray | None = None
    """New replay priorities for ``batch.indices`` (prioritized replay), else None."""
    samples_model: int = 0
    """Model-generated transitions consumed (Dyna-style learners); 0 for model-free ones."""


@dataclass(frozen=True)
class Fragment:
    """What an off-policy worker's ``collect`` returns to the driver: one fragment's accounting,
    plus the transitions themselves when the replay lives in the driver (``--replay memory``)."""

    worker_index: int
    """The worker that collected it."""
    env_steps: int
    """Env steps in the fragment: T * N."""
    episode_returns: np.ndarray
    """Undiscounted returns of the episodes that finished in it."""
    episode_lengths: np.ndarray
    """Their lengths."""
    policy_version: int
    """The weights version that acted (policy lag = learner version minus this)."""
    seconds: float = 0.0
    """Wall time the worker spent collecting and writing it."""
    batch: Batch | None = None
    """The replay rows, or None when the worker wrote them to a remote replay itself."""
    written: int = 0
    """Replay rows the worker wrote itself and the replay acknowledged (0 when ``batch`` is set)."""
