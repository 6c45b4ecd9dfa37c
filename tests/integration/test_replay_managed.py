"""ManagedRedis: a private redis-server on a free loopback port; make_replay's default."""

from __future__ import annotations

import os

import numpy as np
import pytest
import redis

from tandem.core.types import Batch
from tandem.replay import ManagedRedis, RedisReplay, ReplayError, make_replay
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
