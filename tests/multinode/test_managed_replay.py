"""A real 3-node loopback Ray cluster with no --replay: Tandem starts the managed redis-server(s)
on the learner's node, bound to that node's Ray address with a fresh password, and workers on
the other nodes write to it through the URL Ray handed them.

The cluster (session-scoped) and the ``tandem`` subprocess runner are tests/multinode/conftest.py's
(``ray_cluster``, ``run_tandem``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.multinode.conftest import run_tandem

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(400)]


def passwords(run_dir: Path, dirs: list[str]) -> list[str]:
    return [
        line.split()[1]
        for d in dirs
        for line in (run_dir / d / "redis.conf").read_text().splitlines()
        if line.startswith("requirepass ")
    ]


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("shards", [1, 2])
def test_workers_on_other_nodes_write_to_the_managed_replay(ray_cluster, tmp_path, shards):
    run_dir = tmp_path / f"dqn{shards}"
    before = ray_cluster.actor_ids()
    common = ["--quiet", "--set", "min_size=200", "--set", "samples_per_insert=8"]
    out = run_tandem(
        "train", "--algo", "qlearn", "--env", "FrozenLake-v1", "--workers", "3",
        "--address", ray_cluster.address, "--replay-shards", str(shards),
        "--total-steps", "1500", "--run-dir", str(run_dir), *common, timeout=300,
    )  # fmt: skip
    nodes = ray_cluster.rollout_worker_nodes(before)
    assert len(nodes) == 3 and len(set(nodes.values())) >= 2, f"workers did not spread: {nodes}"
    dirs = ["redis"] if shards == 1 else [f"redis-shard{i}" for i in range(shards)]
    for d in dirs:
        conf = (run_dir / d / "redis.conf").read_text()
        # every node of this cluster has the Ray address 127.0.0.1: that is where it binds
        assert "bind 127.0.0.1\n" in conf and "protected-mode yes" in conf and "requirepass " in conf
    pw = passwords(run_dir, dirs)
    cfg_text = (run_dir / "config.yaml").read_text()
    assert yaml.safe_load(cfg_text)["replay_managed"] is True
    files = [p for p in run_dir.rglob("*") if p.is_file() and p.suffix != ".conf"]
    logs = "".join(p.read_text(errors="replace") for p in files)
    for secret in pw:
        assert secret not in cfg_text + out.stdout + out.stderr, "the replay password leaked"
        assert secret not in logs, "the replay password is in a run file other than redis.conf"
    last = rows(run_dir)[-1]
    assert last["env_steps"] >= 1500 and last["grad_updates"] > 0
    assert last["replay_size"] >= 1500, "the workers' transitions reached the managed replay"
    if shards > 1:
        assert last["replay/shard_size_min"] > 0
    # --resume: a new server on the saved AOF, with a new password
    run_tandem("train", "--resume", str(run_dir), "--total-steps", "2500", "--quiet", timeout=300)
    assert set(passwords(run_dir, dirs)).isdisjoint(pw)
    resumed = rows(run_dir)[-1]
    assert resumed["env_steps"] >= 2500 and resumed["replay/inserted"] >= 2500
