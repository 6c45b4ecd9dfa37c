"""PPO and DQN on a real 3-node loopback cluster: workers on several nodes, usual results.

Which node ran each worker comes from Ray's own actor table (state API), not from Tandem.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.multinode.conftest import run_tandem

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(300)]

# Random CartPole play averages about 22 per episode; a PPO run that learned anything at all is
# far above it after a few thousand steps.
RANDOM_CARTPOLE_RETURN = 22.0
PPO_MIN_RETURN = 2.5 * RANDOM_CARTPOLE_RETURN


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def sets(*pairs: str) -> list[str]:
    return [x for pair in pairs for x in ("--set", pair)]


def status(run_dir: Path) -> str:
    return json.loads((run_dir / "status.json").read_text())["status"]


def train_on(cluster, run_dir: Path, algo: str, *args: str) -> dict[str, str]:
    """Run ``tandem train --address`` against the cluster; return its workers' actor -> node ids."""
    before = cluster.actor_ids()
    run_tandem(
        "train",
        "--algo",
        algo,
        "--env",
        "CartPole-v1",
        "--workers",
        "3",
        "--address",
        cluster.address,
        "--run-dir",
        str(run_dir),
        "--quiet",
        *args,
    )
    return cluster.rollout_worker_nodes(before)


def test_ppo_spreads_its_workers_over_the_nodes_and_learns(ray_cluster, tmp_path):
    run_dir = tmp_path / "ppo"
    nodes = train_on(
        ray_cluster,
        run_dir,
        "ppo",
        "--envs-per-worker",
        "2",
        "--total-steps",
        "12000",
        "--seed",
        "3",
        "--set",
        "hidden=[32,32]",
    )
    assert len(nodes) == 3, f"expected the run's 3 rollout workers in Ray's actor table, got {nodes}"
    assert set(nodes.values()) <= ray_cluster.node_ids
    assert len(set(nodes.values())) >= 2, f"all workers ran on one node: {nodes}"
    data = rows(run_dir)
    assert status(run_dir) == "finished" and data[-1]["workers"] == 3
    assert data[-1]["env_steps"] >= 12000
    epochs = yaml.safe_load((run_dir / "config.yaml").read_text())["algo_config"]["epochs"]
    assert data[-1]["replay_ratio"] == pytest.approx(epochs), "PPO reuses each batch exactly `epochs` times"
    returns = [r for row in data[-3:] for r in row["episode_returns"]]
    assert returns and sum(returns) / len(returns) > PPO_MIN_RETURN, (
        f"PPO on CartPole should be clearly above random ({RANDOM_CARTPOLE_RETURN}): last returns {returns}"
    )


def test_dqn_spreads_its_workers_and_fills_a_shared_redis_replay(ray_cluster, make_redis, tmp_path):
    """Every node reaches one password-protected redis-server on 127.0.0.1 (all nodes are this
    machine); the run's replay and learning counters move."""
    server = make_redis(password="mn-" + tmp_path.name[-8:])
    url = server.url
    assert server.password in url and "127.0.0.1" in url
    run_dir = tmp_path / "dqn"
    nodes = train_on(
        ray_cluster,
        run_dir,
        "dqn",
        "--total-steps",
        "2400",
        "--replay",
        url,
        *sets("min_size=300", "samples_per_insert=8", "batch_size=32", "hidden=[32]"),
    )
    assert len(nodes) == 3 and len(set(nodes.values())) >= 2, f"workers' nodes: {nodes}"
    data = rows(run_dir)
    last = data[-1]
    assert status(run_dir) == "finished" and last["workers"] == 3
    assert last["env_steps"] >= 2400
    assert last["replay_size"] >= 2000, "the workers on every node write into the one replay"
    # A short run may write a single metrics row: the counters are checked against each other.
    assert last["grad_updates"] > 0 and last["samples_trained"] == 32 * last["grad_updates"]
    assert last["replay_ratio"] == pytest.approx(last["samples_trained"] / last["env_steps"])
    assert last["replay_ratio"] > 1.0, "DQN samples each transition more than once"
