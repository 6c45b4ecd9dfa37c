"""The tandem CLI end to end on tiny budgets: train, metrics schema, resume, eval, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tandem.core.metrics import METRIC_FIELDS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def tandem(*args, check=True, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run(
        [sys.executable, "-m", "tandem.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"tandem {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "ppo"
    tandem(
        "train",
        "--algo",
        "ppo",
        "--env",
        "CartPole-v1",
        "--workers",
        "2",
        "--envs-per-worker",
        "2",
        "--total-steps",
        "1024",
        "--seed",
        "1",
        "--num-cpus",
        "2",
        "--run-dir",
        str(run_dir),
        "--set",
        "epochs=4",
        "--set",
        "checkpoint_every=4",
        "--quiet",
    )
    return run_dir


def test_train_writes_the_whole_run_directory(ppo_run):
    cfg = yaml.safe_load((ppo_run / "config.yaml").read_text())
    assert cfg["algo"] == "ppo" and cfg["algo_config"]["epochs"] == 4 and cfg["workers"] == 2
    data = rows(ppo_run)
    assert data and all(set(METRIC_FIELDS) <= set(r) for r in data)
    last = data[-1]
    assert last["env_steps"] >= 1024 and last["workers"] == 2
    # PPO's data reuse is exactly its epoch count
    assert last["samples_trained"] == 4 * last["env_steps"]
    assert last["replay_ratio"] == pytest.approx(4.0)
    assert any(r["episode_returns"] for r in data)
    assert list((ppo_run / "checkpoints").glob("ckpt_*.pt"))
    assert list((ppo_run / "tb").glob("events.out.tfevents.*"))
    assert json.loads((ppo_run / "status.json").read_text())["status"] == "finished"


def test_resume_continues_the_counters(ppo_run):
    before = rows(ppo_run)[-1]
    tandem("train", "--resume", str(ppo_run), "--total-steps", "2048", "--num-cpus", "2", "--quiet")
    after = rows(ppo_run)
    assert after[-1]["env_steps"] >= 2048
    resumed = [r for r in after if r["env_steps"] > before["env_steps"]]
    per_iteration = (
        2 * 2 * yaml.safe_load((ppo_run / "config.yaml").read_text())["algo_config"]["fragment_length"]
    )
    assert resumed[0]["env_steps"] == before["env_steps"] + per_iteration  # workers x envs x fragment
    assert resumed[0]["grad_updates"] > before["grad_updates"]
    assert resumed[0]["wall_time_s"] >= before["wall_time_s"]
    assert resumed[-1]["samples_trained"] == 4 * resumed[-1]["env_steps"]


def test_eval_runs_the_checkpoint_and_records_video(ppo_run):
    p = tandem("eval", str(ppo_run), "--episodes", "2", "--video")
    assert "2 episodes: mean return" in p.stdout
    assert len(list((ppo_run / "videos").glob("*.mp4"))) == 2


def test_pg_uses_each_sample_once(tmp_path):
    run_dir = tmp_path / "pg"
    tandem(
        "train",
        "--algo",
        "pg",
        "--env",
        "CartPole-v1",
        "--workers",
        "1",
        "--envs-per-worker",
        "2",
        "--total-steps",
        "600",
        "--num-cpus",
        "2",
        "--run-dir",
        str(run_dir),
        "--set",
        "fragment_length=100",
        "--quiet",
    )
    last = rows(run_dir)[-1]
    assert last["samples_trained"] == last["env_steps"] == 600
    assert last["replay_ratio"] == 1.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--algo", "ppo", "--env", "CartPol-v1"], "unknown env id 'CartPol-v1': did you mean CartPole-v1"),
        (["--algo", "dqn", "--env", "Pendulum-v1"], "needs a Discrete action space"),
        (["--algo", "ppo", "--env", "CartPole-v1", "--set", "lrr=1"], "unknown --set key 'lrr'"),
        (
            ["--algo", "ppo", "--env", "CartPole-v1", "--address", "127.0.0.1:1"],
            "cannot reach the Ray cluster",
        ),
        (["--resume", "/nonexistent/run"], "is not a Tandem run directory"),
        (["--algo", "ppo", "--env", "CartPole-v1", "--set", "gamma=5"], "gamma=5.0: must be in [0, 1]"),
        (["--algo", "ppo", "--env", "CartPole-v1", "--stop-return", "nan"], "must be a finite number"),
        (["--algo", "dqn", "--env", "CartPole-v1", "--replay", "foo"], "replay='foo': expected memory"),
        (["--algo", "ppo", "--env", "no_such_pkg_xyz:Foo-v0"], "cannot import module 'no_such_pkg_xyz'"),
    ],
)
def test_user_mistakes_get_one_line_errors(args, message):
    p = tandem("train", *args, "--total-steps", "100", check=False, timeout=120)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr
    assert len([ln for ln in p.stderr.splitlines() if ln.startswith("tandem: error")]) == 1


def test_corrupt_checkpoint_is_skipped_for_the_previous_one(ppo_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ppo_run, copy)
    ckpts = sorted((copy / "checkpoints").glob("ckpt_*.pt"))
    ckpts[-1].write_bytes(b"not a checkpoint")
    if len(ckpts) == 1:
        p = tandem("eval", str(copy), "--episodes", "1", check=False)
        assert p.returncode == 2 and "corrupt" in p.stderr and "Traceback" not in p.stderr
    else:
        p = tandem("eval", str(copy), "--episodes", "1")
        assert "skipped corrupt checkpoint" in p.stderr


def test_off_policy_resume_finds_its_replay_buffer_again(tmp_path):
    run_dir = tmp_path / "q"
    common = ["--num-cpus", "2", "--quiet"]
    tandem(
        "train",
        "--algo",
        "qlearn",
        "--env",
        "FrozenLake-v1",
        "--set",
        "env_kwargs={is_slippery: false}",
        "--total-steps",
        "2000",
        "--run-dir",
        str(run_dir),
        *common,
    )
    first = rows(run_dir)[-1]
    assert (run_dir / "redis").is_dir()  # the managed Redis keeps its AOF in the run directory
    tandem("train", "--resume", str(run_dir), "--total-steps", "4000", *common)
    resumed = rows(run_dir)[-1]
    assert resumed["grad_updates"] > first["grad_updates"]
    # the buffer holds the first run's transitions plus the new ones, not only the new ones
    assert resumed["replay/inserted"] > resumed["env_steps"] - first["env_steps"] + 0.9 * first["env_steps"]


@pytest.mark.parametrize(
    "algo, env, sets",
    [
        ("dqn", "CartPole-v1", ["batch_size=32", "hidden=[32]"]),
        ("sac", "Pendulum-v1", ["batch_size=32", "hidden=[32]"]),
        ("td3", "Pendulum-v1", ["batch_size=32", "hidden=[32]"]),
        # Hopper terminates when it falls, HalfCheetah only truncates: both bootstrap paths.
        ("sac", "Hopper-v5", ["batch_size=32", "hidden=[32]"]),
        ("td3", "HalfCheetah-v5", ["batch_size=32", "hidden=[32]"]),
        ("qlearn", "Taxi-v3", []),
        ("qlearn", "CliffWalking-v1", ["exploration=count_sqrt"]),
        ("qeval", "FrozenLake-v1", []),
    ],
)
def test_each_off_policy_algorithm_trains_through_the_cli(tmp_path, algo, env, sets):
    """A short run per algorithm on the default managed Redis: rows, updates, reuse, checkpoint."""
    run_dir = tmp_path / "run"
    extra = [x for s in ["min_size=200", "samples_per_insert=16", *sets] for x in ("--set", s)]
    tandem(
        "train",
        "--algo",
        algo,
        "--env",
        env,
        "--workers",
        "2",
        "--total-steps",
        "1200",
        "--num-cpus",
        "2",
        "--run-dir",
        str(run_dir),
        "--quiet",
        *extra,
    )
    last = rows(run_dir)[-1]
    assert last["env_steps"] >= 1200 and last["grad_updates"] > 0
    assert set(METRIC_FIELDS) <= set(last)
    assert last["replay_ratio"] > 1.0, "off-policy learners sample each transition more than once"
    assert last["replay_size"] >= 1000
    assert sorted((run_dir / "checkpoints").glob("ckpt_*.pt"))
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"


def test_backend_local_trains_in_process_with_a_managed_redis(tmp_path):
    """--backend local: the workers run in the CLI's own process (no Ray) and still write to
    the managed Redis themselves; --resume keeps the backend from config.yaml."""
    run_dir = tmp_path / "local"
    common = ["--quiet", "--set", "min_size=200", "--set", "samples_per_insert=8"]
    tandem(
        "train",
        "--algo",
        "qlearn",
        "--env",
        "FrozenLake-v1",
        "--backend",
        "local",
        "--workers",
        "2",
        "--total-steps",
        "800",
        "--run-dir",
        str(run_dir),
        *common,
    )
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["backend"] == "local"
    first = rows(run_dir)[-1]
    assert first["env_steps"] >= 800 and first["grad_updates"] > 0 and first["workers"] == 2
    assert first["replay_size"] >= 800, "the in-process workers wrote to the managed Redis"
    tandem("train", "--resume", str(run_dir), "--total-steps", "1600", "--quiet")
    last = rows(run_dir)[-1]
    assert last["env_steps"] >= 1600 and last["grad_updates"] > first["grad_updates"]


def test_a_users_own_env_trains_by_module_colon_id(tmp_path):
    """--env MODULE:ID imports MODULE (it registers the env) in the CLI and in each worker."""
    run_dir = tmp_path / "plugin"
    tandem(
        "train",
        "--algo",
        "ppo",
        "--env",
        "tests.plugin_env:TandemPlugin-v0",
        "--workers",
        "2",
        "--envs-per-worker",
        "1",
        "--total-steps",
        "256",
        "--num-cpus",
        "2",
        "--run-dir",
        str(run_dir),
        "--set",
        "fragment_length=64",
        "--quiet",
    )
    last = rows(run_dir)[-1]
    assert last["env_steps"] >= 256 and last["episodes"] >= 20  # 10-step episodes
    assert (
        yaml.safe_load((run_dir / "config.yaml").read_text())["env_id"] == "tests.plugin_env:TandemPlugin-v0"
    )
