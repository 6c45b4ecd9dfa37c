"""A real 3-node loopback Ray cluster with no --replay: Tandem starts the managed redis-server(s)
on the learner's node, bound to that node's Ray address with a fresh password, and workers on
the other nodes write to it through the URL Ray handed them.

The cluster fixture is a copy of tests/multinode/conftest.py's ``ray_cluster`` (branch
``multinode``), kept here so that the two branches merge without touching one file; once both
are in, this module's copy can go and the conftest's serve both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NODES = 3
CPUS_PER_NODE = 1

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(400)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def driver_env() -> dict[str, str]:
    """A driver joining a loopback cluster: Ray's single-machine mode keeps 127.0.0.1 as is."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


@dataclass
class LoopbackCluster:
    address: str
    dashboard_url: str
    temp_dir: Path
    node_ids: set[str] = field(default_factory=set)

    def actor_ids(self) -> set[str]:
        from ray.util.state import list_actors

        return {a.actor_id for a in list_actors(address=self.dashboard_url, limit=10_000)}

    def rollout_worker_nodes(self, before: set[str]) -> dict[str, str]:
        from ray.util.state import list_actors

        actors = list_actors(
            address=self.dashboard_url, filters=[("class_name", "=", "RolloutWorker")], limit=10_000
        )
        return {a.actor_id: a.node_id for a in actors if a.actor_id not in before}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LoopbackCluster]:
    import ray
    import ray._private.ray_constants as ray_constants
    import ray._private.utils as ray_utils
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="tandem-mn-", dir="/tmp"))
    write_address = ray_utils.write_ray_address
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    # Cluster writes /tmp/ray/ray_current_cluster, which other engineers' ray.init() would join.
    ray_utils.write_ray_address = lambda address, temp_dir=None: write_address(address, str(tmp))
    ray_constants.ENABLE_RAY_CLUSTER = False
    dashboard_port = free_port()
    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(
            num_cpus=CPUS_PER_NODE,
            node_ip_address="127.0.0.1",
            temp_dir=str(tmp),
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
        ),
    )
    try:
        for _ in range(NODES - 1):
            cluster.add_node(num_cpus=CPUS_PER_NODE, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        info = LoopbackCluster(
            address=cluster.address,
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            temp_dir=tmp,
            node_ids={n.node_id for n in cluster.list_all_nodes()},
        )
        assert len(info.node_ids) == NODES
        deadline = time.monotonic() + 60
        while True:  # the state API comes up a few seconds after the GCS
            try:
                info.actor_ids()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield info
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        ray_utils.write_ray_address = write_address
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        shutil.rmtree(tmp, ignore_errors=True)


def tandem(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-m", "tandem.cli", *args],
        capture_output=True,
        text=True,
        env=driver_env(),
        timeout=timeout,
        cwd=ROOT,
    )
    assert p.returncode == 0, f"tandem {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}"
    return p


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
    out = tandem(
        "train", "--algo", "qlearn", "--env", "FrozenLake-v1", "--workers", "3",
        "--address", ray_cluster.address, "--replay-shards", str(shards),
        "--total-steps", "1500", "--run-dir", str(run_dir), *common,
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
    tandem("train", "--resume", str(run_dir), "--total-steps", "2500", "--quiet")
    assert set(passwords(run_dir, dirs)).isdisjoint(pw)
    resumed = rows(run_dir)[-1]
    assert resumed["env_steps"] >= 2500 and resumed["replay/inserted"] >= 2500
