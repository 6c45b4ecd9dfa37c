"""Connecting to Redis, retrying through outages, and turning redis-py errors into one line.

Every Redis call of the replay goes through :class:`RedisConnection`: ``call(fn, timeout_s)``
retries transient errors (connection lost, timeout, ``LOADING`` while an AOF loads) with
exponential backoff until ``timeout_s``, then raises a :class:`ReplayError` that names the fix.
The replay's inserts are idempotent, so every retry is safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from tandem.replay.errors import ReplayError, redact

T = TypeVar("T")

TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
"""Errors after which a retry may succeed: Redis restarting, loading its AOF, or a blip."""
_FATAL = (redis.AuthenticationError, redis.exceptions.AuthorizationError)
"""ConnectionError subclasses that no retry will fix: a wrong or missing password."""


def is_transient(e: BaseException) -> bool:
    """True for errors a retry may fix (not a refused login)."""
    return isinstance(e, TRANSIENT) and not isinstance(e, _FATAL)


def translate(e: BaseException, url: str, waited_s: float = 0.0, hint: str = "") -> ReplayError:
    """A one-line ReplayError naming the fix for a redis-py exception.

    ``hint`` replaces the advice for an unreachable server (a managed server's supervisor
    knows better than "start redis-server")."""
    shown = redact(url)
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, redis.AuthenticationError) or "NOAUTH" in msg or "WRONGPASS" in msg:
        return ReplayError(
            f"Redis at {shown} refused the login ({msg}): put the password in the URL, "
            "redis://:PASSWORD@host:port"
        )
    if isinstance(e, redis.OutOfMemoryError) or msg.startswith("OOM") or "OOM command" in msg:
        return ReplayError(
            f"Redis at {shown} is out of memory ({msg}): raise its maxmemory, free keys, "
            "or lower the replay capacity"
        )
    if is_transient(e):
        from tandem.replay.server import managed_hint  # (server imports errors only: no cycle)

        during = f" for {waited_s:.0f} s" if waited_s >= 1 else ""
        fix = hint or managed_hint(url) or "start redis-server or pass --replay memory"
        return ReplayError(f"cannot reach Redis at {shown}{during} ({msg}): {fix}")
    return ReplayError(f"Redis at {shown} failed ({type(e).__name__}: {msg})")


class RedisConnection:
    """One redis-py client for ``url`` (``redis://[:password@]host:port[/db]``, ``rediss://``
    for TLS with certificate options in ``redis_kwargs``, or ``unix://``).

    Args:
        url: where Redis is.
        connect_timeout_s: budget of the first PING (and the socket connect timeout, capped at 2 s).
        socket_timeout_s: per-command socket timeout.
        redis_kwargs: extra ``redis.Redis.from_url`` options (``ssl_ca_certs``, ...).
        ping: PING now, so that a wrong URL or password fails here with a clear line.
    """

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        socket_timeout_s: float = 10.0,
        redis_kwargs: Mapping[str, Any] | None = None,
        ping: bool = True,
    ):
        self.url = url
        options: dict[str, Any] = {
            # redis-py's own retry handles a blip inside one command; call() handles outages.
            "retry": Retry(ExponentialBackoff(cap=0.25, base=0.01), 3, supported_errors=TRANSIENT),
            "socket_connect_timeout": min(2.0, max(0.1, connect_timeout_s)),
            "socket_timeout": socket_timeout_s,
            **(redis_kwargs or {}),
        }
        try:
            self.client = redis.Redis.from_url(url, **options)
        except ValueError as e:
            raise ReplayError(
                f"bad replay URL {redact(url)} ({e}): use redis://[:password@]host:port[/db] or rediss://..."
            ) from None
        if ping:
            self.call(self.client.ping, connect_timeout_s)

    def translate(self, e: BaseException, waited_s: float = 0.0) -> ReplayError:
        return translate(e, self.url, waited_s)

    def call(self, fn: Callable[[], T], timeout_s: float) -> T:
        """``fn()``, retrying transient errors with exponential backoff (20 ms doubling to 1 s)
        until ``timeout_s``; any other redis error, or the last transient one, becomes a
        one-line :class:`ReplayError` (the redis-py exception is its ``__cause__``)."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        delay = 0.02
        while True:
            try:
                return fn()
            except redis.RedisError as e:
                if not is_transient(e):
                    raise self.translate(e) from e
                if time.monotonic() + delay > deadline:
                    raise self.translate(e, time.monotonic() - t0) from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def close(self) -> None:
        self.client.close()
