"""``RedisReplay``: a replay ring in Redis that many writers fill and each learner mirrors.

A thin façade with the ``ReplayBuffer`` API of ``InMemoryReplay``, composing the parts that
Reverb keeps apart:

| module                  | part                                                           |
|-------------------------|----------------------------------------------------------------|
| ``redis_conn``          | connection from a URL, retry through outages, one-line errors  |
| ``redis_scripts``       | the Lua scripts (insert, sync, create), ``register_script``    |
| ``redis_store``         | one buffer's keys, schema record, atomic creation              |
| ``redis_writer``        | ``RedisWriter``: what workers use (``open_writer(spec)``)      |
| ``redis_mirror``        | ``RedisMirror``: the reader's local copy and its sync thread   |
| ``shards``              | ``ShardedReplay``: K servers sampled as one buffer             |

Layout (all keys under ``tandem:<name>:``)

| key                         | type   | holds                                                      |
|-----------------------------|--------|------------------------------------------------------------|
| ``schema``               | string | JSON: fields, dtypes, shapes, capacity, chunk_rows, version |
| ``meta``                 | hash   | ``cursor`` (rows ever inserted), ``epoch`` (random id of    |
|                          |        | this incarnation of the buffer), ``schema_hash``            |
| ``writers``              | hash   | ``writer id -> "seq:start"`` of each writer's last insert   |
| ``data:<field>:<chunk>`` | string | raw little-endian rows of one field, ``chunk_rows`` a chunk |

Row ``p`` (the p-th insert ever) lives in slot ``p % capacity`` at byte offset
``(slot % chunk_rows) * itemsize`` of chunk ``slot // chunk_rows`` (chunks keep each string
well under Redis' 512 MB limit). The strings are allocated at creation, so memory never
grows after it: the capacity bound is the memory bound, checked against ``maxmemory`` then.

Writing. ``add`` is one ``EVALSHA`` of a registered script that, atomically: checks the
schema hash; returns the stored answer if this ``(writer id, seq)`` was already applied (a
retried command never doubles data); advances ``cursor``; ``SETRANGE``s the fragment (split
at the wrap-around and chunk edges). The oldest rows are overwritten first: a FIFO ring.

Reading. Each reader keeps a local numpy mirror (``LocalRing``) fed by a background thread
(``RedisMirror``); ``sample`` runs at numpy speed. Priorities and use counts live in the
mirror: each learner has its own.

Faults. Transient errors are retried with backoff until ``reconnect_timeout_s``; the
idempotency key makes every retry safe, and ``register_script`` reloads scripts after a
restart. A Redis that restarts from its AOF keeps the buffer (same epoch): nothing happens.
A buffer that is gone or recreated (restart without persistence, a deleted ``meta`` key) is
never recreated silently: writers and readers raise :class:`CorruptReplayError` naming it.
NaN or inf bytes in float fields are caught as the mirror takes them in.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from tandem.core.types import Batch
from tandem.replay.base import RingReplay
from tandem.replay.redis_mirror import RedisMirror
from tandem.replay.redis_scripts import segments
from tandem.replay.redis_writer import RedisWriter
from tandem.replay.ring import LocalRing
from tandem.replay.schema import Schema

__all__ = ["RedisReplay", "segments"]


class RedisReplay(RingReplay):
    """A replay buffer in Redis, shared by many writers; each reader samples a local mirror.

    Same API as ``InMemoryReplay``; a learner cannot tell the two apart except by speed.
    Workers that only write should use ``replay.open_writer`` (a ``RedisWriter``) instead.

    Args:
        url: ``redis://[:password@]host:port[/db]`` or ``rediss://`` (TLS; pass certificate
            options through ``redis_kwargs``).
        name: buffer name; keys are ``tandem:<name>:...``.
        capacity: ring size in transitions. Needed to create a buffer; when attaching to an
            existing one, ``None`` adopts the stored capacity (a different value is an error).
        schema / example: the stored fields (an ``example`` batch is enough). Without either,
            the schema comes from Redis (attaching) or from the first ``add``.
        prioritized, alpha, beta, eps: proportional prioritized replay, per reader.
        seed: sampling RNG seed.
        writer_id: idempotency id of this object's writes; default: host, pid and a random
            suffix. Must be unique among live writers (sequence numbers restart at 0 per object).
        prefetch: mirror new rows in a background thread (default). ``False``: each
            ``sample`` first pulls the new rows itself (one round trip when few are new).
        poll_interval_s: the mirror thread asks Redis for new rows this often (backing off to
            0.2 s while nothing arrives): rows reach the learner within about this delay. Each
            poll costs the learner process about 0.5-1 ms of CPU (mostly the loopback round
            trip), so 20 ms keeps the mirror near 3-5% of a core at 20k inserts/s.
        connect_timeout_s: how long the first connection may take before a clear error.
        reconnect_timeout_s: how long ``add`` (and the mirror) keep retrying through an outage.
        max_sync_bytes: most bytes per mirror round trip. It bounds how long one sync script
            holds Redis (about 2.5 ms per MiB here); steady-state syncs are far smaller.
        check_finite: the mirror refuses NaN or inf in float fields (checked once per new range).
        uses_bins: bins of the reuse histograms.
        redis_kwargs: extra ``redis.Redis.from_url`` options (``ssl_ca_certs``, ...).

    Notes:
        One Redis server (or a primary with replicas), not Redis Cluster: a buffer's keys
        are not hash-tagged into one slot.
        ``len``, ``sample`` and ``stats`` start the mirror (a local copy of the whole ring, so
        ``capacity x row bytes`` of this process' memory). :meth:`remote_size` asks Redis
        instead. Reads see this object's own earlier writes.
    """

    def __init__(
        self,
        url: str,
        name: str = "default",
        capacity: int | None = None,
        *,
        schema: Schema | None = None,
        example: Batch | None = None,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        seed: int | None = None,
        writer_id: str | None = None,
        prefetch: bool = True,
        poll_interval_s: float = 0.02,
        connect_timeout_s: float = 5.0,
        reconnect_timeout_s: float = 60.0,
        socket_timeout_s: float = 10.0,
        max_sync_bytes: int = 1 << 20,
        check_finite: bool = True,
        uses_bins: int = 32,
        redis_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__(
            prioritized=prioritized, alpha=alpha, beta=beta, eps=eps, seed=seed, uses_bins=uses_bins
        )
        self.url, self.name = url, name
        self._init = dict(
            url=url,
            name=name,
            capacity=capacity,
            prioritized=prioritized,
            alpha=alpha,
            beta=beta,
            eps=eps,
            seed=seed,
            prefetch=prefetch,
            poll_interval_s=poll_interval_s,
            connect_timeout_s=connect_timeout_s,
            reconnect_timeout_s=reconnect_timeout_s,
            socket_timeout_s=socket_timeout_s,
            max_sync_bytes=max_sync_bytes,
            check_finite=check_finite,
            uses_bins=uses_bins,
            redis_kwargs=dict(redis_kwargs or {}),
        )
        # The writer opens the connection and creates (or checks) the buffer; the mirror
        # reads through the same store.
        self._writer = RedisWriter(
            url,
            name,
            capacity,
            schema=schema,
            example=example,
            writer_id=writer_id,
            connect_timeout_s=connect_timeout_s,
            reconnect_timeout_s=reconnect_timeout_s,
            socket_timeout_s=socket_timeout_s,
            redis_kwargs=redis_kwargs,
        )
        store = self._store = self._writer.store
        me = weakref.ref(self)  # no cycle: a dropped replay is freed at once, and its thread ends
        self._mirror = RedisMirror(
            store,
            lambda schema, capacity: me()._new_ring(schema, capacity),
            prefetch=prefetch,
            poll_interval_s=poll_interval_s,
            max_sync_bytes=max_sync_bytes,
            check_finite=check_finite,
        )
        self._pid = os.getpid()

    # The base class reads and writes ``_ring``: it is the mirror's.
    @property
    def _ring(self) -> LocalRing | None:  # type: ignore[override]
        mirror = self.__dict__.get("_mirror")
        return None if mirror is None else mirror.ring

    @_ring.setter
    def _ring(self, value: LocalRing | None) -> None:
        mirror = self.__dict__.get("_mirror")
        if mirror is not None:
            mirror.ring = value

    @property
    def schema(self) -> Schema | None:
        return self._writer.schema

    @property
    def capacity(self) -> int | None:
        return self._writer.capacity

    @property
    def writer_id(self) -> str:
        return self._writer.writer_id

    def _forked(self) -> None:
        if os.getpid() != self._pid:  # a forked child: a new writer identity, no inherited mirror
            self._pid = os.getpid()
            self._writer.after_fork()
            self._mirror.reset()

    # ------------------------------------------------------------------------------ writing

    def add(self, batch: Batch | Mapping[str, np.ndarray], *, seq: int | None = None) -> None:
        """Insert a fragment in one round trip (see ``RedisWriter.add``)."""
        self._forked()
        self._writer.add(batch, seq=seq)

    def remote_size(self) -> int:
        """Transitions stored in Redis now (one round trip; does not start the mirror)."""
        return self._writer.remote_size()

    # ------------------------------------------------------------------------------ reading

    def _reader(self) -> LocalRing | None:
        self._forked()
        return self._mirror.read(self._writer.last_write)

    def _settled(self) -> LocalRing | None:
        return self._mirror.settle(self._writer.last_write)

    def sync(self) -> int:
        """Pull every row inserted so far into the mirror now; returns how many arrived."""
        ring = self._reader()
        if ring is None:
            return 0
        if self._mirror.prefetch:  # (without prefetch, _reader just pulled everything)
            return self._mirror.pull_all()
        return 0

    def stats(self) -> dict[str, float | list]:
        """Reuse statistics of this reader (see ``RingReplay.stats``) plus ``replay/mirror_lag``
        (rows in Redis not yet mirrored, as of the last sync) and ``replay/epoch_changes``."""
        out = super().stats()
        out["replay/mirror_lag"] = float(self._mirror.lag)
        out["replay/epoch_changes"] = float(self._mirror.epoch_changes)
        return out

    # ---------------------------------------------------------------------------- lifecycle

    def drop(self) -> None:
        """Delete every key of this buffer from Redis (clients still attached to it then fail
        with a clear error; a new buffer of that name can be created)."""
        self._store.drop()

    def close(self) -> None:
        """Stop the mirror thread, forget this writer's idempotency entry, close connections."""
        self._mirror.stop()
        self._writer.close()

    def __enter__(self) -> RedisReplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        """Pickling (e.g. into a Ray actor) rebuilds a fresh client with a new writer id."""
        kw = dict(self._init)
        kw["schema"] = self.schema
        kw["capacity"] = self.capacity
        return (_rebuild, (kw,))


def _rebuild(kw: dict) -> RedisReplay:
    kw = dict(kw)
    url, name, capacity = kw.pop("url"), kw.pop("name"), kw.pop("capacity")
    return RedisReplay(url, name, capacity, **kw)
