"""``ManagedRedis``: a private redis-server on a free loopback port, stopped at exit.

When the user gives no replay URL, Tandem starts one of these, the way Ray starts its own
GCS: ``redis-server`` with a generated config in a temp dir, bound to 127.0.0.1 (or, for a
multi-node run, to the learner node's cluster address, with a fresh password), no RDB
snapshots, optional AOF persistence and password. Tests use it too (``tests/conftest.py``).

:func:`managed_redis` is the one place Tandem starts its own server (``make_replay(None)``
and the off-policy driver both call it): AOF on, supervised, so a redis-server that dies
(``kill -9``, the OOM killer) is restarted on the same port from the same AOF within about
``supervise_poll_s``, and the replay's clients reconnect through their retry.

>>> with ManagedRedis(aof=True) as server:        # doctest: +SKIP
...     replay = RedisReplay(server.url, "demo", capacity=10_000)
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from tandem.replay.errors import ReplayError

log = logging.getLogger(__name__)

MANAGED_APPENDFSYNC = "always"
"""AOF fsync policy of the managed server: ``always``, chosen by measurement (issue 13).

Redis ``write()``s the AOF before it replies, and the kernel keeps written pages when a
process dies, so in principle a killed redis-server loses no acknowledged write under
``everysec`` either. But while a background fsync is still running, ``everysec`` postpones
that write (up to 2 s) and replies anyway: on this shared, loaded machine the kill -9 test
(tests/faults, two kills per run) lost 768 and 56 of 3200 acknowledged transitions in 2 of
6 runs with ``everysec``, and none in 8 runs with ``always``. ``always`` writes and fsyncs
before replying, at a cost measured with benchmarks/replay.py --aof-only (2 shared cores,
load 8-10): one writer with 256-row fragments 83 k -> 41 k transitions/s, four writers
107 k -> 60 k/s (concurrent writers share fsyncs), 32-row fragments 30 k -> 9.5 k/s.
Actors insert at environment speed, far below that. Pass ``appendfsync="everysec"`` to
:func:`managed_redis` for more throughput at the risk of losing the last second or two of
writes on a crash."""

INSTALL_HINT = (
    "install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis; "
    "conda: conda install -c conda-forge redis-server) or pass --replay memory"
)


_LOGS: dict[str, Path] = {}
"""URL -> log file of each running supervised server of this process."""


def managed_hint(url: str) -> str | None:
    """The fix to print when the managed server at ``url`` cannot be reached (None: not ours).

    "start redis-server" would be wrong advice for a server Tandem started itself."""
    path = _LOGS.get(url)
    if path is None:
        return None
    return f"Tandem's managed redis-server died and its supervisor could not restart it: see {path}"


def find_redis_server(executable: str | None = None) -> str:
    """Path of ``redis-server`` (``executable``, ``$TANDEM_REDIS_SERVER`` or ``PATH``)."""
    exe = executable or os.environ.get("TANDEM_REDIS_SERVER") or shutil.which("redis-server")
    if not exe or not (Path(exe).is_file() or shutil.which(exe)):
        raise ReplayError(f"redis-server is not installed (needed for a local replay buffer): {INSTALL_HINT}")
    return exe


LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address only this machine can reach."""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def new_password() -> str:
    """A fresh random ``requirepass`` (192 bits, URL-safe: it goes into a redis:// URL)."""
    return secrets.token_urlsafe(24)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM redis-server if the process that started it dies without cleaning up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ManagedRedis:
    """A redis-server child process on ``<host>:<free port>`` with its files in a temp dir.

    Args:
        host: the address it binds and its URL names: 127.0.0.1 (default), or a node's
            cluster address so that other nodes reach it (then a ``password`` is required:
            protected mode stays on, and a server open to the network is never unauthenticated).
        port: fixed port (default: a free one, chosen again if it is taken at start).
        aof: append-only-file persistence: the data survives ``restart()``.
        appendfsync: AOF fsync policy (``everysec`` survives a killed process; ``always``
            also survives a machine crash, at a cost per write).
        password: ``requirepass``; the ``url`` carries it.
        maxmemory: e.g. ``"2gb"``; with ``noeviction``, writes past it fail with OOM.
        dir: where the config, log and AOF live (default: a new temp dir, removed at stop).
        executable: path of redis-server (default: ``$TANDEM_REDIS_SERVER`` or ``PATH``).
        config: extra ``redis.conf`` directives.
        supervise: restart the server (same port, dir and AOF) whenever it exits without
            ``stop()`` or ``restart()`` asking it to.
        supervise_poll_s: how often the supervisor checks the process.
        start: start now (default) or wait for ``start()``.

    The server is stopped by ``stop()``, by ``with``, at interpreter exit (atexit), and on
    Linux also when the starting process dies (``PR_SET_PDEATHSIG``). ``restarts`` counts the
    supervisor's restarts.
    """

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int | None = None,
        aof: bool = False,
        appendfsync: str = "everysec",
        password: str | None = None,
        maxmemory: str | int | None = None,
        dir: str | os.PathLike | None = None,
        executable: str | None = None,
        config: Mapping[str, str] | None = None,
        startup_timeout_s: float = 10.0,
        supervise: bool = False,
        supervise_poll_s: float = 0.1,
        start: bool = True,
    ):
        if not is_loopback(host) and not password:
            raise ReplayError(
                f"a managed redis-server bound to {host} (not loopback) needs a password: pass password="
            )
        self.executable = find_redis_server(executable)
        self.host = host
        self._fixed_port = port
        self.port = port or 0
        self.aof, self.appendfsync, self.password, self.maxmemory = aof, appendfsync, password, maxmemory
        self._own_dir = dir is None
        self.dir = Path(dir) if dir is not None else Path(tempfile.mkdtemp(prefix="tandem-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config or {})
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._atexit = False
        self.supervise, self.supervise_poll_s = bool(supervise), float(supervise_poll_s)
        self.restarts = 0
        self._wanted = False  # between start() and stop()/restart(): the supervisor keeps it up
        self._supervisor: threading.Thread | None = None
        self._supervisor_stop = threading.Event()
        if start:
            self.start()

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """``redis://[:password@]host:port/0``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # ------------------------------------------------------------------ lifecycle

    def _write_config(self) -> Path:
        conf = {
            "bind": self.host,
            "port": str(self.port),
            "dir": str(self.dir),
            "daemonize": "no",
            "protected-mode": "yes",
            "save": '""',
            "logfile": "redis.log",
            "appendonly": "yes" if self.aof else "no",
            "appendfsync": self.appendfsync,
            "maxmemory-policy": "noeviction",
        }
        if self.password:
            conf["requirepass"] = self.password
        if self.maxmemory is not None:
            conf["maxmemory"] = str(self.maxmemory)
        conf.update(self.config)
        path = self.dir / "redis.conf"
        # It holds requirepass: readable by this user only (redis-server reads it as this user).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(f"{k} {v}\n" for k, v in conf.items()))
        os.chmod(path, 0o600)
        return path

    def start(self) -> ManagedRedis:
        """Start redis-server and wait until it answers PING (AOF loaded)."""
        with self._lock:
            if self.running:
                return self
            for attempt in range(5):
                if not self._fixed_port and (attempt or not self.port):
                    self.port = free_port(self.host)
                if self._spawn():
                    break
                if self._fixed_port or "Address already in use" not in self.log_tail(20):
                    raise ReplayError(
                        f"redis-server failed to start on {self.host}:{self.port} "
                        f"({self.log_tail(1).strip() or 'no log'}): see {self.log_path}"
                    )
            else:
                raise ReplayError("redis-server found no free port after 5 tries: see " + str(self.log_path))
            self._wanted = True
            if self.supervise:
                _LOGS[self.url] = self.log_path
            if not self._atexit:
                atexit.register(self.stop)
                self._atexit = True
            if self.supervise and self._supervisor is None:
                self._supervisor_stop.clear()
                self._supervisor = threading.Thread(
                    target=self._supervise, name=f"redis-supervisor-{self.port}", daemon=True
                )
                self._supervisor.start()
            return self

    def _supervise(self) -> None:
        """Restart the server when it died on its own. The thread lives until ``stop()``: on
        Linux a child it spawned gets SIGTERM when it exits (``PR_SET_PDEATHSIG`` is per thread)."""
        failures = 0
        while not self._supervisor_stop.wait(self.supervise_poll_s):
            with self._lock:
                if not self._wanted or self.running:
                    failures = 0
                    continue
                code = None if self._proc is None else self._proc.returncode
                self._proc = None
                log.warning(
                    "managed redis-server on %s:%d exited (code %s); restarting it from %s",
                    self.host,
                    self.port,
                    code,
                    self.dir,
                )
                try:
                    ok = self._spawn()
                except ReplayError as e:
                    ok = False
                    log.error("%s", e)
                if ok:
                    self.restarts += 1
                    continue
                failures += 1
                if failures >= 10:
                    self._wanted = False
                    log.error(
                        "managed redis-server on %s:%d did not restart after 10 tries: see %s",
                        self.host,
                        self.port,
                        self.log_path,
                    )

    def _spawn(self) -> bool:
        conf = self._write_config()
        kw = {"preexec_fn": _die_with_parent} if sys.platform.startswith("linux") else {}
        self._proc = subprocess.Popen(
            [self.executable, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **kw,
        )
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No client-side retries: this loop polls itself and must notice a dead child at once.
        client = redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_timeout=2,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    self._proc = None
                    return False
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.TimeoutError):  # incl. LOADING
                    pass
                time.sleep(0.01)
        finally:
            client.close()
        self._terminate(kill=True)
        raise ReplayError(
            f"redis-server did not answer within {self.startup_timeout_s:.0f} s: see {self.log_path}"
        )

    def _terminate(self, kill: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self, kill: bool = False, *, keep_dir: bool = False) -> None:
        """Stop the server (SIGTERM: a clean shutdown that flushes the AOF; ``kill``: SIGKILL,
        like a crash) and remove the temp dir unless ``keep_dir``."""
        with self._lock:
            self._wanted = False
            _LOGS.pop(self.url, None)
            self._terminate(kill)
            if self._atexit:
                atexit.unregister(self.stop)
                self._atexit = False
            if self._own_dir and not keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
        self._stop_supervisor()

    def _stop_supervisor(self) -> None:
        t, self._supervisor = self._supervisor, None
        self._supervisor_stop.set()
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5)

    def restart(self, kill: bool = False, down_s: float = 0.0) -> ManagedRedis:
        """Stop (``kill``: SIGKILL) and start again on the same port and dir, after ``down_s``."""
        with self._lock:
            self._wanted = False  # a restart asked for: the supervisor must not race it
            self._terminate(kill)
        time.sleep(down_s)
        fixed, self._fixed_port = self._fixed_port, self.port
        try:
            return self.start()
        finally:
            self._fixed_port = fixed

    def __enter__(self) -> ManagedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"ManagedRedis({self.host}:{self.port}, {state}, aof={self.aof}, dir={self.dir})"


_shared: ManagedRedis | None = None
_shared_lock = threading.Lock()


def _start_managed(**kwargs) -> ManagedRedis:
    """Tandem's own redis-server: AOF with ``MANAGED_APPENDFSYNC``, supervised."""
    opts = {"aof": True, "appendfsync": MANAGED_APPENDFSYNC, "supervise": True}
    return ManagedRedis(**{**opts, **kwargs})


def local_redis(**kwargs) -> ManagedRedis:
    """The process-wide private redis-server (started on first use, stopped at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            _shared = _start_managed(**kwargs)
        return _shared


def managed_redis(dir: str | os.PathLike | None = None, **kwargs) -> ManagedRedis:
    """The redis-server Tandem runs itself when the user names none: the one place it starts.

    ``dir``: where its config, log and AOF live and stay (a run directory's ``redis/``, so
    that ``--resume`` finds the buffer); None: the process-wide server in a temp dir
    (:func:`local_redis`). ``kwargs`` go to :class:`ManagedRedis`."""
    if dir is None:
        return local_redis(**kwargs)
    return _start_managed(dir=dir, **kwargs)
