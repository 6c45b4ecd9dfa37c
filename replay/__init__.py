"""Replay buffers: an in-memory numpy ring and a Redis ring shared by many writers.

Both implement ``core.protocols.ReplayBuffer`` with the same behaviour::

    replay = make_replay(args.replay, "sac-run", capacity=1_000_000, prioritized=True)
    limiter = RateLimiter(min_size=10_000, samples_per_insert=256)
    # workers:   open_writer({"url": url, "name": "sac-run"}).add(rollout.to_batch())
    # learner:
    while training:
        limiter.observe_inserted(replay.inserted)
        if not limiter.can_sample(256):
            continue                                 # the driver does other work meanwhile
        batch = replay.sample(256)                   # indices + importance weights set
        result = learner.update(batch)
        replay.update_priorities(batch.indices, result.priorities)
        limiter.record_sample(256)
    replay.stats()  # replay/size, replay/uses_mean_live, replay/uses_hist_evicted, ...

Storage x sampler: ``LocalRing`` holds numpy arrays and a uniform or proportional
(``SumTree``) sampler; ``InMemoryReplay`` appends to it, ``RedisReplay`` mirrors Redis into
it. ``ShardedReplay`` samples K Redis replays as one (``--replay-shards K``, ``replay.shards``).
numpy and redis only: no torch, no ray.
"""

from tandem.replay.errors import CorruptReplayError, ReplayError, SchemaMismatchError
from tandem.replay.factory import make_replay
from tandem.replay.limiter import RateLimiter
from tandem.replay.memory import InMemoryReplay
from tandem.replay.redis_replay import RedisReplay
from tandem.replay.redis_writer import RedisWriter, open_writer
from tandem.replay.ring import LocalRing, PrioritizedSampler, UniformSampler
from tandem.replay.schema import FORMAT_VERSION, FieldSpec, Schema
from tandem.replay.server import ManagedRedis, local_redis, managed_redis
from tandem.replay.shards import ShardedReplay
from tandem.replay.sumtree import SumTree

__all__ = [
    "FORMAT_VERSION",
    "CorruptReplayError",
    "FieldSpec",
    "InMemoryReplay",
    "LocalRing",
    "ManagedRedis",
    "PrioritizedSampler",
    "RateLimiter",
    "RedisReplay",
    "RedisWriter",
    "ReplayError",
    "Schema",
    "SchemaMismatchError",
    "ShardedReplay",
    "SumTree",
    "UniformSampler",
    "local_redis",
    "make_replay",
    "managed_redis",
    "open_writer",
]
