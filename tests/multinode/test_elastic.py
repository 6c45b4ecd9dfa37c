"""An elastic worker count (``--workers MIN:MAX``): a run starts with what fits, grows when a node
joins or when the real autoscaler adds one after Tandem's ``request_resources``, shrinks when a
node goes, and follows ``tandem scale RUN_DIR --workers N`` from another process; its on-policy
batches keep their size throughout."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from tests.multinode import elastic_harness
from tests.multinode.conftest import ROOT, driver_env
from tests.multinode.elastic_harness import (
    ENVS,
    FRAGMENT,
    finish_soon,
    ppo_overrides,
    rows,
    run_in_background,
    wait_rows,
)

elastic_cluster = elastic_harness.elastic_cluster  # fixtures, used by name below
autoscaling_cluster = elastic_harness.autoscaling_cluster

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(420)]


def tandem_scale(run_dir, workers: int) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "scale", str(run_dir), "--workers", str(workers)],
        capture_output=True,
        text=True,
        env=driver_env(),
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_grows_when_a_node_joins_shrinks_when_one_goes_and_follows_tandem_scale(elastic_cluster, tmp_path):
    ec = elastic_cluster(2)
    run_dir = tmp_path / "ppo"
    run, bg = run_in_background("ppo", "CartPole-v1", ppo_overrides(run_dir, "1:3"))
    # 2 CPUs: starts with the 2 workers that fit, not MIN (1) and not MAX (3).
    first = wait_rows(run_dir, lambda r: True, "a first row", 180)
    assert rows(run_dir)[first]["workers"] == 2
    ec.add_node()
    grown = wait_rows(run_dir, lambda r: r["workers"] == 3, "growth to 3 on a new node", 120, first)
    ec.remove_node(ec.workers[0])
    shrunk = wait_rows(run_dir, lambda r: r["workers"] == 2, "the shrink to 2", 90, grown + 1)
    assert "for 1 workers" in tandem_scale(run_dir, 1)
    scaled = wait_rows(run_dir, lambda r: r["workers"] == 1, "tandem scale --workers 1", 90, shrunk + 1)
    finish_soon(run, run_dir, 3 * ENVS * FRAGMENT)
    bg.join(180)
    data = rows(run_dir)
    assert [data[k]["workers"] for k in (first, grown, shrunk, scaled)] == [2, 3, 2, 1]
    assert max(r["workers"] for r in data[scaled:]) == 1, "the target of 1 held to the end"
    # The batch is MAX (3) fragments every iteration, with 1, 2 or 3 workers alive.
    batch = 3 * ENVS * FRAGMENT
    steps = [r["env_steps"] for r in data]
    assert steps[0] == batch and {b - a for a, b in zip(steps, steps[1:], strict=False)} == {batch}
    assert (run_dir / "control.json").is_file()


def test_tandem_scale_on_a_run_that_is_not_live_is_a_one_line_error(tmp_path):
    (tmp_path / "status.json").write_text('{"status": "finished"}')
    (tmp_path / "control.json").write_text('{"address": "127.0.0.1:1", "key": "k"}')
    p = subprocess.run(
        [sys.executable, "-m", "tandem.cli", "scale", str(tmp_path), "--workers", "2"],
        capture_output=True,
        text=True,
        env=driver_env(),
        timeout=60,
        cwd=ROOT,
    )
    assert p.returncode == 2 and "not running" in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(
    os.environ.get("TANDEM_AUTOSCALER_TEST") != "1",
    reason="opt-in (TANDEM_AUTOSCALER_TEST=1): passes alone and with tests/multinode, but in 2 of 3 "
    "full-suite runs the nodes of Ray's fake multi-node provider died or stayed uninitialized "
    "('no active nodes', cpu1 pending) before the run could start; growth on a joining node is "
    "tested above",
)
def test_grows_through_the_autoscaler_after_request_resources(autoscaling_cluster, tmp_path, caplog):
    import ray

    autoscaling_cluster(max_nodes=2, min_nodes=1)
    wait_for = lambda: ray.cluster_resources().get("CPU", 0) >= 1  # noqa: E731
    elastic_harness.wait_until(wait_for, "the autoscaler's first node", 120)
    # The node is registered before it can start worker processes: wait until it runs a task,
    # so that the run below is timed from a usable node (in the full suite this took minutes once).
    ray.get(ray.remote(num_cpus=1)(lambda: 1).remote(), timeout=240)
    run_dir = tmp_path / "ppo-as"
    with caplog.at_level(logging.WARNING, logger="tandem"):
        run, bg = run_in_background("ppo", "CartPole-v1", ppo_overrides(run_dir, "1:2", learner_node=False))
        # 300 s: in the full suite a first row took over 180 s once (the stack is in the message)
        first = wait_rows(run_dir, lambda r: True, "a first row", 300)
        assert rows(run_dir)[first]["workers"] == 1, "1 CPU at start: 1 worker"
        grown = wait_rows(run_dir, lambda r: r["workers"] == 2, "growth to 2 via the autoscaler", 180, first)
        finish_soon(run, run_dir, 2 * ENVS * FRAGMENT)
        bg.join(180)
    assert any("request_resources" in m for m in caplog.messages), caplog.messages
    assert ray.cluster_resources().get("CPU", 0) >= 2, "the autoscaler added a node"
    data = rows(run_dir)
    assert data[grown]["workers"] == 2 and data[-1]["workers"] == 2
