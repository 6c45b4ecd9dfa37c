"""Short learning checks of the real off-policy driver, run in-process (``--backend local``).

No Ray, no Redis: ``train`` runs ``runner.off_policy.train_off_policy`` with the in-process
worker group and the in-memory replay, so these are the driver, rate limiter, worker, replay
and learner a cluster run uses, and each algorithm's defaults are checked to learn at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tandem.runner.evaluate import evaluate
from tandem.runner.local import LocalBackend
from tandem.runner.session import resolve_config
from tandem.runner.train import train


def run_local(tmp_path: Path, algo: str, env_id: str, total_steps: int, **overrides) -> list[dict]:
    """Train ``algo`` on ``env_id`` in this process; returns the metrics rows."""
    settings = {
        "total_steps": total_steps,
        "workers": 1,
        "envs_per_worker": 4,
        "replay": "memory",
        "run_dir": str(tmp_path / algo),
        "report_interval_s": 0.5,
        **overrides,
    }
    run, cfg, spec = resolve_config(algo, env_id, settings)
    out = train(run, cfg, spec, quiet=True, backend=LocalBackend())
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def last_returns(rows: list[dict], n: int) -> list[float]:
    returns = [r for row in rows for r in row["episode_returns"]]
    assert len(returns) >= n, f"only {len(returns)} episodes finished"
    return returns[-n:]


def test_qlearn_solves_frozenlake_not_slippery(tmp_path):
    rows = run_local(
        tmp_path,
        "qlearn",
        "FrozenLake-v1",
        20_000,
        env_kwargs={"is_slippery": False},
        samples_per_insert=16,
    )
    assert np.mean(last_returns(rows, 50)) > 0.8
    last = rows[-1]
    assert last["env_steps"] >= 20_000 and last["grad_updates"] > 0
    # The rate limiter holds the replay ratio the config asks for (samples_per_insert after min_size).
    assert last["replay_ratio"] == pytest.approx(16, rel=0.2)
    greedy = evaluate(tmp_path / "qlearn", episodes=5)
    assert greedy["return_mean"] == 1.0


@pytest.mark.timeout(180)
def test_dqn_cartpole_beats_random(tmp_path):
    """Random CartPole returns ~22. A smaller, faster-moving net than the defaults (1900 updates
    instead of 11000, so the test takes ~30 s on a loaded machine) reached 154 and 169 (seeds 1, 2)."""
    rows = run_local(
        tmp_path,
        "dqn",
        "CartPole-v1",
        8_000,
        seed=1,
        hidden=[64, 64],
        lr=1e-3,
        target_update_interval=100,
        min_size=500,
        samples_per_insert=16,
    )
    assert np.mean(last_returns(rows, 20)) > 100, last_returns(rows, 20)


slow = pytest.mark.skipif(
    not os.environ.get("TANDEM_SLOW_TESTS"), reason="minutes of CPU: set TANDEM_SLOW_TESTS=1"
)


@slow
def test_qlearn_frozenlake_slippery_near_optimal(tmp_path):
    """The benchmark task: success rate 0.74 is optimal with the 100-step limit."""
    rows = run_local(tmp_path, "qlearn", "FrozenLake-v1", 200_000)
    assert np.mean(last_returns(rows, 1000)) > 0.7
    assert evaluate(tmp_path / "qlearn", episodes=1000)["return_mean"] > 0.7


@slow
def test_sac_pendulum_learns(tmp_path):
    rows = run_local(tmp_path, "sac", "Pendulum-v1", 12_000, envs_per_worker=2)
    assert np.mean(last_returns(rows, 10)) > -300, last_returns(rows, 10)
