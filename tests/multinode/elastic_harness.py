"""A private multi-node loopback Ray cluster per test, for tests that remove and add nodes.

The session's ``ray_cluster`` (conftest.py) is shared and must keep its 3 nodes; these tests take
nodes away, so each gets its own ``ray.cluster_utils.Cluster``: a 0-CPU head (the GCS, never
removed), a 1-CPU learner node that only the learner actor can use (a ``learner`` resource the
runs ask for with ``learner_resources``; the tests take worker nodes away, never the learner's),
and 1-CPU worker nodes. Health checks are fast (a dead node is noticed in ~3 s, not
Ray's default ~30 s) so that a test spends its time on Tandem, not on Ray's failure detector.
The training driver runs in this process (``run_in_background``): the test can then end a run
cleanly by lowering the live RunConfig's ``total_steps`` once it has seen what it came for.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

FAST_HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 3,
}


@dataclass
class ElasticCluster:
    cluster: Any
    """The ``ray.cluster_utils.Cluster``."""
    temp_dir: Path
    """Its private temp dir."""
    workers: list[Any] = field(default_factory=list)
    """Worker nodes added (and not removed) so far."""

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_node(self, cpus: int = 1) -> Any:
        node = self.cluster.add_node(num_cpus=cpus, node_ip_address="127.0.0.1")
        self.workers.append(node)
        return node

    def remove_node(self, node: Any) -> None:
        """Kill a worker node's raylet and its workers at once (a lost machine, not a drain)."""
        self.workers.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)


@pytest.fixture
def elastic_cluster() -> Iterator[Callable[[int], ElasticCluster]]:
    """``make(worker_nodes)``: a fresh loopback cluster; this process is connected to it."""
    import ray
    import ray._private.ray_constants as ray_constants
    import ray._private.utils as ray_utils
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="tandem-el-", dir="/tmp"))
    write_address = ray_utils.write_ray_address
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    ray_utils.write_ray_address = lambda address, temp_dir=None: write_address(address, str(tmp))
    ray_constants.ENABLE_RAY_CLUSTER = False
    made: list[ElasticCluster] = []

    def make(worker_nodes: int) -> ElasticCluster:
        if ray.is_initialized():
            ray.shutdown()
        cluster = Cluster(
            initialize_head=True,
            head_node_args=dict(
                num_cpus=0,
                node_ip_address="127.0.0.1",
                temp_dir=str(tmp),
                include_dashboard=False,
                _system_config=FAST_HEALTH,
            ),
        )
        ec = ElasticCluster(cluster, tmp)
        made.append(ec)
        # Not in ec.workers: never removed. Its one CPU goes to the learner actor (placed first),
        # so no rollout worker lands there.
        cluster.add_node(num_cpus=1, resources={"learner": 1}, node_ip_address="127.0.0.1")
        for _ in range(worker_nodes):
            ec.add_node()
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        return ec

    try:
        yield make
    finally:
        _end_live_runs()
        if ray.is_initialized():
            ray.shutdown()
        for ec in made:
            ec.cluster.shutdown()
        ray_utils.write_ray_address = write_address
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        shutil.rmtree(tmp, ignore_errors=True)


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a row being written right now
            pass
    return out


def wait_rows(
    run_dir: Path, pred: Callable[[dict], bool], what: str, timeout_s: float, after: int = 0
) -> int:
    """Wait for a metrics row (index >= ``after``) that satisfies ``pred``; returns its index."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for _, bg in _LIVE:  # a run that died will never write the row: say why now
            if not bg.thread.is_alive() and bg.error is not None:
                raise AssertionError(f"the run ended with {type(bg.error).__name__}: {bg.error}")
        data = rows(run_dir)
        for k in range(after, len(data)):
            if pred(data[k]):
                return k
        time.sleep(0.5)
    seen = [(r.get("workers"), r.get("env_steps")) for r in rows(run_dir)]
    raise AssertionError(
        f"timed out after {timeout_s:.0f} s waiting for {what}; (workers, steps): {seen}{_where_runs_are()}"
    )


def _where_runs_are() -> str:
    """The stacks of the runs still going: where a run that wrote nothing is stuck."""
    import sys
    import traceback

    frames = sys._current_frames()
    out = []
    for _, bg in _LIVE:
        frame = frames.get(bg.thread.ident) if bg.thread.is_alive() else None
        if frame is not None:
            out.append("".join(traceback.format_stack(frame)[-12:]))
    return "".join(f"\n--- a live run's stack:\n{s}" for s in out)


class Background:
    """Runs ``fn`` in a thread; ``join`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], Any]):
        self.error: BaseException | None = None
        self.value: Any = None

        def body():
            try:
                self.value = fn()
            except BaseException as e:  # noqa: BLE001 - handed to join()
                self.error = e

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def join(self, timeout_s: float) -> Any:
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise AssertionError(f"the run did not end within {timeout_s:.0f} s (deadlock?)")
        if self.error is not None:
            raise self.error
        return self.value


def run_in_background(algo: str, env: str, overrides: dict[str, Any]) -> tuple[Any, Background]:
    """``train`` on the connected cluster in a thread; returns (the live RunConfig, the thread)."""
    from tandem.cluster.group import RayBackend
    from tandem.runner.session import resolve_config
    from tandem.runner.train import train

    run, cfg, spec = resolve_config(algo, env, overrides)
    bg = Background(lambda: train(run, cfg, spec, quiet=True, backend=RayBackend()))
    _LIVE.append((run, bg))
    return run, bg


_LIVE: list[tuple[Any, Background]] = []
"""Runs started by ``run_in_background``; the fixture ends any a failed test left going."""


def _end_live_runs() -> None:
    """A run still going when its test failed must end before Ray shuts down under it: a thread
    left in a Ray call then can take the whole pytest process down with it."""
    while _LIVE:
        run, bg = _LIVE.pop()
        if bg.thread.is_alive():
            run.total_steps = 0
            bg.thread.join(60)


ENVS = 2
"""Envs per worker of the harness's runs."""
FRAGMENT = 32
"""Fragment length of the harness's runs."""


def ppo_overrides(run_dir: Path, workers: int | str, learner_node: bool = True) -> dict[str, Any]:
    """A small CartPole PPO run with a budget it never reaches (a test ends it with
    :func:`finish_soon`); ``workers`` is a count or ``MIN:MAX``. The learner is an actor on the
    :func:`elastic_cluster`'s learner node, or (``learner_node=False``) in this process."""
    actor = dict(learner="actor", learner_resources={"learner": 1})
    learner = actor if learner_node else {"learner": "local"}
    return dict(
        workers=workers,
        envs_per_worker=ENVS,
        total_steps=10_000_000,
        run_dir=str(run_dir),
        fragment_length=FRAGMENT,
        hidden=[16, 16],
        epochs=1,
        checkpoint_every=1000,
        **learner,
    )


def finish_soon(run: Any, run_dir: Path, extra_steps: int) -> None:
    """End the run normally: a budget just above where it is now (the driver reads it each loop)."""
    data = rows(run_dir)
    run.total_steps = (data[-1]["env_steps"] if data else 0) + extra_steps


@dataclass
class FakeAutoscalingCluster:
    address: str
    """GCS address of the head (127.0.0.1:PORT)."""
    proc: Any
    """The ``ray start --head --block`` process; its process group holds every node it started."""


@pytest.fixture
def autoscaling_cluster() -> Iterator[Callable[..., FakeAutoscalingCluster]]:
    """``make(max_nodes, min_nodes)``: Ray's real autoscaler (v1) with its fake multi-node provider,
    on loopback: a 0-CPU head and up to ``max_nodes`` 1-CPU nodes, which the autoscaler launches
    as local raylets when there is demand (pending placement groups, ``request_resources``).

    ``ray.cluster_utils.AutoscalingCluster`` cannot be used on a shared machine: its start and
    shutdown run ``ray stop --force``, which kills every Ray on the machine. This starts the same
    head (``RAY_FAKE_CLUSTER=1 ray start --head --autoscaling-config``) with ``--block`` in a new
    session, on its own port and temp dir, and ends exactly that process group.
    """
    import os
    import signal
    import subprocess
    import sys

    import ray

    from tests.multinode.conftest import driver_env, free_port

    tmp = Path(tempfile.mkdtemp(prefix="tandem-as-", dir="/tmp"))
    started: list[FakeAutoscalingCluster] = []

    def make(max_nodes: int, min_nodes: int = 0) -> FakeAutoscalingCluster:
        port = free_port()
        address = f"127.0.0.1:{port}"
        config = {
            "cluster_name": f"tandem-fake-{port}",
            "max_workers": max_nodes,
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": 10,
            "provider": {
                "type": "fake_multinode",
                "gcs_address": address,
                "disable_launch_config_check": True,
                # The fake provider's nodes are started up to date; it cannot run updaters.
                "disable_node_updaters": True,
            },
            "auth": {"ssh_user": "nobody"},
            "available_node_types": {
                "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
                "cpu1": {
                    "resources": {"CPU": 1},
                    "node_config": {},
                    "min_workers": min_nodes,
                    "max_workers": max_nodes,
                },
            },
            "head_node_type": "ray.head.default",
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }
        cfg_file = tmp / f"autoscaling-{port}.json"
        cfg_file.write_text(json.dumps(config))
        # `ray start` turns token authentication on by default; the fixture's nodes and this
        # process would need the token, and nothing here leaves loopback.
        env = driver_env(AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_FAKE_CLUSTER="1", RAY_AUTH_MODE="disabled")
        ray_bin = str(Path(sys.executable).with_name("ray"))
        proc = subprocess.Popen(
            [
                ray_bin,
                "start",
                "--head",
                "--block",
                f"--port={port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=0",
                f"--temp-dir={tmp}",
                "--include-dashboard=false",
                # Ports of their own: other Rays on this machine hold the defaults (10001, 8265, ...).
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}",
                "--disable-usage-stats",
                f"--autoscaling-config={cfg_file}",
                f"--system-config={json.dumps(FAST_HEALTH, separators=(',', ':'))}",
            ],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ac = FakeAutoscalingCluster(address, proc)
        started.append(ac)
        deadline = time.monotonic() + 90
        while True:
            try:
                ray.init(address=address, log_to_driver=False)
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(1)
        return ac

    import ray._private.ray_constants as ray_constants

    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield make
    finally:
        _end_live_runs()
        if ray.is_initialized():
            ray.shutdown()
        for ac in started:
            # SIGTERM to the group: `ray start --block` then stops the head's processes; the
            # nodes the autoscaler started are in the same group and get the same signal.
            for sig, wait_s in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
                try:
                    os.killpg(ac.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    ac.proc.wait(wait_s)
                except subprocess.TimeoutExpired:
                    continue
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        shutil.rmtree(tmp, ignore_errors=True)


def wait_until(pred: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(1)
