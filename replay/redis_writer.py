"""``RedisWriter``: what workers use to insert fragments into a Redis replay (Reverb's Writer).

No mirror, no thread, no local copy of the ring: one ``EVALSHA`` per fragment. The insert
script allocates the slots atomically (many writers share one buffer) and is idempotent per
``(writer id, sequence number)``, so a command that redis-py or :class:`RedisConnection`
retries after a lost reply never doubles data.

>>> writer = open_writer({"url": url, "name": "run-1", "capacity": 100_000})  # doctest: +SKIP
>>> writer.add(batch)                              # returns once Redis applied it
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from tandem.core.types import Batch
from tandem.replay.errors import ReplayError, redact
from tandem.replay.redis_conn import RedisConnection
from tandem.replay.redis_store import RedisStore
from tandem.replay.schema import Schema, batch_arrays


def default_writer_id() -> str:
    """``host-pid-random``: unique among live writers."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class RedisWriter:
    """Inserts fragments into replay ``name`` at ``url``; creates the buffer if needed.

    Args:
        url: ``redis://[:password@]host:port[/db]``, ``rediss://`` (TLS) or ``unix://``.
        name: buffer name; keys are ``tandem:<name>:...``.
        capacity: ring size; needed to create the buffer (``None``: adopt the stored one).
        schema / example: the fields (an ``example`` batch is enough); else the stored schema,
            or the first ``add``'s.
        writer_id: idempotency id; default: host, pid and a random suffix. Must be unique
            among live writers (sequence numbers restart at 0 per object).
        connect_timeout_s: how long the first connection may take before a clear error.
        reconnect_timeout_s: how long ``add`` keeps retrying through a Redis outage.
        socket_timeout_s: per-command socket timeout.
        redis_kwargs: extra ``redis.Redis.from_url`` options (``ssl_ca_certs``, ...).
    """

    def __init__(
        self,
        url: str,
        name: str = "default",
        capacity: int | None = None,
        *,
        schema: Schema | None = None,
        example: Batch | None = None,
        writer_id: str | None = None,
        connect_timeout_s: float = 5.0,
        reconnect_timeout_s: float = 60.0,
        socket_timeout_s: float = 10.0,
        redis_kwargs: Mapping[str, Any] | None = None,
    ):
        self._init = dict(
            url=url,
            name=name,
            connect_timeout_s=connect_timeout_s,
            reconnect_timeout_s=reconnect_timeout_s,
            socket_timeout_s=socket_timeout_s,
            redis_kwargs=dict(redis_kwargs or {}),
        )
        conn = RedisConnection(
            url,
            connect_timeout_s=connect_timeout_s,
            socket_timeout_s=socket_timeout_s,
            redis_kwargs=redis_kwargs,
        )
        store = RedisStore(conn, name, capacity, reconnect_timeout_s)
        if schema is None and example is not None:
            schema = Schema.from_batch(example)
        if schema is not None:
            store.create_or_check(schema)
        else:
            store.load_stored()
        self.store = store
        self.url, self.name = url, name
        self._pid = os.getpid()
        self._writer_id = writer_id or default_writer_id()
        self._seq = 0
        self._lock = threading.Lock()
        self.last_write: tuple[str, int] | None = None
        """``(epoch, end cursor)`` of this writer's last insert: readers wait to see it."""

    @property
    def writer_id(self) -> str:
        return self._writer_id

    @property
    def schema(self) -> Schema | None:
        return self.store.schema

    @property
    def capacity(self) -> int | None:
        return self.store.capacity

    def after_fork(self) -> None:
        """A forked child is a new writer: new id, sequence numbers from 0."""
        self._pid = os.getpid()
        self._writer_id = default_writer_id()
        self._seq = 0
        self._lock = threading.Lock()
        self.last_write = None

    def add(self, batch: Batch | Mapping[str, np.ndarray], *, seq: int | None = None) -> None:
        """Insert a fragment in one round trip; safe to retry (idempotent per writer and seq).

        Returns once Redis applied it (acknowledged). ``seq`` defaults to this writer's next
        sequence number; passing the same ``seq`` twice inserts once. A batch whose fields,
        dtypes or shapes differ from the schema raises :class:`SchemaMismatchError` and writes
        nothing. If the buffer vanished (Redis restarted without persistence, or its ``meta``
        key was deleted), this raises :class:`CorruptReplayError` rather than recreating it.
        """
        if os.getpid() != self._pid:
            self.after_fork()
        arrays = batch_arrays(batch)
        store = self.store
        with self._lock:
            if store.schema is None:
                store.create_or_check(Schema.from_arrays(arrays))
            assert store.schema is not None and store.capacity is not None
            rows = store.schema.validate(arrays)
            n = int(next(iter(rows.values())).shape[0])
            if n == 0:
                return
            if n > store.capacity:
                raise ReplayError(
                    f"a fragment of {n} transitions exceeds the replay capacity {store.capacity}: "
                    "raise the capacity or write smaller fragments"
                )
            if seq is None:
                seq = self._seq
            self._seq = max(self._seq, int(seq) + 1)
            args: list[Any] = [
                store.digest,
                self._writer_id,
                int(seq),
                n,
                store.capacity,
                store.chunk_rows,
                store.prefix,
                len(store.schema.fields),
            ]
            for f in store.schema.fields:
                args += [f.name, f.itemsize, rows[f.name].tobytes()]
            keys = [store.key("meta"), store.key("writers")]
            try:
                start, _dup, epoch = store.call(lambda: self._insert(keys=keys, args=args))
            except ReplayError as e:
                cause = str(e.__cause__ or "")
                if "TANDEMNOINIT" in cause:  # the buffer this writer knew is gone
                    raise store.gone() from None
                if "TANDEMSTALE" in cause:
                    raise ReplayError(
                        f"writer id {self._writer_id!r} sent an older sequence number than it already "
                        f"wrote ({cause.split('TANDEMSTALE')[-1].strip()}): "
                        "give each writer process its own writer_id"
                    ) from None
                raise store.script_error(cause) or e from None
            epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
            self.last_write = (epoch, int(start) + n)

    def _insert(self, keys: list[str], args: list[Any]) -> Any:
        return self.store.scripts.insert(keys=keys, args=args)

    def remote_size(self) -> int:
        """Transitions stored in Redis now (one round trip)."""
        return self.store.remote_size()

    def forget(self) -> None:
        """Delete this writer's idempotency entry (no retry of its inserts can follow)."""
        if self._seq and os.getpid() == self._pid:
            try:  # keeps the writers hash small
                self.store.conn.client.hdel(self.store.key("writers"), self._writer_id)
            except Exception:  # closing: a dead Redis must not turn close() into an error
                pass

    def close(self) -> None:
        """Forget this writer's idempotency entry and close the connection."""
        self.forget()
        self.store.conn.close()

    def __enter__(self) -> RedisWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisWriter({redact(self.url)!r}, {self.name!r}, writer_id={self._writer_id!r})"

    def __reduce__(self):
        """Pickling (e.g. into a Ray actor) rebuilds a fresh client with a new writer id."""
        kw = dict(self._init, schema=self.store.schema, capacity=self.store.capacity)
        return (_rebuild, (kw,))


def _rebuild(kw: dict) -> RedisWriter:
    kw = dict(kw)
    return RedisWriter(kw.pop("url"), kw.pop("name"), kw.pop("capacity"), **kw)


def open_writer(spec: Mapping[str, Any], writer_index: int | None = None) -> RedisWriter:
    """The writer a worker uses: ``spec`` holds ``url`` (or ``urls``, one per replay shard),
    ``name`` and optionally ``capacity`` and any other :class:`RedisWriter` option (the driver
    sends it to every worker through Ray, never on a command line).

    With several shards, the writer writes to shard ``shard_of(writer_index, K)`` (worker
    ``i`` to shard ``i mod K``; without an index, by a hash of its writer id)."""
    kw = dict(spec)
    urls = kw.pop("urls", None)
    url = kw.pop("url", None)
    if urls:
        from tandem.replay.shards import shard_of

        wid = kw.get("writer_id") or default_writer_id()
        kw["writer_id"] = wid
        url = urls[shard_of(wid if writer_index is None else writer_index, len(urls))]
    if url is None:
        raise ReplayError("a replay writer spec needs a 'url' (redis://host:port)")
    return RedisWriter(url, kw.pop("name", "default"), kw.pop("capacity", None), **kw)
