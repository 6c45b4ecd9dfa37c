"""Replay shards on real redis-servers: writers spread by index, the learner samples them as one
buffer, priorities route back, managed shards keep their AOF and get fresh passwords, and a
whole run trains with --replay-shards 2 and resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis
import yaml

from tandem.replay import RedisReplay, open_writer
from tandem.replay.shards import ShardedReplay, decode, start_managed_shards
from tests.batches import id_batch

ROOT = Path(__file__).resolve().parents[2]


def test_writers_spread_over_shards_and_the_learner_samples_them_as_one(make_redis, replay_name):
    servers = [make_redis(password=f"pw{i}") for i in range(2)]
    urls = [s.url for s in servers]
    spec = {"urls": urls, "name": replay_name, "capacity": 1000}
    writers = [open_writer(spec, writer_index=i) for i in range(4)]
    assert [w.url for w in writers] == [urls[0], urls[1], urls[0], urls[1]]
    # shard 0 gets 2 x 30 rows, shard 1 gets 2 x 10: the learner must draw 3:1
    for i, w in enumerate(writers):
        n = 30 if i % 2 == 0 else 10
        w.add(id_batch(np.arange(n) + 1000 * i))
        w.close()
    shards = [
        RedisReplay(u, replay_name, prioritized=True, alpha=1.0, beta=0.5, seed=i) for i, u in enumerate(urls)
    ]
    r = ShardedReplay(shards, seed=0)
    try:
        r.sync()
        assert len(r) == 80 and [len(s) for s in shards] == [60, 20]
        assert r.remote_size() == 80
        ids = np.concatenate([r.sample(200).extras["id"] for _ in range(100)])
        on_shard0 = ((ids // 1000) % 2 == 0).mean()
        assert abs(on_shard0 - 0.75) < 0.015  # 20 000 draws: sd 0.003
        # a priority update routes to the shard named by the index: give shard 1's rows all mass
        rows, idx = r.live_rows()
        shard, _ = decode(idx, 2)
        r.update_priorities(idx, np.where(shard == 1, 50.0, 1e-4))
        batch = r.sample(400)
        assert (((batch.extras["id"] // 1000) % 2) == 1).mean() > 0.99
        assert r.stats()["replay/size"] == 80
    finally:
        r.close()


def test_managed_shards_have_their_own_dir_password_and_aof(tmp_path, replay_name):
    servers = start_managed_shards(2, tmp_path, host="127.0.0.1")
    try:
        assert [s.dir for s in servers] == [tmp_path / "redis-shard0", tmp_path / "redis-shard1"]
        pws = [s.password for s in servers]
        assert all(pws) and pws[0] != pws[1] and len(pws[0]) >= 24
        conf = (servers[0].dir / "redis.conf").read_text()
        assert (servers[0].dir / "redis.conf").stat().st_mode & 0o077 == 0  # it holds the password
        assert "bind 127.0.0.1" in conf and "protected-mode yes" in conf and "appendonly yes" in conf
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=servers[0].port).ping()
        for i, s in enumerate(servers):
            with open_writer({"url": s.url, "name": replay_name, "capacity": 100}) as w:
                w.add(id_batch(np.arange(5 + i)))
    finally:
        for s in servers:
            s.stop()
    # --resume: new servers, new passwords, the same data from the AOF
    again = start_managed_shards(2, tmp_path, host="127.0.0.1")
    try:
        assert [s.password for s in again] != pws
        sizes = [RedisReplay(s.url, replay_name).remote_size() for s in again]
        assert sizes == [5, 6]
    finally:
        for s in again:
            s.stop()
    # resuming with another shard count would drop the data of the shards it no longer opens
    from tandem.replay import ReplayError

    with pytest.raises(ReplayError, match="resume with --replay-shards 2"):
        start_managed_shards(1, tmp_path, host="127.0.0.1")
    assert not (tmp_path / "redis").exists()


def test_a_non_loopback_managed_server_needs_a_password(tmp_path):
    from tandem.replay import ManagedRedis, ReplayError

    with pytest.raises(ReplayError, match="needs a password"):
        ManagedRedis(host="10.1.2.3", dir=tmp_path, start=False)


def tandem(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-m", "tandem.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_a_run_trains_on_two_managed_shards_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    common = ["--backend", "local", "--quiet", "--set", "min_size=200", "--set", "samples_per_insert=8"]
    first = tandem(
        "train", "--algo", "qlearn", "--env", "FrozenLake-v1", "--workers", "2", "--replay-shards", "2",
        "--total-steps", "800", "--run-dir", str(run_dir), *common,
    )  # fmt: skip
    cfg_text = (run_dir / "config.yaml").read_text()
    cfg = yaml.safe_load(cfg_text)
    assert cfg["replay_managed"] is True and cfg["replay"] is None and cfg["replay_shards"] == 2
    pw = [
        line.split()[1]
        for d in ("redis-shard0", "redis-shard1")
        for line in (run_dir / d / "redis.conf").read_text().splitlines()
        if line.startswith("requirepass ")
    ]
    assert len(pw) == 2
    everything = cfg_text + (run_dir / "metrics.jsonl").read_text() + first.stdout + first.stderr
    assert not any(p in everything for p in pw), "a replay password leaked into the run's files or output"
    row = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert row["replay_size"] >= 800 and row["grad_updates"] > 0
    assert row["replay/shards"] == 2 and row["replay/shard_size_min"] > 0  # worker i wrote shard i
    tandem("train", "--resume", str(run_dir), "--total-steps", "1600", "--quiet")
    last = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["env_steps"] >= 1600
    # the resumed run restarted both shards from their AOF: it holds the first run's rows too
    assert last["replay/inserted"] >= 1600
    new_pw = [
        line.split()[1]
        for d in ("redis-shard0", "redis-shard1")
        for line in (run_dir / d / "redis.conf").read_text().splitlines()
        if line.startswith("requirepass ")
    ]
    assert set(new_pw).isdisjoint(pw), "each start of a managed server generates a new password"


def test_make_replay_takes_comma_separated_urls_as_shards(make_redis, replay_name):
    from tandem.replay import make_replay

    urls = [make_redis().url for _ in range(3)]
    r = make_replay(",".join(urls), replay_name, capacity=10, prioritized=True, seed=1)
    try:
        assert isinstance(r, ShardedReplay) and r.k == 3 and r.prioritized
        assert [s.capacity for s in r.shards] == [4, 4, 4]  # ceil(10 / 3) rows each
        r.add(id_batch(np.arange(3)))  # its own writes go to one shard
        r.sync()
        assert len(r) == 3 and sorted(len(s) for s in r.shards) == [0, 0, 3]
    finally:
        r.close()


class FakeBackend:
    """Only what replay_plan asks a backend: whether it spans nodes, and this node's address."""

    def __init__(self, single: bool, address: str):
        self.single, self.address = single, address

    def single_host(self) -> bool:
        return self.single

    def node_address(self) -> str:
        return self.address


def fake_session(tmp_path, backend, **run_kw):
    from types import SimpleNamespace

    from tandem.learners.registry import get_algo
    from tandem.runner.config import RunConfig
    from tandem.runner.rundir import Counters

    run = RunConfig(algo="dqn", run_dir=str(tmp_path / "run"), **run_kw)
    cfg = get_algo("dqn").config_cls()
    cfg.replay_capacity = 1000
    return SimpleNamespace(run_cfg=run, algo_cfg=cfg, backend=backend, resumed_from=None, counters=Counters())


@pytest.mark.parametrize("single, bound", [(True, "127.0.0.1"), (False, "127.0.0.2")])
def test_replay_plan_binds_managed_shards_to_the_learner_nodes_address(tmp_path, single, bound):
    """Several nodes: the servers bind the address the backend reports for this node (here
    127.0.0.2, another loopback address, so the test stays on this machine); one node: loopback.
    The learner's reader (a ``LearnerHost`` from the plan) reads what a shard's writer wrote."""
    from tandem.learners.registry import get_algo
    from tandem.runner.envs import env_spaces
    from tandem.runner.learner_host import LearnerHost, replay_plan

    s = fake_session(tmp_path, FakeBackend(single, "127.0.0.2"), replay_shards=2)
    plan, spec, servers = replay_plan(s)
    buffer = None
    try:
        assert plan.url == ",".join(spec["urls"])
        obs_space, act_space = env_spaces(s.run_cfg.env_id, s.run_cfg.env_kwargs)
        host = LearnerHost(get_algo("dqn").make_learner(obs_space, act_space, s.algo_cfg), plan)
        buffer = host.buffer
        assert [srv.host for srv in servers.servers] == [bound, bound]
        assert all(u.startswith("redis://:") and f"@{bound}:" in u for u in spec["urls"])
        assert spec["capacity"] == 500 and len(set(spec["urls"])) == 2
        for d in ("redis-shard0", "redis-shard1"):
            conf = (tmp_path / "run" / d / "redis.conf").read_text()
            assert f"bind {bound}\n" in conf and "requirepass " in conf
        w = open_writer(spec, writer_index=1)
        assert w.url == spec["urls"][1]
        w.add(id_batch(np.arange(4)))
        w.close()
        buffer.sync()
        assert len(buffer) == 4 and host.replay_inserted() == 4
    finally:
        if buffer is not None:
            buffer.close()
        servers.stop()


def test_replay_plan_refuses_a_shard_count_that_does_not_match_the_urls(tmp_path):
    from tandem.core.errors import TandemError
    from tandem.runner.learner_host import replay_plan

    one = FakeBackend(True, "127.0.0.1")
    s = fake_session(tmp_path, one, replay="redis://127.0.0.1:1/0,redis://127.0.0.1:2/0", replay_shards=3)
    with pytest.raises(TandemError, match="--replay-shards 3 needs 3 Redis URLs"):
        replay_plan(s)
    with pytest.raises(TandemError, match="not --replay memory"):
        replay_plan(fake_session(tmp_path, one, replay="memory", replay_shards=2))
