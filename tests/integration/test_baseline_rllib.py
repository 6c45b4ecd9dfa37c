"""RLlib reference runs: a tiny real PPO CartPole run writes a valid Tandem run directory."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from benchmarks.rllib_baseline import BaselineError, _RowMaker, run_rllib, tuned_hyperparameters
from tandem.core.metrics import METRIC_FIELDS
from tandem.dashboard.data import RunStore


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_tiny_rllib_ppo_run_writes_tandem_run_dir(tmp_path):
    import ray

    if ray.is_initialized():
        ray.shutdown()  # a test that cannot fail by skipping: start from a clean slate
    run_dir = run_rllib(
        "ppo",
        "CartPole-v1",
        total_steps=1000,
        seed=3,
        run_dir=tmp_path / "runs" / "ppo-CartPole-v1-rllib",
        workers=1,
        # A 500-step batch keeps the test short; the rest is the tuned example.
        config_overrides={"train_batch_size_per_learner": 500, "minibatch_size": 125},
    )
    assert not ray.is_initialized(), "run_rllib must shut down the Ray it started"

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2  # 2 iterations of 500 env steps
    for row in rows:
        assert set(METRIC_FIELDS) <= set(row), set(METRIC_FIELDS) - set(row)
        assert all(isinstance(row[f], (int, float)) for f in METRIC_FIELDS if f != "episode_returns")
    assert [r["env_steps"] for r in rows] == [500, 1000]
    # Every finished episode is listed, once: the lists add up to the episode count.
    assert sum(len(r["episode_returns"]) for r in rows) == rows[-1]["episodes"] > 0
    for r in rows:
        assert r["episode_return_mean"] == pytest.approx(
            sum(r["episode_returns"]) / len(r["episode_returns"])
        )
        assert all(8 <= x <= 500 for x in r["episode_returns"])  # CartPole returns = lengths
    assert rows[0]["wall_time_s"] < rows[1]["wall_time_s"]
    last = rows[-1]
    # PPO reuses each sample about num_epochs (6) times.
    assert 5 <= last["replay_ratio"] <= 8
    assert last["replay_ratio"] == pytest.approx(last["samples_trained"] / last["env_steps"])
    assert last["grad_updates"] > 0 and last["workers"] == 1

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["framework"] == "rllib" and cfg["algo"] == "ppo" and cfg["env_id"] == "CartPole-v1"
    assert cfg["seed"] == 3 and cfg["algo_config"]["training"]["num_epochs"] == 6
    assert cfg["algo_config"]["training"]["train_batch_size_per_learner"] == 500
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "finished" and status["error"] is None

    # The dashboard reads it like a Tandem run.
    store = RunStore([tmp_path / "runs"])
    store.refresh()
    (summary,) = store.runs_json()["runs"]
    assert summary["framework"] == "rllib" and summary["status"] == "finished"
    assert summary["issues"] == [] and summary["rows"] == 2
    assert summary["reuse"]["kind"] == "derived"


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_rllib_run_stops_at_its_wall_time_cap(tmp_path):
    """The benchmark caps RLlib's seeds at a multiple of Tandem's time: the cap must hold."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    run_dir = run_rllib(
        "ppo",
        "CartPole-v1",
        total_steps=100_000,
        seed=0,
        run_dir=tmp_path / "run",
        config_overrides={"train_batch_size_per_learner": 500, "minibatch_size": 125},
        max_wall_s=0.001,
    )
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["env_steps"] for r in rows] == [500], "one iteration, then the cap stops the run"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["max_wall_s"] == 0.001
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"


def _result(steps: float, returns, trained: float, seq=(3, 2)) -> dict:
    return {
        "env_runners": {
            "num_env_steps_sampled_lifetime": steps,
            "num_episodes_lifetime": 7,
            "tandem_episode_returns": returns,
            "episode_return_mean": 12.0,
            "weights_seq_no": seq[1],
        },
        "learners": {
            "__all_modules__": {"num_module_steps_trained_lifetime": trained},
            "default_policy": {
                "num_module_steps_trained": 320,
                "module_train_batch_size_mean": 32,
                "weights_seq_no": seq[0],
                "qf_loss": 0.5,
            },
        },
        "training_iteration": 1,
    }


def test_row_maker_fields_and_stop_rule():
    rows = _RowMaker(workers=2, t_start=0.0)
    # RLlib reduces a single logged episode to a bare number, and none to NaN.
    r1 = rows.row(_result(1000, 15.0, 3200))
    assert r1["episode_returns"] == [15.0] and r1["episode_return_mean"] == 15.0
    r2 = rows.row(_result(2000, math.nan, 6400))
    assert r2["episode_returns"] == [] and r2["episode_return_mean"] is None
    assert r2["grad_updates"] == 20 and r2["samples_trained"] == 6400 and r2["replay_ratio"] == 3.2
    assert r2["policy_lag"] == 1 and r2["loss/qf_loss"] == 0.5
    assert not rows.reached(100.0)
    rows.row(_result(3000, [200.0] * 18, 9600))
    assert not rows.reached(100.0), "needs 20 episodes"
    rows.row(_result(4000, [200.0], 12800))
    assert rows.reached(100.0) and not rows.reached(250.0)
    assert not rows.reached(None)

    short = _RowMaker(workers=2, t_start=0.0, window=2)
    short.row(_result(1000, [0.0, 300.0], 3200))
    assert short.reached(150.0)
    short.row(_result(2000, [100.0], 6400))
    assert short.recent == [300.0, 100.0] and short.reached(200.0) and not short.reached(201.0)


def test_tuned_hyperparameters_and_overrides():
    hp = tuned_hyperparameters("dqn", "CartPole-v1", {"lr": 1e-3, "model": {"fcnet_hiddens": [64]}})
    assert hp["training"]["dueling"] and hp["training"]["double_q"] and hp["training"]["n_step"] == (2, 5)
    assert hp["training"]["replay_buffer_config"]["type"] == "PrioritizedEpisodeReplayBuffer"
    assert hp["training"]["lr"] == 1e-3 and hp["model"]["fcnet_hiddens"] == [64]
    assert tuned_hyperparameters("sac", "HalfCheetah-v5")["training"]["n_step"] == 1
    assert tuned_hyperparameters("sac", "Pendulum-v1")["training"]["n_step"] == (2, 5)
    with pytest.raises(BaselineError, match="unknown RLlib baseline algo 'a3c'"):
        tuned_hyperparameters("a3c", "CartPole-v1")


def test_unknown_env_is_a_one_line_error_before_ray_starts(tmp_path):
    with pytest.raises(BaselineError, match="unknown gymnasium env 'Nope-v0'"):
        run_rllib("ppo", "Nope-v0", 100, 0, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_strong_ppo_preset_replaces_the_tuned_example():
    hp = tuned_hyperparameters("ppo", "CartPole-v1", preset="strong")
    assert hp["training"]["num_epochs"] == 10 and hp["training"]["minibatch_size"] == 128
    assert hp["model"] == {}  # RLlib's default nets, not the example's linear 32 units
    assert tuned_hyperparameters("dqn", "CartPole-v1", preset="strong") == tuned_hyperparameters(
        "dqn", "CartPole-v1"
    )
    with pytest.raises(BaselineError, match="unknown preset 'huge'"):
        tuned_hyperparameters("ppo", "CartPole-v1", preset="huge")


def test_module_cli_reports_a_bad_env_in_one_line(capsys):
    from benchmarks.rllib_baseline import main

    assert main(["--algo", "ppo", "--env", "Nope-v0", "--total-steps", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rllib_baseline: error: unknown gymnasium env 'Nope-v0'") and "\n" not in err
