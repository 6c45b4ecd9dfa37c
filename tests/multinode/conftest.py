"""A real multi-node Ray cluster on one machine, on loopback.

* ``ray_cluster``: a head and two worker nodes, each its own raylet (``ray.cluster_utils.Cluster``),
  1 CPU each, node IP 127.0.0.1, a private temp dir, shared by the session. Drivers join it with
  ``tandem train --address <ray_cluster.address>`` in a subprocess (``ray_cluster.tandem(...)``).
* ``rollout_worker_nodes(before)``: the node id of every rollout-worker actor created since
  ``before`` (a set of actor ids), from Ray's state API, i.e. the actors' own node ids.

Two Ray behaviours this harness works around, both without touching production code:

- ``ray.init(address="127.0.0.1:P")`` rewrites a loopback address to this machine's interface
  address (``services.resolve_ip_for_localhost``), where a GCS bound to 127.0.0.1 refuses the
  connection. Ray skips the rewrite when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its single-machine
  mode), so drivers get that variable and this process patches the constant it sets.
- ``Cluster`` writes the head's address to /tmp/ray/ray_current_cluster, which every later
  ``ray.init()`` without an address on this machine would then try to join (other engineers'
  embedded Rays included). The fixture redirects that file into its private temp dir.
"""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[2]
NODES = 3  # head + 2 workers
CPUS_PER_NODE = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def driver_env(**extra: str) -> dict[str, str]:
    """The environment of a driver process that joins a loopback cluster."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def run_tandem(
    *args: str, timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, "-m", "tandem.cli", *args],
        capture_output=True,
        text=True,
        env=env or driver_env(),
        timeout=timeout,
        cwd=ROOT,
    )
    if p.returncode != 0:
        raise AssertionError(f"tandem {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


@dataclass
class LoopbackCluster:
    address: str
    """GCS address of the head, 127.0.0.1:PORT."""
    dashboard_url: str
    """http://127.0.0.1:PORT: the state API (actor listing) and the job server."""
    temp_dir: Path
    """Ray's private temp dir for this cluster (sessions, logs, its ray_current_cluster file)."""
    node_ids: set[str] = field(default_factory=set)
    """Hex ids of the live nodes."""

    def actor_ids(self) -> set[str]:
        from ray.util.state import list_actors

        return {a.actor_id for a in list_actors(address=self.dashboard_url, limit=10_000)}

    def rollout_worker_nodes(self, before: set[str]) -> dict[str, str]:
        """actor id -> node id of every RayRolloutWorker actor not in ``before``, alive or dead."""
        from ray.util.state import list_actors

        actors = list_actors(
            address=self.dashboard_url, filters=[("class_name", "=", "RayRolloutWorker")], limit=10_000
        )
        return {a.actor_id: a.node_id for a in actors if a.actor_id not in before}


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LoopbackCluster]:
    import ray
    import ray._private.ray_constants as ray_constants
    import ray._private.utils as ray_utils
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="tandem-mn-", dir="/tmp"))
    write_address = ray_utils.write_ray_address
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
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
        nodes = [n for n in cluster.list_all_nodes()]
        info = LoopbackCluster(
            address=cluster.address,
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            temp_dir=tmp,
            node_ids={n.node_id for n in nodes},
        )
        assert len(info.node_ids) == NODES
        _wait_for_state_api(info)
        yield info
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        ray_utils.write_ray_address = write_address
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_for_state_api(info: LoopbackCluster, timeout_s: float = 60) -> None:
    """The dashboard (which serves the state API) comes up a few seconds after the head's GCS."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            info.actor_ids()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
