"""Algorithm registry: the one place that maps ``--algo NAME`` to code.

Each algorithm module defines ``SPEC = AlgoSpec(...)``; this table names the module, so
adding an algorithm touches one line here and nothing else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from tandem.core.errors import TandemError

ALGORITHMS: dict[str, str] = {
    "pg": "tandem.learners.pg",
    "ppo": "tandem.learners.ppo",
    "qlearn": "tandem.learners.tabular",
    "qeval": "tandem.learners.tabular_eval",
    "dynaq": "tandem.learners.dynaq",
    "dqn": "tandem.learners.dqn",
    "sac": "tandem.learners.sac",
    "mbsac": "tandem.learners.mbsac",
    "td3": "tandem.learners.td3",
    "a2c": "tandem.learners.a2c",
    "rwr": "tandem.learners.rwr",
}


@dataclass(frozen=True)
class AlgoSpec:
    """How the drivers build and run one algorithm."""

    name: str
    """The ``--algo`` name."""
    config_cls: type
    """Typed dataclass of hyperparameters; ``--set key=value`` writes its fields."""
    on_policy: bool
    """True: synchronous collect-update-discard loop. False: replay-fed asynchronous loop."""
    make_policy: Callable[..., Any]
    """(obs_space, action_space, config, *, worker_index, num_workers) -> Policy, built inside
    each worker. The policy may define ``set_progress(fraction)`` (0..1 of the run's env-step
    budget), which the worker calls before each fragment, for annealed exploration."""
    make_learner: Callable[[gym.Space, gym.Space, Any], Any]
    """(obs_space, action_space, config) -> Learner, built in the driver."""
    check_spaces: Callable[[gym.Space, gym.Space], str | None]
    """Returns a one-line reason why the spaces do not fit this algorithm, or None."""
    preset: Callable[[gym.Space, gym.Space, str], dict[str, Any]] | None = None
    """Optional (obs_space, action_space, env_id) -> config overrides applied before the user's
    (e.g. PPO's MuJoCo settings for Box actions). User ``--config`` / ``--set`` values win."""
    to_replay: Callable[[Any, Any], Any] | None = None
    """Optional (Rollout, config) -> Batch written to replay, e.g. n-step folding. Default:
    ``Rollout.to_batch()``."""
    make_adder: Callable[[Any, Any], Any] | None = None
    """Optional (config, policy) -> adder, built once per worker: a stateful callable that takes
    each Rollout fragment and returns the Batch to write to replay (None: nothing yet), e.g.
    holding episodes back until they end to attach their reward-to-go. Overrides ``to_replay``."""


class UnknownAlgorithm(TandemError):
    pass


def get_algo(name: str) -> AlgoSpec:
    """Look up ``name``; the error lists the valid choices."""
    if name not in ALGORITHMS:
        raise UnknownAlgorithm(f"unknown algorithm {name!r}: choose one of {', '.join(sorted(ALGORITHMS))}")
    return importlib.import_module(ALGORITHMS[name]).SPEC


def discrete_only(name: str) -> Callable[[gym.Space, gym.Space], str | None]:
    def check(obs_space: gym.Space, act_space: gym.Space) -> str | None:
        if not isinstance(act_space, gym.spaces.Discrete):
            return (
                f"{name} needs a Discrete action space but the env has {act_space}; "
                "use --algo sac or td3 (or ppo) for continuous actions"
            )
        return None

    return check


def continuous_only(name: str) -> Callable[[gym.Space, gym.Space], str | None]:
    def check(obs_space: gym.Space, act_space: gym.Space) -> str | None:
        if not (isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1):
            return (
                f"{name} needs a 1-D Box (continuous) action space but the env has {act_space}; "
                "use --algo dqn (or ppo) for discrete actions"
            )
        return None

    return check


def discrete_or_box(name: str) -> Callable[[gym.Space, gym.Space], str | None]:
    def check(obs_space: gym.Space, act_space: gym.Space) -> str | None:
        if isinstance(act_space, gym.spaces.Discrete):
            return None
        if isinstance(act_space, gym.spaces.Box) and len(act_space.shape) == 1:
            return None
        return f"{name} supports Discrete or 1-D Box action spaces, not {act_space}"

    return check
