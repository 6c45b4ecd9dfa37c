"""``make_replay``: one call that turns the ``--replay`` option into a buffer."""

from __future__ import annotations

from typing import Any

from tandem.core.types import Batch
from tandem.replay.errors import ReplayError
from tandem.replay.memory import InMemoryReplay
from tandem.replay.redis_replay import RedisReplay
from tandem.replay.schema import Schema
from tandem.replay.server import managed_redis
from tandem.replay.shards import ShardedReplay, parse_urls


def make_replay(
    url_or_memory: str | None,
    name: str = "default",
    capacity: int | None = 1_000_000,
    *,
    schema: Schema | None = None,
    example: Batch | None = None,
    prioritized: bool = False,
    alpha: float = 0.6,
    beta: float = 0.4,
    seed: int | None = None,
    **kwargs: Any,
) -> InMemoryReplay | RedisReplay | ShardedReplay:
    """Build the replay buffer that ``--replay`` names.

    * ``"memory"``: an ``InMemoryReplay`` in this process.
    * ``None`` or ``""``: a ``RedisReplay`` on a private redis-server that this process starts
      on a free loopback port and stops at exit (``replay.server.managed_redis``: AOF,
      supervised).
    * ``redis://[:password@]host:port[/db]`` or ``rediss://...``: a ``RedisReplay`` there.
    * several such URLs, comma-separated: a ``ShardedReplay`` over one ``RedisReplay`` per URL,
      each a ring of ``ceil(capacity / K)`` rows (``replay.shards``).

    ``kwargs`` go to ``RedisReplay`` (``prefetch``, ``writer_id``, ``redis_kwargs``, ...).
    """
    if url_or_memory == "memory":
        if capacity is None:
            raise ReplayError("an in-memory replay needs a capacity")
        return InMemoryReplay(
            capacity,
            schema=schema,
            example=example,
            prioritized=prioritized,
            alpha=alpha,
            beta=beta,
            seed=seed,
            **{k: v for k, v in kwargs.items() if k == "uses_bins"},
        )
    url = url_or_memory or managed_redis().url
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ReplayError(
            f"--replay {url_or_memory!r} is not understood: pass 'memory', a redis:// or rediss:// URL, "
            "or nothing for a private local Redis"
        )
    if "," in url:
        urls = parse_urls(url)
        cap = None if capacity is None else -(-capacity // len(urls))
        shards = [
            make_replay(u, name, cap, schema=schema, example=example, prioritized=prioritized,
                        alpha=alpha, beta=beta, seed=None if seed is None else seed + i, **kwargs)
            for i, u in enumerate(urls)
        ]  # fmt: skip
        return ShardedReplay(shards, seed=seed)  # type: ignore[arg-type]
    return RedisReplay(
        url,
        name,
        capacity,
        schema=schema,
        example=example,
        prioritized=prioritized,
        alpha=alpha,
        beta=beta,
        seed=seed,
        **kwargs,
    )
