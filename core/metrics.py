"""The one metrics schema behind the CLI, ``metrics.jsonl``, TensorBoard and the dashboard."""

from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

RETURN_WINDOW = 20
"""Episodes in the trailing mean return: the console, ``stop_return``, the dashboard's smoothed
curve and the RLlib baseline all average the last this many episodes by default."""


def finite_float(v: Any) -> float | None:
    """``v`` as a float if it is a finite real number, else None (bools, strings, NaN and ±inf
    included): JSON has no NaN, and a metric that is not a number is no point on a curve."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return None
    try:
        f = float(v)
    except OverflowError:  # an int beyond float's range (a hostile metrics line) is no number either
        return None
    return f if math.isfinite(f) else None


@dataclass
class MetricsRow:
    """One line of ``metrics.jsonl``, written each iteration (on-policy) or report interval."""

    env_steps: int
    """Environment transitions collected so far (all workers, all sub-envs)."""
    episodes: int
    """Episodes finished so far."""
    wall_time_s: float
    """Seconds since the run started (resumed runs continue the count)."""
    episode_return_mean: float | None
    """Mean return of the episodes finished since the last row (None if none finished)."""
    episode_returns: list[float]
    """Raw returns of the episodes finished since the last row."""
    grad_updates: int
    """Gradient (or tabular) update steps so far."""
    samples_trained: int
    """Transitions consumed by updates so far, counted with repetition."""
    replay_ratio: float
    """samples_trained / env_steps: the data reuse (pg 1, ppo = epochs, dqn/sac many)."""
    env_steps_per_s: float
    """Env steps per second over the last interval."""
    updates_per_s: float
    """Gradient updates per second over the last interval."""
    workers: int
    """Rollout workers alive at this row."""
    policy_lag: float
    """Learner policy version minus the version that acted (mean over the interval)."""
    samples_model: int = 0
    """Model-generated transitions consumed by updates so far (Dyna-style learners; 0 otherwise):
    the data that never came from the environment, shown apart from ``samples_trained``."""
    extra: dict[str, float] = field(default_factory=dict)
    """Learner and replay metrics, namespaced (``loss/policy``, ``replay/size``)."""

    def to_json(self) -> dict:
        """Flat dict: the schema fields plus the namespaced extras at top level."""
        row = asdict(self)
        row.update(row.pop("extra"))
        return row


METRIC_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(MetricsRow) if f.default is MISSING and f.default_factory is MISSING
)
"""The fields every row has (those with a default, such as ``samples_model``, may be absent)."""
