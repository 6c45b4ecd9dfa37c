"""Driver faults (issue 13), through the real CLI: SIGKILL of ``tandem train`` then ``--resume``,
and SIGTERM. Each case writes a row with ``tests.faults.summary.record``.

Counting. ``written``: transitions the replay ever took in (Redis' insert cursor, read back from
the run's AOF after the run). ``counted``: the last metrics row's ``env_steps``. ``lost``:
counted transitions missing from the replay; ``uncounted``: replay transitions the counters
missed; ``duplicated``: rows present twice (the same obs, action and next obs: real CartPole
states never repeat to the bit). A pass is written == counted with nothing lost or duplicated.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tandem.runner.rundir import read_status
from tests.faults.summary import record

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


def tandem(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def finish(p: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"tandem did not finish in {timeout} s:\n{err[-3000:]}") from None
    return p.returncode, err


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("ckpt_*.pt"))


def wait_until(pred, timeout: float, p: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if p.poll() is not None:
            raise AssertionError(f"tandem exited {p.returncode} early:\n{p.communicate()[1][-3000:]}")
        time.sleep(0.1)
    p.kill()
    raise AssertionError(f"condition not met in {timeout} s")


def ray_descendants(root: int) -> dict[int, str]:
    """Ray's processes below ``root`` (pid -> start time), read from /proc."""
    procs = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                rest = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                cmd = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            procs[int(name)] = (int(rest[1]), rest[19], cmd)
    children = collections.defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        children[ppid].append(pid)
    out, todo = {}, [root]
    while todo:
        for kid in children[todo.pop()]:
            todo.append(kid)
            if procs[kid][2].startswith(b"ray::") or b"/ray/core/" in procs[kid][2]:
                out[kid] = procs[kid][1]
    return out


def still_there(pid: int, start: str) -> bool:
    try:
        rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return rest[19] == start and rest[0] != "Z"


def replay_tally(run_dir: Path, counted: int) -> dict[str, int]:
    """Open the run's replay from its AOF and count what it holds."""
    from tandem.replay import RedisReplay, managed_redis

    server = managed_redis(dir=run_dir / "redis")
    try:
        replay = RedisReplay(server.url, run_dir.name)
        replay.sync()
        written = int(replay.inserted)
        data, _ = replay.live_rows()
        keys = np.concatenate(
            [
                data["obs"].reshape(written, -1),
                data["actions"].reshape(written, -1),
                data["next_obs"].reshape(written, -1),
            ],
            axis=1,
        )
        dup = written - len(np.unique(keys, axis=0))
        replay.close()
    finally:
        server.stop()
    assert len(data["obs"]) == written, "the test's replay capacity must hold the whole run"
    return {
        "written": written,
        "counted": counted,
        "lost": max(0, counted - written),
        "uncounted": max(0, written - counted),
        "duplicated": dup,
    }


def monotonic(
    rs: list[dict], fields=("env_steps", "episodes", "wall_time_s", "grad_updates", "samples_trained")
):
    """The fields whose values go back somewhere in ``rs``."""
    return [f for f in fields if any(b[f] < a[f] for a, b in zip(rs, rs[1:], strict=False))]


DQN = [
    "--algo", "dqn", "--env", "CartPole-v1", "--workers", "2", "--envs-per-worker", "2",
    "--num-cpus", "2", "--total-steps", "5000", "--quiet",
    "--set", "hidden=[32]", "--set", "batch_size=32", "--set", "min_size=256",
    "--set", "replay_capacity=20000", "--set", "samples_per_insert=4",
    "--set", "report_interval_s=0.3", "--set", "checkpoint_every=3",
]  # fmt: skip


def test_driver_sigkill_then_resume_counts_every_transition_once(tmp_path):
    run_dir = tmp_path / "dqn-kill"
    p = tandem("train", *DQN, "--run-dir", str(run_dir))

    def past_a_checkpoint() -> bool:
        ck = checkpoint_steps(run_dir) if (run_dir / "checkpoints").is_dir() else []
        rs = rows(run_dir)
        return bool(ck) and bool(rs) and rs[-1]["env_steps"] > ck[-1] and rs[-1]["env_steps"] >= 1500

    wait_until(past_a_checkpoint, 180, p)
    last_ckpt = checkpoint_steps(run_dir)[-1]
    ray_procs = ray_descendants(p.pid)
    before_kill = rows(run_dir)[-1]["env_steps"]
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    t0 = time.monotonic()
    while any(still_there(q, s) for q, s in ray_procs.items()) and time.monotonic() - t0 < 60:
        time.sleep(0.1)
    ray_outlived_s = round(time.monotonic() - t0, 1)
    left = [q for q, s in ray_procs.items() if still_there(q, s)]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    assert read_status(run_dir)["status"] == "crashed"  # found dead when read
    assert json.loads((run_dir / "status.json").read_text())["status"] == "crashed"

    code, err = finish(tandem("train", "--resume", str(run_dir), "--num-cpus", "2", "--quiet"))
    assert code == 0, err[-3000:]
    rs = rows(run_dir)
    back = monotonic(rs)
    # what the resume found in the replay that the killed driver never counted
    found = re.search(r"counted (\d+) transitions that reached the replay without a report", err)
    got = replay_tally(run_dir, rs[-1]["env_steps"])
    status = json.loads((run_dir / "status.json").read_text())
    record(
        "driver_sigkill_resume",
        faults=f"SIGKILL of `tandem train` (DQN, ray, managed Redis) at {before_kill} env steps, past "
        f"checkpoint {last_ckpt}, then --resume",
        **got,
        counters_went_back=back,
        counted_at_resume_from_replay=int(found.group(1)) if found else 0,
        rows_before_kill_max_env_steps=before_kill,
        ray_processes_outlived_driver_s=ray_outlived_s,
        outcome="resumed; rows monotonic; every replay transition counted once"
        if not back and got["written"] == got["counted"] and not got["duplicated"]
        else "FAILED",
    )
    assert not left, f"Ray processes outlived the killed driver by {ray_outlived_s} s: {left}"
    assert status["status"] == "finished"
    assert not back, f"counters went back on resume: {back}"
    assert got["duplicated"] == 0 and got["lost"] == 0
    assert got["written"] == got["counted"], got
    assert rs[-1]["env_steps"] >= 5000


def test_sigterm_checkpoints_and_exits_143(tmp_path):
    run_dir = tmp_path / "ppo-term"
    p = tandem(
        "train", "--algo", "ppo", "--env", "CartPole-v1", "--workers", "1", "--num-cpus", "2",
        "--total-steps", "1000000", "--quiet", "--run-dir", str(run_dir),
        "--set", "checkpoint_every=1000", "--set", "hidden=[16]",
    )  # fmt: skip
    wait_until(lambda: len(rows(run_dir)) >= 2, 180, p)
    p.send_signal(signal.SIGTERM)
    code, err = finish(p, timeout=60)
    last = rows(run_dir)[-1]
    status = json.loads((run_dir / "status.json").read_text())
    ckpts = checkpoint_steps(run_dir)
    record(
        "driver_sigterm",
        faults="SIGTERM to `tandem train` (PPO, ray) mid-run",
        counted=last["env_steps"],
        checkpointed=ckpts[-1] if ckpts else 0,
        lost=max(0, last["env_steps"] - (ckpts[-1] if ckpts else 0)),
        exit_code=code,
        outcome=f"exit {code}, status {status['status']}: {status['error']}",
    )
    assert code == 143, err[-3000:]
    assert "Traceback" not in err and "Fatal Python error" not in err and "SIGABRT" not in err, err[-3000:]
    assert "terminated by SIGTERM" in err and "--resume" in err
    assert status["status"] == "crashed" and status["error"].startswith("terminated by SIGTERM: resume with")
    # checkpoint_every=1000 never fired: this checkpoint was written on the way out
    assert ckpts and ckpts[-1] >= last["env_steps"]
