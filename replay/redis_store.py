"""``RedisStore``: one replay buffer's keys in Redis, its schema record, and its creation.

The writer and the reader's mirror each hold one. It knows the layout (``tandem:<name>:``
keys, capacity, chunk rows), creates the buffer atomically or checks that an existing one
matches, and turns the scripts' error replies into one-line errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import uuid

import redis

from tandem.replay import redis_scripts
from tandem.replay.errors import CorruptReplayError, ReplayError, SchemaMismatchError, redact
from tandem.replay.redis_conn import RedisConnection
from tandem.replay.redis_scripts import Scripts
from tandem.replay.schema import _NAME, Schema

log = logging.getLogger("tandem.replay.redis_replay")


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class RedisStore:
    """The keys, schema and layout of replay ``name`` on one connection.

    ``schema`` and ``capacity`` are ``None`` until the buffer is created, checked or loaded.
    """

    def __init__(self, conn: RedisConnection, name: str, capacity: int | None, reconnect_timeout_s: float):
        if not _NAME.match(name):
            raise ReplayError(f"replay name {name!r} is not valid: use letters, digits, '_', '.' or '-'")
        if capacity is not None and int(capacity) < 1:
            raise ReplayError(f"replay capacity must be >= 1 (got {capacity})")
        self.conn, self.name = conn, name
        self.url = conn.url
        self.reconnect_s = float(reconnect_timeout_s)
        self.scripts = Scripts.register(conn.client)
        self.capacity: int | None = int(capacity) if capacity is not None else None
        self.schema: Schema | None = None
        self.chunk_rows = 0
        self.record = ""
        self.digest = ""
        self.prefix = self.key("data:")

    def key(self, suffix: str) -> str:
        return f"tandem:{self.name}:{suffix}"

    def call(self, fn, timeout_s: float | None = None):
        """``fn()`` through the connection's retry (default budget: ``reconnect_timeout_s``)."""
        return self.conn.call(fn, self.reconnect_s if timeout_s is None else timeout_s)

    # ----------------------------------------------------------------------------- layout

    def _layout(self, schema: Schema, capacity: int) -> tuple[int, str]:
        widest = max(f.itemsize for f in schema.fields)
        chunk_rows = max(1, min(capacity, redis_scripts.MAX_CHUNK_BYTES // max(1, widest)))
        record = json.dumps(
            {**schema.to_dict(), "capacity": capacity, "chunk_rows": chunk_rows},
            sort_keys=True,
            separators=(",", ":"),
        )
        return chunk_rows, record

    def _adopt(self, schema: Schema, capacity: int, chunk_rows: int, record: str) -> None:
        self.schema, self.capacity, self.chunk_rows, self.record = schema, capacity, chunk_rows, record
        self.digest = hashlib.sha1(record.encode()).hexdigest()

    def parse_record(self, raw: bytes) -> tuple[Schema, int, int]:
        where = f"{self.key('schema')} at {redact(self.url)}"
        schema = Schema.from_json(raw, where)
        try:
            d = json.loads(raw)
            capacity, chunk_rows = int(d["capacity"]), int(d["chunk_rows"])
            if capacity < 1 or chunk_rows < 1:
                raise ValueError("capacity and chunk_rows must be >= 1")
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptReplayError(
                f"{where} is not a Tandem replay schema ({e}): delete the key or use another replay name"
            ) from None
        return schema, capacity, chunk_rows

    def load_stored(self) -> bool:
        """Adopt the schema stored in Redis, if there is one."""
        raw = self.call(lambda: self.conn.client.get(self.key("schema")))
        if raw is None:
            return False
        schema, capacity, chunk_rows = self.parse_record(raw)
        if self.capacity is not None and capacity != self.capacity:
            raise SchemaMismatchError(
                f"replay {self.name!r} at {redact(self.url)} has capacity {capacity}, this process asked "
                f"for {self.capacity}: pass the same capacity, or use another replay name"
            )
        self._adopt(schema, capacity, chunk_rows, raw.decode())
        # Creation writes schema and meta atomically: a schema without meta is a damaged buffer,
        # refused here, before any writer or learner starts on it.
        if not self.call(lambda: self.conn.client.exists(self.key("meta"))):
            raise self.meta_lost(self.key("schema"))
        return True

    def mismatch(self, stored: bytes, schema: Schema) -> SchemaMismatchError:
        theirs, capacity, _ = self.parse_record(stored)
        if theirs.fields != schema.fields:
            what = f"stores other fields (stored != this process: {theirs.diff(schema)})"
        else:
            what = f"has capacity {capacity}, this process asked for {self.capacity}"
        return SchemaMismatchError(
            f"replay {self.name!r} at {redact(self.url)} {what}: write the same fields, dtypes, shapes "
            "and capacity, or use another replay name (or drop the old buffer)"
        )

    def changed_schema(self, who: str) -> SchemaMismatchError:
        """The error for a stored schema hash that is no longer ours."""
        raw = self.conn.client.get(self.key("schema"))
        assert self.schema is not None
        if raw is None:
            return SchemaMismatchError(f"replay {self.name!r} changed schema under this {who}")
        return self.mismatch(raw, self.schema)

    # ---------------------------------------------------------------------------- creation

    def create_or_check(self, schema: Schema) -> None:
        """Create the buffer if it does not exist; else check that ``schema`` matches it."""
        stored = self.call(lambda: self.conn.client.get(self.key("schema")))
        if stored is not None and self.capacity is None:
            _, self.capacity, _ = self.parse_record(stored)
        if self.capacity is None:
            raise ReplayError(
                f"replay {self.name!r} does not exist at {redact(self.url)} yet: pass a capacity to create it"
            )
        chunk_rows, record = self._layout(schema, self.capacity)
        if stored is not None and stored.decode(errors="replace") != record:
            raise self.mismatch(stored, schema)
        if stored is None:
            self._check_memory(schema.row_bytes * self.capacity)
        self._adopt(schema, self.capacity, chunk_rows, record)
        self.ensure_created()

    def data_keys(self) -> list[tuple[str, int]]:
        """``(key, bytes)`` of every data string."""
        assert self.schema is not None and self.capacity is not None
        n_chunks = math.ceil(self.capacity / self.chunk_rows)
        return [
            (
                f"{self.prefix}{f.name}:{c}",
                min(self.chunk_rows, self.capacity - c * self.chunk_rows) * f.itemsize,
            )
            for f in self.schema.fields
            for c in range(n_chunks)
        ]

    def ensure_created(self) -> None:
        """Run the (idempotent, atomic) creation script; a different stored schema is an error,
        and so is a buffer whose ``meta`` hash alone is gone (it is never silently wiped)."""
        assert self.schema is not None
        chunks = self.data_keys()
        keys = [self.key("schema"), self.key("meta"), self.key("writers")] + [k for k, _ in chunks]
        args = [self.record, self.digest, uuid.uuid4().hex] + [n for _, n in chunks]
        try:
            created, stored = self.call(lambda: self.scripts.create(keys=keys, args=args))
        except ReplayError as e:
            raise self.script_error(str(e.__cause__ or "")) or e from None
        if stored is None:
            raise CorruptReplayError(
                f"{self.key('meta')} exists at {redact(self.url)} but {self.key('schema')} does not: "
                "the buffer is damaged; drop it or use another replay name"
            )
        if stored.decode(errors="replace") != self.record:
            raise self.mismatch(stored, self.schema)
        if created:
            log.info("created replay %r at %s (capacity %d)", self.name, redact(self.url), self.capacity)

    def _check_memory(self, need: int) -> None:
        """Refuse up front a buffer that cannot fit under Redis' ``maxmemory``."""
        try:
            info = self.conn.client.info("memory")
        except redis.ResponseError:  # INFO disabled (managed Redis): the OOM error still applies
            return
        maxmem, used = int(info.get("maxmemory", 0) or 0), int(info.get("used_memory", 0) or 0)
        if maxmem and used + need > maxmem:
            raise ReplayError(
                f"replay {self.name!r} needs {_fmt_bytes(need)} ({self.capacity} transitions x "
                f"{need // max(1, self.capacity)} bytes) but Redis at {redact(self.url)} has maxmemory "
                f"{_fmt_bytes(maxmem)} with {_fmt_bytes(used)} used: "
                "lower the replay capacity or raise maxmemory"
            )

    # ------------------------------------------------------------------------------ faults

    def meta_lost(self, key: str) -> CorruptReplayError:
        return CorruptReplayError(
            f"meta key deleted: {self.key('meta')} is gone at {redact(self.url)} while {key} still "
            f"exists, so replay {self.name!r} cannot be trusted; drop it (delete tandem:{self.name}:*) "
            "or use another replay name"
        )

    def data_lost(self) -> CorruptReplayError:
        return CorruptReplayError(
            f"the replay lost its data when Redis restarted without persistence: replay {self.name!r} "
            f"is gone from {redact(self.url)}; turn on appendonly yes in that Redis (or let Tandem "
            "manage one: no --replay) and resume the run"
        )

    def gone(self) -> CorruptReplayError:
        """The error for a buffer that was here and is not: which of the two faults it was."""
        keys = [self.key("schema")] + ([k for k, _ in self.data_keys()[:1]] if self.schema else [])
        for k in keys:
            if self.call(lambda k=k: self.conn.client.exists(k)):
                return self.meta_lost(k)
        return self.data_lost()

    def script_error(self, msg: str, who: str = "writer") -> ReplayError | None:
        """The one-line error for a script's error reply, or None if ``msg`` is not one."""
        if "TANDEMSCHEMA" in msg:
            return self.changed_schema(who)
        if "TANDEMSTALE" in msg:
            return ReplayError(
                f"a writer sent an older sequence number than it already wrote "
                f"({msg.split('TANDEMSTALE')[-1].strip()}): give each writer process its own writer_id"
            )
        if "TANDEMMETALOST" in msg:
            return self.meta_lost(msg.split("TANDEMMETALOST")[-1].strip())
        if "TANDEMCORRUPT" in msg:
            return CorruptReplayError(
                f"replay {self.name!r} at {redact(self.url)} is damaged "
                f"({msg.split('TANDEMCORRUPT')[-1].strip()}): drop it or use another replay name"
            )
        return None

    # --------------------------------------------------------------------------- lifecycle

    def remote_size(self) -> int:
        """Transitions stored in Redis now (one round trip)."""
        cur = self.call(lambda: self.conn.client.hget(self.key("meta"), "cursor"))
        return 0 if cur is None or self.capacity is None else min(int(cur), self.capacity)

    def drop(self) -> None:
        """Delete every key of this buffer."""
        client = self.conn.client
        keys = list(client.scan_iter(match=f"tandem:{self.name}:*", count=1000))
        if keys:
            client.delete(*keys)
