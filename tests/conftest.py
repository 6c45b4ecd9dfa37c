"""Shared fixtures. Redis fixtures start private redis-servers (never the shared 6379 one).

* ``redis_server``: one ``ManagedRedis`` for the whole session (no persistence). Tests keep
  apart by buffer name (``replay_name``), so nothing needs flushing.
* ``redis_url``: its URL.
* ``make_redis``: a factory for private servers with options (``aof=True``,
  ``password=...``, ``maxmemory=...``), each stopped at the end of the test; use it for
  tests that restart, kill or fill a server.
* ``replay_name``: a fresh buffer name per test.
* ``chi2_critical``: the chi-square critical value for ``df`` degrees of freedom.

Tests that need redis-server skip when it is not installed.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator

import pytest


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--learner-mode",
        choices=("default", "local", "actor"),
        default="default",
        help="what --learner auto means in every run the tests start (sets $TANDEM_LEARNER; "
        "'actor' runs the whole suite with learner actors)",
    )


def pytest_configure(config) -> None:
    mode = config.getoption("--learner-mode")
    if mode != "default":
        os.environ["TANDEM_LEARNER"] = mode


def pytest_report_header(config) -> str | None:
    mode = os.environ.get("TANDEM_LEARNER")
    return f"tandem: --learner auto resolves to {mode!r} (TANDEM_LEARNER)" if mode else None


def _need_redis_server() -> None:
    if not (os.environ.get("TANDEM_REDIS_SERVER") or shutil.which("redis-server")):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")


@pytest.fixture(scope="session")
def redis_server() -> Iterator:
    """A private redis-server on a free 127.0.0.1 port, shared by the session."""
    _need_redis_server()
    from tandem.replay.server import ManagedRedis

    server = ManagedRedis()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def make_redis(tmp_path) -> Iterator[Callable]:
    """``make_redis(aof=False, password=None, maxmemory=None, **kw) -> ManagedRedis``."""
    _need_redis_server()
    from tandem.replay.server import ManagedRedis

    servers = []

    def make(**kw):
        kw.setdefault("dir", tmp_path / f"redis{len(servers)}")
        server = ManagedRedis(**kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop(kill=True)


@pytest.fixture
def replay_name(request) -> str:
    """A buffer name unique to this test (and this run)."""
    base = re.sub(r"[^A-Za-z0-9_.\-]", "-", request.node.name)[:48]
    return f"{base}-{uuid.uuid4().hex[:8]}"


def chi2_critical(df: int, p: float = 1e-4) -> float:
    """Upper ``p`` critical value of chi-square with ``df`` dof (Wilson-Hilferty; ~1% accurate)."""
    z = {1e-2: 2.326, 1e-3: 3.090, 1e-4: 3.719, 1e-5: 4.265}[p]
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


@pytest.fixture(name="chi2_critical")
def chi2_critical_fixture() -> Callable[..., float]:
    return chi2_critical


@pytest.fixture(scope="module")
def local_ray():
    """An embedded local Ray with 2 CPUs for one test module, shut down after it."""
    import ray

    from tandem.cluster.group import init_ray

    init_ray(None, num_cpus=2)
    yield
    ray.shutdown()
