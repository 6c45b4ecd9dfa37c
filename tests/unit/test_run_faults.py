"""The pure parts of the driver/learner/worker fault handling (issue 13): resumed counters,
status of a dead run, a partial metrics line, counting the replay's unreported transitions,
one-line errors, the finiteness check, and a restarted worker's seeds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tandem.core.errors import TandemError
from tandem.core.types import Batch, UpdateResult
from tandem.learners.finite import NonFiniteError, checked
from tandem.learners.registry import get_algo
from tandem.runner.off_policy import count_unacknowledged
from tandem.runner.rundir import (
    Counters,
    RunDir,
    continue_counters,
    last_metrics_row,
    read_status,
    write_status,
)
from tandem.runner.train import Terminated, one_line
from tandem.runner.worker import RolloutWorker, salted_seed


def test_resumed_counters_never_go_below_the_last_row():
    ckpt = Counters(
        env_steps=12_480, episodes=300, grad_updates=900, samples_trained=57_600, wall_time_s=50.0
    )
    row = {
        "env_steps": 13_568,
        "episodes": 320,
        "grad_updates": 950,
        "samples_trained": 60_800,
        "wall_time_s": 61.5,
    }
    c = continue_counters(ckpt, row)
    assert (c.env_steps, c.episodes, c.grad_updates, c.samples_trained) == (13_568, 320, 950, 60_800)
    assert c.wall_time_s == 61.5
    assert ckpt.env_steps == 12_480  # the checkpoint's object is left alone
    # a last row older than the checkpoint (the crash came right after it) changes nothing
    older = continue_counters(ckpt, {"env_steps": 100, "episodes": 2, "wall_time_s": 1.0})
    assert (older.env_steps, older.episodes, older.wall_time_s) == (12_480, 300, 50.0)
    assert continue_counters(ckpt, None).env_steps == 12_480


def test_partial_last_metrics_line_is_cut_off_on_resume(tmp_path):
    rows = [{"env_steps": 64}, {"env_steps": 128}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"env_steps": 19')
    assert last_metrics_row(path) == {"env_steps": 128}
    assert path.read_text().endswith('{"env_steps": 19')  # read only: untouched
    (tmp_path / "config.yaml").write_text("algo: dqn\n")
    rd = RunDir(tmp_path, resume=True)
    rd.log({"env_steps": 192})
    rd.close()
    lines = path.read_text().splitlines()
    assert [json.loads(x)["env_steps"] for x in lines] == [64, 128, 192]


def test_a_running_status_whose_process_is_gone_reads_as_crashed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_status(tmp_path, "running")
        st = json.loads((tmp_path / "status.json").read_text())
        st["pid"] = child.pid
        (tmp_path / "status.json").write_text(json.dumps(st))
        assert read_status(tmp_path)["status"] == "running"  # alive
    finally:
        child.kill()
        child.wait()
    st = read_status(tmp_path)
    assert st["status"] == "crashed" and f"pid {child.pid}" in st["error"] and "--resume" in st["error"]
    assert json.loads((tmp_path / "status.json").read_text())["status"] == "crashed"  # written back
    assert read_status(tmp_path / "nothing-here") is None


def test_unreported_transitions_in_the_replay_are_counted_once():
    c = Counters()
    assert count_unacknowledged(c, 0) == 0 and c.replay_base == 0  # a new buffer: the base
    c.env_steps = 1_024  # fragments reported
    assert count_unacknowledged(c, 1_088) == 64  # one 64-step fragment wrote but never reported
    assert c.env_steps == 1_088
    assert count_unacknowledged(c, 1_088) == 0  # idempotent: counted once
    # a buffer shared with an earlier run: only this run's rows count
    d = Counters()
    count_unacknowledged(d, 5_000)
    d.env_steps = 100
    assert count_unacknowledged(d, 5_164) == 64 and d.env_steps == 164
    # fewer rows than counted (an old snapshot): reported, counters untouched (never go back)
    assert count_unacknowledged(d, 5_000) == -164 and d.env_steps == 164


def test_one_line_strips_ray_colours_and_keeps_a_tandem_error_as_written():
    ray_text = "\x1b[36mray::RolloutWorker.collect()\x1b[39m (pid=1, ip=127.0.0.1)\n  File ...\nValueError: x"
    assert (
        one_line(RuntimeError(ray_text)) == "RuntimeError: ray::RolloutWorker.collect() (pid=1, ip=127.0.0.1)"
    )
    assert one_line(TandemError("cannot reach Redis at redis://h:1: start it")) == (
        "cannot reach Redis at redis://h:1: start it"
    )
    assert "\n" not in one_line(ValueError("a\nb")) and len(one_line(ValueError("x" * 999))) == 300
    t = Terminated(15)
    assert str(t) == "terminated by SIGTERM" and isinstance(t, KeyboardInterrupt)


def _batch(**over) -> Batch:
    b = dict(
        obs=np.zeros((4, 3), np.float32),
        actions=np.zeros(4, np.int64),
        rewards=np.ones(4, np.float32),
        next_obs=np.zeros((4, 3), np.float32),
        terminated=np.zeros(4, bool),
        truncated=np.zeros(4, bool),
        extras={"discount": np.full(4, 0.99, np.float32)},
    )
    b.update(over)
    return Batch(**b)


def test_finite_check_names_the_loss_or_the_batch_field_and_the_update():
    ok = UpdateResult({"loss/q": 0.5, "stats/explained_variance": math.nan}, 1, 4)
    assert checked(ok, _batch(), 7) is ok  # a NaN statistic is not a failure, a NaN loss is
    with pytest.raises(
        NonFiniteError, match=r"^non-finite loss/q \(nan\) at update 7: lower the learning rate"
    ):
        checked(UpdateResult({"loss/q": math.nan}, 1, 4), _batch(), 7)
    rewards = np.ones(4, np.float32)
    rewards[2] = np.inf
    with pytest.raises(NonFiniteError, match=r"non-finite rewards in the batch of update 3 \(at \(2,\)\)"):
        checked(ok, _batch(rewards=rewards), 3)
    disc = np.full(4, np.nan, np.float32)
    with pytest.raises(NonFiniteError, match="extras.discount"):
        checked(ok, _batch(extras={"discount": disc}), 3)
    assert issubclass(NonFiniteError, TandemError)


def _worker(seed: int = 3) -> RolloutWorker:
    spec = get_algo("ppo")
    return RolloutWorker("CartPole-v1", 2, "ppo", spec.config_cls(), seed=seed, worker_index=1)


def _life(incarnation: int) -> np.ndarray:
    """Observations of a fresh worker's first fragment in its ``incarnation``-th life. In-process
    workers share torch's global RNG, so each one samples right after it was (re)seeded."""
    w = _worker()
    if incarnation:
        assert w.reincarnate(incarnation) == 1 and w.incarnation == incarnation
    return w.sample(16).obs


def test_a_restarted_worker_salts_its_seeds_with_its_incarnation():
    a = _life(0)
    assert np.array_equal(_life(0), a)  # same seed, same life: the same episodes
    # Ray rebuilds a lost actor with its first arguments; the group then reincarnates it
    b = _life(1)
    assert not np.array_equal(b[0], a[0])  # new first observations
    assert np.array_equal(_life(1), b)  # still reproducible per incarnation
    assert not np.array_equal(_life(2)[0], b[0])
    assert len({salted_seed(3, k) for k in range(100)} | {salted_seed(4, k) for k in range(100)}) == 200


def test_fragment_length_zero_is_one_line_from_the_worker():
    w = _worker()
    with pytest.raises(
        TandemError, match=r"^a rollout fragment needs at least 1 step per env.*fragment_length=64"
    ):
        w.sample(0)


def test_status_carries_the_session_number(tmp_path):
    write_status(tmp_path, "running", session=3)
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["session"] == 3 and st["pid"] == os.getpid()
