"""``RedisReplay``: a replay ring in Redis that many writers fill and each learner mirrors.

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

Writing. ``add`` is one ``EVALSHA`` of a short registered script that, atomically: checks the
schema hash; returns the stored answer if this ``(writer id, seq)`` was already applied (a
retried command never doubles data); advances ``cursor``; ``SETRANGE``s the fragment (split
at the wrap-around and chunk edges). The oldest rows are overwritten first: a FIFO ring.

Reading. Each reader keeps a local numpy mirror (``LocalRing``) and a background thread that
pulls the new rows since its last cursor with one script call (up to ``max_sync_bytes`` per
call; a reader that fell more than ``capacity`` behind skips to the live window and counts
the rows it missed as evicted unused). ``sample`` then runs at numpy speed and never waits
on the network. Priorities and use counts live in the mirror: each learner has its own.

Faults. redis-py retries transient errors (connection lost, timeout, ``LOADING``) with
exponential backoff, and this class retries on top until ``reconnect_timeout_s``; the
idempotency key makes every retry safe. Scripts go through ``register_script``, which reloads
them after a restart (``NOSCRIPT``). If Redis comes back empty (no persistence), writers
recreate the buffer under a new epoch; readers notice the epoch change, keep what they have
mirrored and follow the new buffer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from tandem.core.types import Batch
from tandem.replay.base import RingReplay
from tandem.replay.errors import CorruptReplayError, ReplayError, SchemaMismatchError, redact
from tandem.replay.ring import LocalRing
from tandem.replay.schema import _NAME, Schema, batch_arrays

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
"""Errors after which a retry may succeed: Redis restarting, loading its AOF, or a blip."""
_FATAL = (redis.AuthenticationError, redis.exceptions.AuthorizationError)
"""ConnectionError subclasses that no retry will fix: a wrong or missing password."""


def _transient(e: BaseException) -> bool:
    return isinstance(e, TRANSIENT) and not isinstance(e, _FATAL)


MAX_CHUNK_BYTES = 64 << 20
"""Largest data string per field chunk."""

_SEGMENTS_LUA = """
local function segments(start, n, cap, R)
  local segs = {}
  local pos, off = start, 0
  while n > 0 do
    local slot = pos % cap
    local chunk = math.floor(slot / R)
    local inchunk = slot - chunk * R
    local k = math.min(n, R - inchunk, cap - slot)
    segs[#segs + 1] = {chunk, inchunk, off, k}
    pos = pos + k
    off = off + k
    n = n - k
  end
  return segs
end
"""

# KEYS: meta, writers. ARGV: schema_hash, writer, seq, n, capacity, chunk_rows, data prefix,
# nfields, then per field: name, itemsize, bytes. Every check runs before the first write.
INSERT_LUA = (
    _SEGMENTS_LUA
    + """
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'schema_hash', 'epoch')
if not m[1] then return redis.error_reply('TANDEMNOINIT buffer missing') end
if m[1] ~= ARGV[1] then return redis.error_reply('TANDEMSCHEMA ' .. m[1]) end
local last = redis.call('HGET', KEYS[2], ARGV[2])
local seq = tonumber(ARGV[3])
if last then
  local sep = string.find(last, ':', 1, true)
  local lseq = tonumber(string.sub(last, 1, sep - 1))
  if seq == lseq then return {tonumber(string.sub(last, sep + 1)), 1, m[2]} end
  if seq < lseq then return redis.error_reply('TANDEMSTALE ' .. lseq) end
end
local n, cap, R = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local prefix, nf = ARGV[7], tonumber(ARGV[8])
local start = tonumber(redis.call('HGET', meta, 'cursor'))
local segs = segments(start, n, cap, R)
for f = 0, nf - 1 do
  local name, isz, blob = ARGV[9 + 3 * f], tonumber(ARGV[10 + 3 * f]), ARGV[11 + 3 * f]
  if #blob ~= n * isz then
    return redis.error_reply('TANDEMCORRUPT field ' .. name .. ' sent ' .. #blob .. ' bytes for '
      .. n .. ' rows')
  end
  for _, s in ipairs(segs) do
    local key = prefix .. name .. ':' .. s[1]
    local want = math.min(R, cap - s[1] * R) * isz
    local have = redis.call('STRLEN', key)
    if have ~= want then
      return redis.error_reply('TANDEMCORRUPT ' .. key .. ' holds ' .. have .. ' bytes, expected ' .. want)
    end
  end
end
redis.call('HINCRBY', meta, 'cursor', n)
for f = 0, nf - 1 do
  local name, isz, blob = ARGV[9 + 3 * f], tonumber(ARGV[10 + 3 * f]), ARGV[11 + 3 * f]
  for _, s in ipairs(segs) do
    local bytes = blob
    if #segs > 1 then bytes = string.sub(blob, s[3] * isz + 1, (s[3] + s[4]) * isz) end
    redis.call('SETRANGE', prefix .. name .. ':' .. s[1], s[2] * isz, bytes)
  end
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. string.format('%d', start))
return {start, 0, m[2]}
"""
)

# KEYS: meta. ARGV: reader's epoch, seen, max_rows, capacity, chunk_rows, data prefix, nfields,
# then per field: name, itemsize. Returns {epoch, cursor, lo, hi, schema_hash, bytes...}: the
# rows [lo, hi), per field then per segment. Read-only and bounded by max_rows.
SYNC_LUA = (
    _SEGMENTS_LUA
    + """
local v = redis.call('HMGET', KEYS[1], 'epoch', 'cursor', 'schema_hash')
if not v[1] then return {'', 0, 0, 0, ''} end
local cur = tonumber(v[2])
local seen = tonumber(ARGV[2])
if v[1] ~= ARGV[1] then seen = 0 end
local cap, R = tonumber(ARGV[4]), tonumber(ARGV[5])
local lo = math.max(seen, cur - cap)
local hi = math.min(cur, lo + tonumber(ARGV[3]))
local out = {v[1], cur, lo, hi, v[3]}
if hi > lo then
  local segs = segments(lo, hi - lo, cap, R)
  local prefix, nf = ARGV[6], tonumber(ARGV[7])
  for f = 0, nf - 1 do
    local name, isz = ARGV[8 + 2 * f], tonumber(ARGV[9 + 2 * f])
    for _, s in ipairs(segs) do
      local key = prefix .. name .. ':' .. s[1]
      out[#out + 1] = redis.call('GETRANGE', key, s[2] * isz, (s[2] + s[4]) * isz - 1)
    end
  end
end
return out
"""
)

# KEYS: schema, meta, writers, chunk keys... ARGV: record, schema_hash, epoch, chunk lengths...
# Creates the buffer unless it exists; returns {created, stored record}.
CREATE_LUA = """
if redis.call('HEXISTS', KEYS[2], 'schema_hash') == 1 then
  return {0, redis.call('GET', KEYS[1])}
end
local stored = redis.call('GET', KEYS[1])
if stored and stored ~= ARGV[1] then return {0, stored} end
redis.call('DEL', KEYS[3])
for i = 4, #KEYS do
  redis.call('DEL', KEYS[i])
  redis.call('SETRANGE', KEYS[i], tonumber(ARGV[i]) - 1, '\\0')
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'schema_hash', ARGV[2], 'epoch', ARGV[3], 'cursor', 0)
return {1, ARGV[1]}
"""


def segments(start: int, n: int, capacity: int, chunk_rows: int) -> list[tuple[int, int, int, int]]:
    """Split rows ``[start, start + n)`` into ``(chunk, row in chunk, offset in fragment, rows)``
    runs that do not cross a chunk edge or the wrap-around (the Lua ``segments``, in Python)."""
    out = []
    pos, off = start, 0
    while n > 0:
        slot = pos % capacity
        chunk = slot // chunk_rows
        inchunk = slot - chunk * chunk_rows
        k = min(n, chunk_rows - inchunk, capacity - slot)
        out.append((chunk, inchunk, off, k))
        pos, off, n = pos + k, off + k, n - k
    return out


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class RedisReplay(RingReplay):
    """A replay buffer in Redis, shared by many writers; each reader samples a local mirror.

    Same API as ``InMemoryReplay``; a learner cannot tell the two apart except by speed.

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
        writer_id: idempotency id of this writer; default: host, pid and a random suffix.
            Must be unique among live writers (sequence numbers restart at 0 per object).
        prefetch: mirror new rows in a background thread (default). ``False``: each
            ``sample`` first pulls the new rows itself (one round trip when few are new).
        poll_interval_s: the mirror thread asks Redis for new rows this often (backing off to
            0.2 s while nothing arrives): rows reach the learner within about this delay. Each
            poll costs the learner process about 0.5-1 ms of CPU (mostly the loopback round
            trip), so 20 ms keeps the mirror near 3-5% of a core at 20k inserts/s.
        connect_timeout_s: how long the first connection may take before a clear error.
        reconnect_timeout_s: how long ``add`` keeps retrying through a Redis outage.
        max_sync_bytes: most bytes per mirror round trip. It bounds how long one sync script
            holds Redis (about 2.5 ms per MiB here); steady-state syncs are far smaller.
        uses_bins: bins of the reuse histograms.
        redis_kwargs: extra ``redis.Redis.from_url`` options (``ssl_ca_certs``, ...).

    Notes:
        One Redis server (or a primary with replicas), not Redis Cluster: a buffer's keys
        are not hash-tagged into one slot.
        ``len``, ``sample`` and ``stats`` start the mirror (a local copy of the whole ring, so
        ``capacity x row bytes`` of this process' memory). A pure writer should not call them;
        :meth:`remote_size` asks Redis instead. Reads see this object's own earlier writes.
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
        uses_bins: int = 32,
        redis_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__(
            prioritized=prioritized, alpha=alpha, beta=beta, eps=eps, seed=seed, uses_bins=uses_bins
        )
        if not _NAME.match(name):
            raise ReplayError(f"replay name {name!r} is not valid: use letters, digits, '_', '.' or '-'")
        if capacity is not None and int(capacity) < 1:
            raise ReplayError(f"replay capacity must be >= 1 (got {capacity})")
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
            uses_bins=uses_bins,
            redis_kwargs=dict(redis_kwargs or {}),
        )
        self._prefetch = bool(prefetch)
        self._poll_s = float(poll_interval_s)
        self._reconnect_s = float(reconnect_timeout_s)
        self._max_sync_bytes = int(max_sync_bytes)
        self._k = lambda suffix: f"tandem:{name}:{suffix}"
        self._prefix = self._k("data:")
        options: dict[str, Any] = {
            "retry": Retry(ExponentialBackoff(cap=0.25, base=0.01), 3, supported_errors=TRANSIENT),
            "socket_connect_timeout": min(2.0, max(0.1, connect_timeout_s)),
            "socket_timeout": socket_timeout_s,
            **(redis_kwargs or {}),
        }
        try:
            self._client = redis.Redis.from_url(url, **options)
        except ValueError as e:
            raise ReplayError(
                f"bad replay URL {redact(url)} ({e}): use redis://[:password@]host:port[/db] or rediss://..."
            ) from None
        self._insert_script = self._client.register_script(INSERT_LUA)
        self._sync_script = self._client.register_script(SYNC_LUA)
        self._create_script = self._client.register_script(CREATE_LUA)

        self._pid = os.getpid()
        self._writer_id = writer_id or self._default_writer_id()
        self._seq = 0
        self._write_lock = threading.Lock()
        self._last_write: tuple[str, int] | None = None  # (epoch, end cursor) of our last insert

        self.capacity: int | None = int(capacity) if capacity is not None else None
        self.schema: Schema | None = None
        self._chunk_rows = 0
        self._record = ""
        self._digest = ""

        # mirror state (reader side)
        self._sync_lock = threading.Lock()
        self._epoch: str | None = None  # epoch the mirror follows
        self._remote_epoch = ""  # epoch Redis reported last ('' = no buffer)
        self._seen = 0
        self._remote_cursor = 0
        self._epoch_changes = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread_error: BaseException | None = None
        self._outage_since: float | None = None

        self._retrying(lambda: self._client.ping(), connect_timeout_s)
        if schema is None and example is not None:
            schema = Schema.from_batch(example)
        if schema is not None:
            self._create_or_check(schema)
        else:
            self._load_stored()

    # ----------------------------------------------------------------- connection and errors

    @staticmethod
    def _default_writer_id() -> str:
        return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def _translate(self, e: BaseException, waited_s: float = 0.0) -> ReplayError:
        """A one-line ReplayError naming the fix for a redis-py exception."""
        url = redact(self.url)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, redis.AuthenticationError) or "NOAUTH" in msg or "WRONGPASS" in msg:
            return ReplayError(
                f"Redis at {url} refused the login ({msg}): put the password in the URL, "
                "redis://:PASSWORD@host:port"
            )
        if isinstance(e, redis.OutOfMemoryError) or msg.startswith("OOM") or "OOM command" in msg:
            return ReplayError(
                f"Redis at {url} is out of memory ({msg}): raise its maxmemory, free keys, "
                "or lower the replay capacity"
            )
        if _transient(e):
            during = f" for {waited_s:.0f} s" if waited_s >= 1 else ""
            return ReplayError(
                f"cannot reach Redis at {url}{during} ({msg}): start redis-server or pass --replay memory"
            )
        return ReplayError(f"Redis at {url} failed ({type(e).__name__}: {msg})")

    def _retrying(self, fn: Callable[[], T], timeout_s: float) -> T:
        """Call ``fn``, retrying transient errors with exponential backoff until ``timeout_s``."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        delay = 0.02
        while True:
            try:
                return fn()
            except redis.RedisError as e:
                if not _transient(e):
                    raise self._translate(e) from e
                if time.monotonic() + delay > deadline:
                    raise self._translate(e, time.monotonic() - t0) from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    # ----------------------------------------------------------------------------- creation

    def _layout(self, schema: Schema, capacity: int) -> tuple[int, str]:
        widest = max(f.itemsize for f in schema.fields)
        chunk_rows = max(1, min(capacity, MAX_CHUNK_BYTES // max(1, widest)))
        record = json.dumps(
            {**schema.to_dict(), "capacity": capacity, "chunk_rows": chunk_rows},
            sort_keys=True,
            separators=(",", ":"),
        )
        return chunk_rows, record

    def _adopt(self, schema: Schema, capacity: int, chunk_rows: int, record: str) -> None:
        self.schema, self.capacity, self._chunk_rows, self._record = schema, capacity, chunk_rows, record
        self._digest = hashlib.sha1(record.encode()).hexdigest()

    def _parse_record(self, raw: bytes) -> tuple[Schema, int, int]:
        where = f"{self._k('schema')} at {redact(self.url)}"
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

    def _load_stored(self) -> bool:
        """Adopt the schema stored in Redis, if there is one."""
        raw = self._retrying(lambda: self._client.get(self._k("schema")), self._reconnect_s)
        if raw is None:
            return False
        schema, capacity, chunk_rows = self._parse_record(raw)
        if self.capacity is not None and capacity != self.capacity:
            raise SchemaMismatchError(
                f"replay {self.name!r} at {redact(self.url)} has capacity {capacity}, this process asked "
                f"for {self.capacity}: pass the same capacity, or use another replay name"
            )
        self._adopt(schema, capacity, chunk_rows, raw.decode())
        return True

    def _mismatch(self, stored: bytes, schema: Schema) -> SchemaMismatchError:
        theirs, capacity, _ = self._parse_record(stored)
        if theirs.fields != schema.fields:
            what = f"stores other fields (stored != this process: {theirs.diff(schema)})"
        else:
            what = f"has capacity {capacity}, this process asked for {self.capacity}"
        return SchemaMismatchError(
            f"replay {self.name!r} at {redact(self.url)} {what}: write the same fields, dtypes, shapes "
            "and capacity, or use another replay name (or drop the old buffer)"
        )

    def _create_or_check(self, schema: Schema) -> None:
        """Create the buffer if it does not exist; else check that ``schema`` matches it."""
        stored = self._retrying(lambda: self._client.get(self._k("schema")), self._reconnect_s)
        if stored is not None and self.capacity is None:
            _, self.capacity, _ = self._parse_record(stored)
        if self.capacity is None:
            raise ReplayError(
                f"replay {self.name!r} does not exist at {redact(self.url)} yet: pass a capacity to create it"
            )
        chunk_rows, record = self._layout(schema, self.capacity)
        if stored is not None and stored.decode(errors="replace") != record:
            raise self._mismatch(stored, schema)
        if stored is None:
            self._check_memory(schema.row_bytes * self.capacity)
        self._adopt(schema, self.capacity, chunk_rows, record)
        self._ensure_created()

    def _data_keys(self) -> list[tuple[str, int]]:
        assert self.schema is not None and self.capacity is not None
        n_chunks = math.ceil(self.capacity / self._chunk_rows)
        return [
            (
                f"{self._prefix}{f.name}:{c}",
                min(self._chunk_rows, self.capacity - c * self._chunk_rows) * f.itemsize,
            )
            for f in self.schema.fields
            for c in range(n_chunks)
        ]

    def _ensure_created(self) -> None:
        """Run the (idempotent, atomic) creation script; a different stored schema is an error."""
        assert self.schema is not None
        chunks = self._data_keys()
        keys = [self._k("schema"), self._k("meta"), self._k("writers")] + [k for k, _ in chunks]
        args = [self._record, self._digest, uuid.uuid4().hex] + [n for _, n in chunks]
        created, stored = self._retrying(lambda: self._create_script(keys=keys, args=args), self._reconnect_s)
        if stored is None:
            raise CorruptReplayError(
                f"{self._k('meta')} exists at {redact(self.url)} but {self._k('schema')} does not: "
                "the buffer is damaged; drop it or use another replay name"
            )
        if stored.decode(errors="replace") != self._record:
            raise self._mismatch(stored, self.schema)
        if created:
            log.info("created replay %r at %s (capacity %d)", self.name, redact(self.url), self.capacity)

    def _check_memory(self, need: int) -> None:
        """Refuse up front a buffer that cannot fit under Redis' ``maxmemory``."""
        try:
            info = self._client.info("memory")
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

    # ------------------------------------------------------------------------------ writing

    def add(self, batch: Batch | Mapping[str, np.ndarray], *, seq: int | None = None) -> None:
        """Insert a fragment in one round trip; safe to retry (idempotent per writer and seq).

        ``seq`` defaults to this writer's next sequence number. Passing the same ``seq`` twice
        inserts once. A batch whose fields, dtypes or shapes differ from the buffer's schema
        raises :class:`SchemaMismatchError` and writes nothing.
        """
        if os.getpid() != self._pid:  # forked: a new writer identity, and no inherited mirror
            self._after_fork()
        arrays = batch_arrays(batch)
        with self._write_lock:
            if self.schema is None:
                self._create_or_check(Schema.from_arrays(arrays))
            assert self.schema is not None and self.capacity is not None
            rows = self.schema.validate(arrays)
            n = int(next(iter(rows.values())).shape[0])
            if n == 0:
                return
            if n > self.capacity:
                raise ReplayError(
                    f"a fragment of {n} transitions exceeds the replay capacity {self.capacity}: "
                    "raise the capacity or write smaller fragments"
                )
            if seq is None:
                seq = self._seq
            self._seq = max(self._seq, int(seq) + 1)
            args: list[Any] = [
                self._digest,
                self._writer_id,
                int(seq),
                n,
                self.capacity,
                self._chunk_rows,
                self._prefix,
                len(self.schema.fields),
            ]
            for f in self.schema.fields:
                args += [f.name, f.itemsize, rows[f.name].tobytes()]
            keys = [self._k("meta"), self._k("writers")]
            for _ in range(3):
                try:
                    start, _dup, epoch = self._retrying(
                        lambda: self._insert_script(keys=keys, args=args), self._reconnect_s
                    )
                    break
                except ReplayError as e:
                    cause = str(e.__cause__ or "")
                    if "TANDEMNOINIT" in cause:  # Redis lost the buffer (restart, flush): recreate
                        self._ensure_created()
                        continue
                    raise self._script_error(cause) or e from None
            else:
                raise ReplayError(f"replay {self.name!r} keeps disappearing from {redact(self.url)}")
            epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
            self._last_write = (epoch, int(start) + n)

    def _script_error(self, msg: str) -> ReplayError | None:
        if "TANDEMSCHEMA" in msg:
            raw = self._client.get(self._k("schema"))
            assert self.schema is not None
            return (
                self._mismatch(raw, self.schema)
                if raw is not None
                else SchemaMismatchError(f"replay {self.name!r} changed schema under this writer")
            )
        if "TANDEMSTALE" in msg:
            return ReplayError(
                f"writer id {self._writer_id!r} sent an older sequence number than it already wrote "
                f"({msg.split('TANDEMSTALE')[-1].strip()}): give each writer process its own writer_id"
            )
        if "TANDEMCORRUPT" in msg:
            return CorruptReplayError(
                f"replay {self.name!r} at {redact(self.url)} is damaged "
                f"({msg.split('TANDEMCORRUPT')[-1].strip()}): drop it or use another replay name"
            )
        return None

    def _after_fork(self) -> None:
        self._pid = os.getpid()
        self._writer_id = self._default_writer_id()
        self._seq = 0
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._thread = None
        self._ring = None
        self._epoch = None
        self._seen = 0
        self._last_write = None

    def remote_size(self) -> int:
        """Transitions stored in Redis now (one round trip; does not start the mirror)."""
        cur = self._retrying(lambda: self._client.hget(self._k("meta"), "cursor"), self._reconnect_s)
        return 0 if cur is None or self.capacity is None else min(int(cur), self.capacity)

    # ------------------------------------------------------------------------------ reading

    def _reader(self) -> LocalRing | None:
        if os.getpid() != self._pid:
            self._after_fork()
        if self._thread_error is not None:  # the mirror thread stopped on a fatal error
            raise self._thread_error
        if self._ring is None:
            if self.schema is None and not self._load_stored():
                return None
            assert self.schema is not None and self.capacity is not None
            self._ring = self._new_ring(self.schema, self.capacity)
            try:
                self._catch_up(initial=True)
            except BaseException:
                self._ring, self._epoch, self._seen = None, None, 0
                raise
            if self._prefetch:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=_mirror_loop,
                    args=(weakref.ref(self), self._stop, self._poll_s),
                    name=f"replay-mirror-{self.name}",
                    daemon=True,
                )
                self._thread.start()
        elif not self._prefetch:
            self._pull_all()
        return self._settled()

    def _settled(self) -> LocalRing | None:
        if self._ring is not None and self._last_write is not None:
            epoch, end = self._last_write
            if self._epoch != epoch or self._seen < end:
                self._catch_up()
        return self._ring

    def _catch_up(self, initial: bool = False) -> None:
        """Pull rows until the mirror holds everything this object wrote (and, initially, all
        rows present when it started)."""
        target = None
        deadline = time.monotonic() + self._reconnect_s
        while True:
            got = self._retrying(self._sync_once, max(0.0, deadline - time.monotonic()))
            if target is None:
                target = self._remote_cursor
            done = self._seen >= target if initial else True
            if self._last_write is not None:
                epoch, end = self._last_write
                if self._remote_epoch != epoch:  # that write's buffer is gone (restart, flush)
                    self._last_write = None
                else:
                    done = done and self._seen >= end
            if done or time.monotonic() > deadline:
                return
            if not got:
                time.sleep(0.001)

    def sync(self) -> int:
        """Pull every row inserted so far into the mirror now; returns how many arrived."""
        ring = self._reader()
        if ring is None:
            return 0
        if self._prefetch:  # (without prefetch, _reader just pulled everything)
            return self._pull_all()
        return 0

    def _pull_all(self) -> int:
        """Pull until the mirror holds every row that was in Redis at the first round trip."""
        assert self._ring is not None
        before = self._ring.inserted
        got = self._retrying(self._sync_once, self._reconnect_s)
        target = self._remote_cursor
        while got and self._seen < target:
            got = self._retrying(self._sync_once, self._reconnect_s)
        return self._ring.inserted - before

    def _sync_once(self) -> int:
        """One round trip: append the rows inserted since ``_seen`` to the mirror."""
        ring = self._ring
        assert ring is not None and self.schema is not None and self.capacity is not None
        fields = self.schema.fields
        max_rows = self._max_sync_rows()
        with self._sync_lock:
            args: list[Any] = [
                self._epoch or "",
                self._seen,
                max_rows,
                self.capacity,
                self._chunk_rows,
                self._prefix,
                len(fields),
            ]
            for f in fields:
                args += [f.name, f.itemsize]
            res = self._sync_script(keys=[self._k("meta")], args=args)
            epoch = res[0].decode() if isinstance(res[0], bytes) else str(res[0])
            cur, lo, hi = int(res[1]), int(res[2]), int(res[3])
            self._remote_epoch = epoch
            if not epoch:  # buffer gone (restart without persistence): keep the mirror, wait
                return 0
            digest = res[4].decode() if isinstance(res[4], bytes) else str(res[4] or "")
            if digest != self._digest:
                raw = self._client.get(self._k("schema"))
                raise (
                    self._mismatch(raw, self.schema)
                    if raw
                    else SchemaMismatchError(f"replay {self.name!r} changed schema under this reader")
                )
            first = self._epoch is None
            if epoch != self._epoch:
                if not first:
                    self._epoch_changes += 1
                    log.warning(
                        "replay %r: Redis at %s lost the buffer (restart without persistence?); keeping "
                        "%d mirrored transitions and following the new buffer",
                        self.name,
                        redact(self.url),
                        len(ring),
                    )
                self._epoch, self._seen = epoch, 0
            elif cur < self._seen:  # cursor went backwards under the same epoch (failover)
                log.warning("replay %r: cursor went back from %d to %d", self.name, self._seen, cur)
                self._seen = self._remote_cursor = cur
                return 0
            segs = segments(lo, hi - lo, self.capacity, self._chunk_rows)
            blobs = res[5:]
            if len(blobs) != len(fields) * len(segs):
                raise CorruptReplayError(
                    f"replay {self.name!r}: sync returned {len(blobs)} ranges, "
                    f"expected {len(fields) * len(segs)}"
                )
            parts = []  # check every range before the mirror takes any of them
            for j, (chunk, _, _, k) in enumerate(segs):
                rows = {}
                for i, f in enumerate(fields):
                    b = blobs[i * len(segs) + j]
                    if len(b) != k * f.itemsize:
                        raise CorruptReplayError(
                            f"{self._prefix}{f.name}:{chunk} at {redact(self.url)} returned {len(b)} bytes "
                            f"for {k} rows of {f.itemsize}: the buffer is damaged; "
                            "drop it or use another replay name"
                        )
                    arr = np.frombuffer(b, f.np_dtype).reshape(k, *f.shape)
                    if f.np_dtype.kind == "b" and k and arr.view(np.uint8).max() > 1:
                        raise CorruptReplayError(
                            f"{self._prefix}{f.name}:{chunk} at {redact(self.url)} holds bytes that are not "
                            "booleans: the buffer is damaged; drop it or use another replay name"
                        )
                    rows[f.name] = arr
                parts.append(rows)
            if first:
                ring.inserted += lo  # inserted before this reader attached (not its evictions)
            elif lo > self._seen:
                ring.skip(lo - self._seen)  # inserted and evicted before this reader saw them
            for rows in parts:
                ring.append(rows)
            self._seen, self._remote_cursor = hi, cur
            return hi - lo

    def _mirror_step(self, state: dict[str, float]) -> float | None:
        """One poll of the mirror thread; returns how long to wait (None: stop the thread)."""
        try:
            got = self._sync_once()
        except redis.RedisError as e:
            if not _transient(e):
                self._thread_error = self._translate(e)
                return None
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning("replay %r: lost Redis at %s (%s); retrying", self.name, redact(self.url), e)
            state["backoff"] = min(2 * state["backoff"], 1.0)
            return state["backoff"]
        except ReplayError as e:
            self._thread_error = e
            return None
        if self._outage_since is not None:
            log.warning(
                "replay %r: Redis back after %.1f s", self.name, time.monotonic() - self._outage_since
            )
            self._outage_since = None
        state["backoff"] = 0.01
        if got >= self._max_sync_rows():  # catching up: go again at once
            return 0.0
        if got:  # steady state: one round trip per poll period, however busy the writers
            state["idle"] = self._poll_s
            return self._poll_s
        wait = state["idle"]
        state["idle"] = min(2 * wait, max(0.2, self._poll_s))  # idle: back off
        return wait

    def _max_sync_rows(self) -> int:
        assert self.schema is not None
        return max(1, self._max_sync_bytes // max(1, self.schema.row_bytes))

    def stats(self) -> dict[str, float | list]:
        """Reuse statistics of this reader (see ``RingReplay.stats``) plus ``replay/mirror_lag``
        (rows in Redis not yet mirrored, as of the last sync) and ``replay/epoch_changes``."""
        out = super().stats()
        out["replay/mirror_lag"] = float(max(0, self._remote_cursor - self._seen))
        out["replay/epoch_changes"] = float(self._epoch_changes)
        return out

    # ---------------------------------------------------------------------------- lifecycle

    @property
    def writer_id(self) -> str:
        return self._writer_id

    def drop(self) -> None:
        """Delete every key of this buffer from Redis (other clients' next insert recreates it)."""
        keys = list(self._client.scan_iter(match=f"tandem:{self.name}:*", count=1000))
        if keys:
            self._client.delete(*keys)

    def close(self) -> None:
        """Stop the mirror thread, forget this writer's idempotency entry, close connections."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)
        self._thread = None
        if self._seq and os.getpid() == self._pid:
            try:  # no retry of our inserts can come after close: keep the writers hash small
                self._client.hdel(self._k("writers"), self._writer_id)
            except redis.RedisError:
                pass
        self._client.close()

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


def _mirror_loop(ref: weakref.ref, stop: threading.Event, poll_s: float) -> None:
    """Body of the mirror thread. It holds the replay only weakly, so a replay that is
    dropped without ``close()`` is still collected, and its thread then ends."""
    state = {"idle": poll_s, "backoff": 0.01}
    while not stop.is_set():
        replay = ref()
        if replay is None:
            return
        wait = replay._mirror_step(state)
        del replay
        if wait is None:
            return
        if wait:
            stop.wait(wait)


def _rebuild(kw: dict) -> RedisReplay:
    kw = dict(kw)
    url, name, capacity = kw.pop("url"), kw.pop("name"), kw.pop("capacity")
    return RedisReplay(url, name, capacity, **kw)
