"""Worker and learner faults (issue 13) on a real local Ray: an error raised inside a worker, a
worker killed mid-run, a restarted worker's seeds, a non-finite batch. One Ray for the module.
Each case writes a row with ``tests.faults.summary.record``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control import CartPoleEnv

from tandem.cluster.group import RayBackend, RayWorkerGroup
from tandem.core.errors import TandemError
from tandem.core.protocols import WorkerLost
from tandem.learners.finite import NonFiniteError
from tandem.replay import RedisReplay, ReplayError
from tandem.runner.local import LocalBackend
from tandem.runner.session import resolve_config
from tandem.runner.train import train
from tests.faults.summary import record

pytestmark = pytest.mark.integration


def worker_kwargs(algo: str = "ppo", replay=None, **cfg):
    run, algo_cfg, _ = resolve_config(algo, "CartPole-v1", cfg)
    return dict(env_id="CartPole-v1", num_envs=2, algo=algo, algo_config=algo_cfg, seed=5, replay=replay)


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def test_worker_error_reaches_the_driver_as_its_own_one_line(local_ray, make_redis, replay_name, tmp_path):
    server = make_redis()
    spec = {"url": server.url, "name": replay_name, "capacity": 4096, "reconnect_timeout_s": 1.0}
    group = RayWorkerGroup(1, **worker_kwargs("dqn", replay=spec))
    try:
        frag = group.result(group.submit(0, "collect", 8))
        assert frag.env_steps == 16
        server.stop(kill=True)  # a Redis outage longer than the writer's reconnect timeout
        with pytest.raises(ReplayError) as e:
            group.result(group.submit(0, "collect", 8))
        msg = str(e.value)
        assert "\n" not in msg and "\x1b" not in msg and "Traceback" not in msg
        assert group.restarts == 0  # an error is not a lost worker
        with pytest.raises(TandemError, match=r"^a rollout fragment needs at least 1 step per env"):
            group.call_all("sample", 0)
    finally:
        group.shutdown()
    # the whole run: the same one line in status.json, no ANSI codes, the run marked crashed
    run, algo_cfg, spec_ = resolve_config(
        "ppo", "CartPole-v1", {"workers": 1, "total_steps": 64, "run_dir": str(tmp_path / "frag0")}
    )
    algo_cfg.fragment_length = 0  # past the config checks: the worker itself refuses it
    with pytest.raises(TandemError) as e:
        train(run, algo_cfg, spec_, quiet=True, backend=RayBackend(num_cpus=2))
    st = status(tmp_path / "frag0")
    assert st["status"] == "crashed" and st["error"] == str(e.value)
    assert "\n" not in st["error"] and "\x1b" not in st["error"]
    record(
        "worker_error_one_line",
        faults="Redis killed under a worker (reconnect timeout 1 s); fragment_length=0 in a worker",
        written=16,
        counted=16,
        lost=0,
        duplicated=0,
        outcome=f"ReplayError '{msg[:60]}...'; status.json: '{st['error'][:60]}...'",
    )


def test_restarted_worker_does_not_replay_its_first_life(local_ray):
    import os

    import ray

    group = RayWorkerGroup(1, **worker_kwargs())
    try:
        first = group.call_all("sample", 16)[0]
        actor = group.slots[0].actor
        pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
        group.kill(0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # ray.kill returns before the process is gone
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                break
        # Ray may run this call on the rebuilt process (the death fell between calls: the worker
        # re-seeds itself) or fail it (the group re-seeds it through reincarnate). Either way the
        # first fragment of the new life must not be the old one's.
        try:
            second = group.result(group.submit(0, "sample", 16))
        except WorkerLost as e:
            group.park(0, e)
            deadline = time.monotonic() + 120
            while 0 not in group.alive and time.monotonic() < deadline:
                time.sleep(0.1)
            second = group.call_all("sample", 16)[0]
        assert ray.get(actor.__ray_call__.remote(lambda self: os.getpid())) != pid
    finally:
        group.shutdown()
    same = bool(np.array_equal(first.obs, second.obs))
    record(
        "worker_restart_seeds",
        faults="ray.kill of a rollout worker; Ray restarts it with its first arguments",
        written=2 * 32,
        counted=2 * 32,
        lost=0,
        duplicated=32 if same else 0,
        outcome="bit-identical episodes replayed" if same else "restarted worker explores new episodes",
    )
    assert not np.array_equal(first.obs[0], second.obs[0]), "the restarted worker reused its seeds"


class KillingBackend(RayBackend):
    """Ray's backend, plus a thread that kills worker 0 once the run's metrics show
    ``after_steps`` env steps: mid-run by progress, not by the clock (a fast run on an idle
    machine can finish before any fixed delay)."""

    def __init__(self, run_dir: Path, after_steps: int):
        super().__init__(num_cpus=2)
        self.run_dir, self.after_steps = run_dir, after_steps
        self.killed = threading.Event()

    def progress(self) -> int:
        try:
            lines = (self.run_dir / "metrics.jsonl").read_text().splitlines()
            return int(json.loads(lines[-1])["env_steps"]) if lines else 0
        except (OSError, ValueError, KeyError):
            return 0  # not written yet, or a line half written

    def make_group(self, num_workers, **kw):
        group = super().make_group(num_workers, **kw)

        def kill():
            while self.progress() < self.after_steps:
                time.sleep(0.05)
            group.kill(0)
            self.killed.set()

        threading.Thread(target=kill, daemon=True).start()
        return group


def test_worker_killed_mid_run_every_acknowledged_transition_is_in_the_replay_once(local_ray, tmp_path):
    run_dir = tmp_path / "dqn-wkill"
    sets = {
        "workers": 2,
        "envs_per_worker": 2,
        "total_steps": 4000,
        "run_dir": str(run_dir),
        "hidden": [32],
        "batch_size": 32,
        "min_size": 256,
        "replay_capacity": 20_000,
        "samples_per_insert": 4,
        "report_interval_s": 0.3,
    }
    run, algo_cfg, spec = resolve_config("dqn", "CartPole-v1", sets)
    backend = KillingBackend(run_dir, after_steps=1000)
    train(run, algo_cfg, spec, quiet=True, backend=backend)
    assert backend.killed.is_set()
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    from tandem.replay import managed_redis

    server = managed_redis(dir=run_dir / "redis")
    try:
        replay = RedisReplay(server.url, run_dir.name)
        replay.sync()
        written = int(replay.inserted)
        data, _ = replay.live_rows()
        keys = np.concatenate([data["obs"], data["actions"].reshape(-1, 1), data["next_obs"]], axis=1)
        duplicated = written - len(np.unique(keys, axis=0))
        replay.close()
    finally:
        server.stop()
    counted = rows[-1]["env_steps"]
    restarts = rows[-1]["worker_restarts"]
    record(
        "worker_kill",
        faults=f"ray.kill of rollout worker 0 mid-run (DQN, managed Redis); {restarts} restart(s)",
        written=written,
        counted=counted,
        lost=max(0, counted - written),
        uncounted=max(0, written - counted),
        duplicated=duplicated,
        outcome="worker restarted, run finished" if written == counted and not duplicated else "FAILED",
    )
    assert status(run_dir)["status"] == "finished"
    assert restarts >= 1
    assert duplicated == 0 and written == counted, (written, counted, duplicated)


class PoisonedCartPole(CartPoleEnv):
    """CartPole whose reward turns into +inf after ``after`` steps: a broken simulator."""

    def __init__(self, after: int = 600):
        super().__init__()
        self.after, self.t = after, 0

    def step(self, action):
        obs, r, term, trunc, info = super().step(action)
        self.t += 1
        return obs, (np.inf if self.t > self.after else r), term, trunc, info


def test_non_finite_batch_ends_the_run_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    if "TandemTest/Poisoned-v0" not in gym.registry:
        gym.register("TandemTest/Poisoned-v0", entry_point=PoisonedCartPole, max_episode_steps=500)
    run_dir = tmp_path / "dqn-nan"
    run, algo_cfg, spec = resolve_config(
        "dqn",
        "TandemTest/Poisoned-v0",
        {
            "workers": 1,
            "envs_per_worker": 1,
            "total_steps": 5000,
            "run_dir": str(run_dir),
            "replay": "memory",
            "hidden": [16],
            "batch_size": 16,
            "min_size": 64,
            "samples_per_insert": 2,
            "report_interval_s": 0.05,
            "checkpoint_every": 1,
            "prioritized": False,
        },
    )
    with pytest.raises(NonFiniteError) as e:
        train(run, algo_cfg, spec, quiet=True, backend=LocalBackend())
    msg = str(e.value)
    st = status(run_dir)
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt_*.pt"))
    newest = int(ckpts[-1].split("_")[1].split(".")[0]) if ckpts else 0
    record(
        "learner_non_finite",
        faults="reward +inf from the env after 600 steps (DQN, in-memory replay)",
        written=newest,
        counted=newest,
        lost=0,
        duplicated=0,
        outcome=f"NonFiniteError: {msg[:70]}...; last good checkpoint at {newest} steps kept",
    )
    assert msg.startswith("non-finite rewards in the batch of update") and "\n" not in msg
    assert st["status"] == "crashed" and st["error"] == msg
    # the checkpoints kept hold a learner from before the poison: every tensor finite
    import torch

    state = torch.load(run_dir / "checkpoints" / ckpts[-1], weights_only=True)
    tensors = [v for v in state["learner"]["q"].values() if isinstance(v, torch.Tensor)]
    assert tensors and all(bool(torch.isfinite(t).all()) for t in tensors)
