"""``RedisMirror``: a reader's local numpy copy of a Redis replay, kept fresh by a thread.

Each poll is one ``SYNC_LUA`` round trip that returns the rows inserted since the mirror's
cursor (at most ``max_sync_bytes``); the mirror checks them and appends them to its
``LocalRing``, so ``sample`` runs at numpy speed and never waits on the network (the Ape-X
shape). A reader that fell more than ``capacity`` behind skips to the live window and counts
the rows it missed as evicted unused.

Checks on every newly mirrored range, once (never per sample): byte lengths, booleans that
are 0/1, and float fields that are finite: NaN or inf bytes in Redis (a damaged buffer, issue
13) raise :class:`CorruptReplayError` naming the key rather than training on them. A buffer
that vanished, or came back as a new incarnation (Redis restarted without persistence, or
its ``meta`` key was deleted), is an error too: the learner never trains silently on a
wiped buffer.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

import numpy as np
import redis

from tandem.replay.errors import CorruptReplayError, ReplayError, redact
from tandem.replay.redis_conn import is_transient
from tandem.replay.redis_scripts import segments
from tandem.replay.redis_store import RedisStore
from tandem.replay.ring import LocalRing
from tandem.replay.schema import Schema

log = logging.getLogger("tandem.replay.redis_replay")


def first_non_finite(arr: np.ndarray) -> int | None:
    """Row of the first NaN or inf in a float array (None if all finite or not float)."""
    if arr.dtype.kind != "f" or arr.size == 0:
        return None
    ok = np.isfinite(arr)
    if ok.all():
        return None
    return int(np.argmin(ok.reshape(len(arr), -1).all(axis=1)))


class RedisMirror:
    """The rows of one Redis replay, mirrored into a ``LocalRing`` of this process.

    Args:
        store: the buffer's keys and schema.
        new_ring: builds the empty ring (sampler included) once the schema is known.
        prefetch: a background thread polls for new rows; ``False``: every :meth:`read`
            pulls them itself (one round trip when few are new).
        poll_interval_s: poll period of the thread while rows arrive (backing off to 0.2 s
            while none do).
        max_sync_bytes: most bytes per round trip (bounds how long one script holds Redis).
        check_finite: check float fields of each new range for NaN and inf.
    """

    def __init__(
        self,
        store: RedisStore,
        new_ring: Callable[[Schema, int], LocalRing],
        *,
        prefetch: bool = True,
        poll_interval_s: float = 0.02,
        max_sync_bytes: int = 1 << 20,
        check_finite: bool = True,
    ):
        self.store = store
        self._new_ring = new_ring
        self.prefetch = bool(prefetch)
        self._poll_s = float(poll_interval_s)
        self._max_sync_bytes = int(max_sync_bytes)
        self.check_finite = bool(check_finite)
        self.ring: LocalRing | None = None
        self.reset()

    def reset(self) -> None:
        """Forget everything mirrored (after a fork: the child starts its own mirror)."""
        self.ring = None
        self._lock = threading.Lock()
        self.epoch: str | None = None  # epoch the mirror follows
        self.remote_epoch = ""  # epoch Redis reported last ('' = no buffer)
        self.seen = 0
        self.remote_cursor = 0
        self.epoch_changes = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread_error: BaseException | None = None
        self._outage_since: float | None = None

    # ------------------------------------------------------------------------------ reading

    def read(self, last_write: tuple[str, int] | None) -> LocalRing | None:
        """The ring, started on first use, holding at least the rows of ``last_write``."""
        if self._thread_error is not None:  # the mirror thread stopped on a fatal error
            raise self._thread_error
        store = self.store
        if self.ring is None:
            if store.schema is None and not store.load_stored():
                return None
            assert store.schema is not None and store.capacity is not None
            self.ring = self._new_ring(store.schema, store.capacity)
            try:
                self.catch_up(last_write, initial=True)
            except BaseException:
                self.ring, self.epoch, self.seen = None, None, 0
                raise
            if self.prefetch:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=_mirror_loop,
                    args=(weakref.ref(self), self._stop, self._poll_s),
                    name=f"replay-mirror-{store.name}",
                    daemon=True,
                )
                self._thread.start()
        elif not self.prefetch:
            self.pull_all()
        return self.settle(last_write)

    def settle(self, last_write: tuple[str, int] | None) -> LocalRing | None:
        """The ring, once it holds the rows of ``last_write`` (this process' own write)."""
        if self.ring is not None and last_write is not None:
            epoch, end = last_write
            if self.epoch != epoch or self.seen < end:
                self.catch_up(last_write)
        return self.ring

    def catch_up(self, last_write: tuple[str, int] | None, initial: bool = False) -> None:
        """Pull rows until the mirror holds ``last_write`` (and, initially, all rows present
        when it started), or ``reconnect_timeout_s`` passed."""
        store = self.store
        target = None
        deadline = time.monotonic() + store.reconnect_s
        while True:
            got = store.call(self.sync_once, max(0.0, deadline - time.monotonic()))
            if target is None:
                target = self.remote_cursor
            done = self.seen >= target if initial else True
            if last_write is not None and self.remote_epoch == last_write[0]:
                done = done and self.seen >= last_write[1]
            if done or time.monotonic() > deadline:
                return
            if not got:
                time.sleep(0.001)

    def pull_all(self) -> int:
        """Pull until the mirror holds every row that was in Redis at the first round trip."""
        assert self.ring is not None
        before = self.ring.inserted
        got = self.store.call(self.sync_once)
        target = self.remote_cursor
        while got and self.seen < target:
            got = self.store.call(self.sync_once)
        return self.ring.inserted - before

    def sync_once(self) -> int:
        """One round trip: append the rows inserted since ``seen`` to the mirror."""
        store = self.store
        ring = self.ring
        assert ring is not None and store.schema is not None and store.capacity is not None
        fields = store.schema.fields
        with self._lock:
            args: list = [
                self.epoch or "",
                self.seen,
                self.max_sync_rows(),
                store.capacity,
                store.chunk_rows,
                store.prefix,
                len(fields),
            ]
            for f in fields:
                args += [f.name, f.itemsize]
            res = store.scripts.sync(keys=[store.key("meta")], args=args)
            epoch = res[0].decode() if isinstance(res[0], bytes) else str(res[0])
            cur, lo, hi = int(res[1]), int(res[2]), int(res[3])
            self.remote_epoch = epoch
            if not epoch:  # creation is atomic, so a buffer with a schema always has a meta
                raise store.gone()
            digest = res[4].decode() if isinstance(res[4], bytes) else str(res[4] or "")
            if digest != store.digest:
                raise store.changed_schema("reader")
            first = self.epoch is None
            if epoch != self.epoch:
                if not first:  # recreated since: what this reader trained on is gone from Redis
                    self.epoch_changes += 1
                    raise store.data_lost()
                self.epoch, self.seen = epoch, 0
            elif cur < self.seen:  # cursor went backwards under the same epoch (failover)
                log.warning("replay %r: cursor went back from %d to %d", store.name, self.seen, cur)
                self.seen = self.remote_cursor = cur
                return 0
            segs = segments(lo, hi - lo, store.capacity, store.chunk_rows)
            parts = self._check(segs, res[5:])
            if first:
                ring.inserted += lo  # inserted before this reader attached (not its evictions)
            elif lo > self.seen:
                ring.skip(lo - self.seen)  # inserted and evicted before this reader saw them
            for rows in parts:
                ring.append(rows)
            self.seen, self.remote_cursor = hi, cur
            return hi - lo

    def _check(self, segs: list[tuple[int, int, int, int]], blobs: list) -> list[dict[str, np.ndarray]]:
        """Every range as arrays, checked before the mirror takes any of them."""
        store = self.store
        assert store.schema is not None
        fields = store.schema.fields
        url = redact(store.url)
        if len(blobs) != len(fields) * len(segs):
            raise CorruptReplayError(
                f"replay {store.name!r}: sync returned {len(blobs)} ranges, "
                f"expected {len(fields) * len(segs)}"
            )
        parts = []
        for j, (chunk, inchunk, _, k) in enumerate(segs):
            rows = {}
            for i, f in enumerate(fields):
                b = blobs[i * len(segs) + j]
                key = f"{store.prefix}{f.name}:{chunk}"
                if len(b) != k * f.itemsize:
                    raise CorruptReplayError(
                        f"{key} at {url} returned {len(b)} bytes for {k} rows of {f.itemsize}: the buffer "
                        "is damaged; drop it or use another replay name"
                    )
                arr = np.frombuffer(b, f.np_dtype).reshape(k, *f.shape)
                if f.np_dtype.kind == "b" and k and arr.view(np.uint8).max() > 1:
                    raise CorruptReplayError(
                        f"{key} at {url} holds bytes that are not booleans: the buffer is damaged; "
                        "drop it or use another replay name"
                    )
                bad = first_non_finite(arr) if self.check_finite else None
                if bad is not None:
                    raise CorruptReplayError(
                        f"{key} at {url} holds NaN or inf (row {inchunk + bad} of that chunk, byte offset "
                        f"{(inchunk + bad) * f.itemsize}): replay {store.name!r} is damaged; drop it "
                        f"(delete tandem:{store.name}:*) or use another replay name"
                    )
                rows[f.name] = arr
            parts.append(rows)
        return parts

    def max_sync_rows(self) -> int:
        assert self.store.schema is not None
        return max(1, self._max_sync_bytes // max(1, self.store.schema.row_bytes))

    # ------------------------------------------------------------------------------ thread

    def step(self, state: dict[str, float]) -> float | None:
        """One poll of the mirror thread; returns how long to wait (None: stop the thread)."""
        store = self.store
        try:
            got = self.sync_once()
        except redis.RedisError as e:
            if not is_transient(e):
                self._thread_error = store.conn.translate(e)
                return None
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning("replay %r: lost Redis at %s (%s); retrying", store.name, redact(store.url), e)
            elif time.monotonic() - self._outage_since > store.reconnect_s:
                self._thread_error = store.conn.translate(e, time.monotonic() - self._outage_since)
                return None
            state["backoff"] = min(2 * state["backoff"], 1.0)
            return state["backoff"]
        except ReplayError as e:
            self._thread_error = e
            return None
        if self._outage_since is not None:
            down = time.monotonic() - self._outage_since
            log.warning("replay %r: Redis back after %.1f s", store.name, down)
            self._outage_since = None
        state["backoff"] = 0.01
        if got >= self.max_sync_rows():  # catching up: go again at once
            return 0.0
        if got:  # steady state: one round trip per poll period, however busy the writers
            state["idle"] = self._poll_s
            return self._poll_s
        wait = state["idle"]
        state["idle"] = min(2 * wait, max(0.2, self._poll_s))  # idle: back off
        return wait

    def stop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)
        self._thread = None

    @property
    def lag(self) -> int:
        """Rows in Redis not yet mirrored, as of the last sync."""
        return max(0, self.remote_cursor - self.seen)


def _mirror_loop(ref: weakref.ref, stop: threading.Event, poll_s: float) -> None:
    """Body of the mirror thread. It holds the mirror only weakly, so a replay that is
    dropped without ``close()`` is still collected, and its thread then ends."""
    state = {"idle": poll_s, "backoff": 0.01}
    while not stop.is_set():
        mirror = ref()
        if mirror is None:
            return
        wait = mirror.step(state)
        del mirror
        if wait is None:
            return
        if wait:
            stop.wait(wait)
