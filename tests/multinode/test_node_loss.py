"""Node loss: a worker node dies mid-run, on-policy and off-policy. The run goes on with the
workers left, replaces the lost one when a node comes back, never deadlocks, and its metrics'
``workers`` column shows the drop and the recovery. Off-policy, every transition a worker
reported as written (acknowledged by Redis) is in the replay once."""

from __future__ import annotations

import pytest

from tests.faults.summary import record
from tests.multinode import elastic_harness
from tests.multinode.elastic_harness import (
    ENVS,
    FRAGMENT,
    finish_soon,
    ppo_overrides,
    rows,
    run_in_background,
    wait_rows,
)

elastic_cluster = elastic_harness.elastic_cluster  # the fixture, used by name below

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(420)]

WORKERS = 3


def lose_a_node_and_bring_one_back(ec, run, run_dir) -> tuple[int, int, int]:
    """3 workers -> remove a node -> 2 workers (still collecting) -> add a node -> 3 again.
    Returns the row indices where each phase was first seen."""
    full = wait_rows(run_dir, lambda r: r["workers"] == WORKERS, "all 3 workers", 180)
    ec.remove_node(ec.workers[0])
    down = wait_rows(run_dir, lambda r: r["workers"] == WORKERS - 1, "the drop to 2 workers", 90, full + 1)
    steps_down = rows(run_dir)[down]["env_steps"]
    # The run goes on while degraded: more env steps with 2 workers.
    wait_rows(
        run_dir,
        lambda r: r["workers"] == WORKERS - 1 and r["env_steps"] > steps_down,
        "progress with 2 workers",
        90,
        down + 1,
    )
    ec.add_node()
    back = wait_rows(run_dir, lambda r: r["workers"] == WORKERS, "the recovery to 3 workers", 120, down + 1)
    return full, down, back


def test_on_policy_run_survives_a_node_loss_and_keeps_its_batch_size(elastic_cluster, tmp_path):
    ec = elastic_cluster(WORKERS)
    run_dir = tmp_path / "ppo"
    run, bg = run_in_background("ppo", "CartPole-v1", ppo_overrides(run_dir, WORKERS))
    full, down, back = lose_a_node_and_bring_one_back(ec, run, run_dir)
    finish_soon(run, run_dir, 2 * WORKERS * ENVS * FRAGMENT)
    bg.join(180)
    data = rows(run_dir)
    workers = [r["workers"] for r in data]
    assert workers[full] == 3 and workers[down] == 2 and workers[back] == 3 and full < down < back
    # Every batch had the nominal size, whatever the worker count: 3 fragments of 2 x 32 steps.
    batch = WORKERS * ENVS * FRAGMENT
    deltas = [b["env_steps"] - a["env_steps"] for a, b in zip(data, data[1:], strict=False)]
    assert data[0]["env_steps"] == batch and set(deltas) == {batch}, deltas
    assert data[-1]["worker_restarts"] >= 1
    record(
        "node_loss_on_policy",
        faults_injected=1,
        transitions_written=data[-1]["env_steps"],
        counted=batch * len(data),
        lost=0,
        duplicated=0,
        outcome=f"finished; workers 3->2->3 at rows {full},{down},{back}; every batch {batch} steps",
    )


def test_off_policy_run_survives_a_node_loss_without_losing_acknowledged_transitions(
    elastic_cluster, make_redis, tmp_path
):
    import redis

    server = make_redis(password="nl-" + tmp_path.name[-8:])
    ec = elastic_cluster(WORKERS)
    run_dir = tmp_path / "dqn"
    run, bg = run_in_background(
        "dqn",
        "CartPole-v1",
        dict(
            workers=WORKERS,
            envs_per_worker=ENVS,
            total_steps=10_000_000,
            run_dir=str(run_dir),
            replay=server.url,
            replay_capacity=1_000_000,  # nothing evicted: what the replay holds is all ever written
            fragment_length=FRAGMENT,
            min_size=200,
            samples_per_insert=2,
            batch_size=32,
            hidden=[16],
            report_interval_s=1.0,
            checkpoint_every=1000,
            learner="actor",  # on the harness's learner node, which is never removed
            learner_resources={"learner": 1},
        ),
    )
    full, down, back = lose_a_node_and_bring_one_back(ec, run, run_dir)
    finish_soon(run, run_dir, 2000)
    bg.join(180)
    last = rows(run_dir)[-1]
    client = redis.Redis.from_url(server.url)
    held = int(client.hget(f"tandem:{run_dir.name}:meta", "cursor"))
    acked, calls_lost = last["transitions_acked"], last["calls_lost"]
    chunk = ENVS * FRAGMENT
    lost = max(0, acked - held)
    # A call lost with its node may have written its fragment before dying, unacknowledged:
    # at most one fragment per lost call may be in the replay beyond the acknowledged ones.
    unacked_allowance = calls_lost * chunk
    duplicated = max(0, held - acked - unacked_allowance)
    record(
        "node_loss_off_policy",
        faults_injected=1,
        transitions_written=acked,
        counted=held,
        lost=lost,
        duplicated=duplicated,
        outcome=f"finished; workers 3->2->3; {calls_lost} calls lost in flight; replay holds {held}",
    )
    assert acked > 0 and last["env_steps"] >= acked // 2
    assert lost == 0, f"{acked} acknowledged transitions, but the replay holds only {held}"
    assert duplicated == 0, f"the replay holds {held}, acknowledged {acked}, lost calls {calls_lost}"
    assert calls_lost >= 1 and last["worker_restarts"] >= 1
