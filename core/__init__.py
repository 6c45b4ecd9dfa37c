"""Tandem's data contracts and protocols: numpy and typing only.

The usage loop, in the order the two paths run it::

    # on-policy (pg, ppo)
    while env_steps < total:
        rollouts = [w.sample(weights, version) for w in workers]   # Rollout each
        metrics = learner.update(concat_rollouts(rollouts))        # then the data is dropped
        weights, version = learner.get_weights(), version + 1

    # off-policy (qlearn, dqn, sac, td3)
    worker:  replay.add(rollout.to_batch())                        # writers never wait
    learner: while limiter.can_sample(n): learner.update(replay.sample(n))
"""

from tandem.core.metrics import METRIC_FIELDS, MetricsRow
from tandem.core.protocols import Learner, Policy, ReplayBuffer
from tandem.core.types import Batch, Rollout, UpdateResult, concat_rollouts

__all__ = [
    "METRIC_FIELDS",
    "Batch",
    "Learner",
    "MetricsRow",
    "Policy",
    "ReplayBuffer",
    "Rollout",
    "UpdateResult",
    "concat_rollouts",
]
