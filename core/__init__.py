"""Tandem's data contracts and protocols: numpy and typing only.

The usage loop, in the order the two paths run it::

    # on-policy (pg, ppo)
    while env_steps < total:
        rollouts = [w.sample(weights, version) for w in workers]   # Rollout each
        result = learner.update(concat_rollouts(rollouts))         # UpdateResult; data dropped
        weights, version = learner.get_weights(), version + 1

    # off-policy (qlearn, dqn, sac, td3)
    worker:  replay.add(rollout.to_batch())                        # Fragment back to the driver
    learner: while limiter.can_sample(n): learner.update(replay.sample(n))

The drivers reach the workers only through a ``WorkerGroup`` (Ray actors, or plain objects
in-process), so the same loop runs on a cluster or under a debugger.
"""

from tandem.core.metrics import METRIC_FIELDS, MetricsRow
from tandem.core.protocols import (
    Backend,
    Learner,
    MetricsSink,
    Policy,
    ReplayBuffer,
    WorkerGroup,
    WorkerLost,
)
from tandem.core.types import Batch, Fragment, Rollout, UpdateResult, concat_rollouts

__all__ = [
    "METRIC_FIELDS",
    "Backend",
    "Batch",
    "Fragment",
    "Learner",
    "MetricsSink",
    "MetricsRow",
    "Policy",
    "ReplayBuffer",
    "Rollout",
    "UpdateResult",
    "WorkerGroup",
    "WorkerLost",
    "concat_rollouts",
]
