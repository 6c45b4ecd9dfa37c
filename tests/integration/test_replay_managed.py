"""ManagedRedis: a private redis-server on a free loopback port; make_replay's default."""

from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np
import pytest
import redis

from tandem.core.errors import TandemError
from tandem.core.types import Batch
from tandem.replay import ManagedRedis, RedisReplay, RedisWriter, ReplayError, make_replay, open_writer
from tandem.replay import server as server_mod

pytestmark = pytest.mark.integration


def batch(n=4) -> Batch:
    z = np.zeros((n, 2), np.float32)
    return Batch(z, z, np.zeros(n, np.float32), z, np.zeros(n, bool), np.zeros(n, bool))


def test_start_restart_stop(make_redis):
    s = make_redis(aof=True, password="pw")
    assert s.running and s.url == f"redis://:pw@127.0.0.1:{s.port}/0"
    c = redis.Redis.from_url(s.url)
    c.set("k", "v")
    pid, port = s.pid, s.port
    s.restart()  # clean shutdown: AOF flushed
    assert s.pid != pid and s.port == port
    assert c.get("k") == b"v"  # same data, same URL (redis-py reconnects)
    c.close()
    pid = s.pid
    s.stop()
    assert not s.running and s.dir.exists()  # a dir it was given is kept
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_temp_dir_is_removed_at_stop():
    s = ManagedRedis()
    d = s.dir
    assert (d / "redis.conf").exists() and "bind 127.0.0.1" in (d / "redis.conf").read_text()
    s.stop()
    assert not d.exists() and not s.running


def test_missing_redis_server_says_how_to_install(monkeypatch):
    monkeypatch.setenv("TANDEM_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(ReplayError) as e:
        ManagedRedis()
    msg = str(e.value)
    assert msg.startswith("redis-server is not installed")
    assert "apt-get install redis-server" in msg and "brew install redis" in msg
    assert msg.endswith("or pass --replay memory")


def test_make_replay_without_url_starts_a_private_redis(replay_name):
    r = make_replay(None, replay_name, capacity=100, example=batch())
    try:
        assert isinstance(r, RedisReplay)
        shared = server_mod.local_redis()
        assert r.url == shared.url and shared.running
        assert shared.aof and shared.supervise and shared.appendfsync == server_mod.MANAGED_APPENDFSYNC
        assert server_mod.local_redis() is shared  # one per process
        r.add(batch())
        assert len(r) == 4
    finally:
        r.close()
        server_mod.local_redis().stop()


def test_make_replay_with_url(redis_url, replay_name):
    r = make_replay(redis_url, replay_name, capacity=10, prioritized=True, beta=0.7)
    assert isinstance(r, RedisReplay) and r.prioritized and r.beta == 0.7
    r.add(batch())
    assert r.sample(2).weights.shape == (2,)
    r.drop()
    r.close()


def test_replay_errors_are_tandem_errors():
    assert issubclass(ReplayError, TandemError) and issubclass(ReplayError, ValueError)
    with pytest.raises(TandemError, match="needs a 'url'"):
        open_writer({"name": "x"})


def test_open_writer_writes_without_a_mirror_and_pickles(redis_url, replay_name):
    w = open_writer({"url": redis_url, "name": replay_name, "capacity": 16})
    assert isinstance(w, RedisWriter) and not hasattr(w, "sample")
    w.add(batch())
    w2 = pickle.loads(pickle.dumps(w))  # a new client and writer id, same buffer
    assert w2.writer_id != w.writer_id and w2.capacity == 16
    w2.add(batch())
    assert w.remote_size() == 8
    reader = RedisReplay(redis_url, replay_name)
    assert len(reader) == 8
    reader.drop()
    for x in (reader, w, w2):
        x.close()


def test_a_managed_server_that_cannot_restart_says_so(tmp_path, replay_name, monkeypatch):
    s = server_mod.managed_redis(dir=tmp_path / "redis", supervise_poll_s=0.02)
    try:
        w = open_writer({"url": s.url, "name": replay_name, "capacity": 16, "reconnect_timeout_s": 0.5})
        w.add(batch())
        s.executable = "/bin/false"  # every restart now fails at once
        os.kill(s.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while s._wanted and time.monotonic() < deadline:  # the supervisor gives up after 10 tries
            time.sleep(0.05)
        with pytest.raises(ReplayError) as e:
            w.add(batch())
        msg = str(e.value)
        assert msg.startswith(f"cannot reach Redis at {s.url}")
        assert "Tandem's managed redis-server died and its supervisor could not restart it" in msg
        assert "start redis-server" not in msg and "\n" not in msg
    finally:
        s.stop(kill=True)
