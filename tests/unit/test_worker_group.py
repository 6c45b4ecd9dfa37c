"""The WorkerGroup interface: the in-process group, and the drivers running through it (no Ray)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tandem.core.protocols import Backend, WorkerGroup, WorkerLost
from tandem.core.types import Fragment
from tandem.learners.ppo import PPOConfig
from tandem.learners.tabular import QLearnConfig
from tandem.runner.local import LocalBackend, LocalWorkerGroup
from tandem.runner.session import resolve_config
from tandem.runner.train import train
from tests import fake_envs  # noqa: F401  (registers the fake envs)


def protocol_members(proto: type) -> set[str]:
    return {n for n in proto.__dict__ if not n.startswith("_")} | set(proto.__annotations__)


def make_group(n: int = 2) -> LocalWorkerGroup:
    return LocalWorkerGroup(
        n, env_id="TandemTest/Terminating-v0", num_envs=2, algo="ppo", algo_config=PPOConfig(hidden=(8,))
    )


def test_both_groups_and_backends_implement_the_protocols():
    from tandem.cluster.group import RayBackend, RayWorkerGroup

    group = make_group()
    assert isinstance(group, WorkerGroup) and isinstance(LocalBackend(), Backend)
    assert isinstance(RayBackend(), Backend)
    # A Ray group needs a cluster to exist; its class must still carry every member.
    missing = {
        m for m in protocol_members(WorkerGroup) if m != "num_workers" and not hasattr(RayWorkerGroup, m)
    }
    assert not missing, missing


def test_a_local_call_runs_when_waited_on_oldest_first():
    group = make_group()
    a = group.submit(0, "sample", 3)
    b = group.submit(1, "sample", 3)
    assert not a.done and not b.done, "submit only records the call"
    assert group.wait([a, b], timeout=0) == [a]
    assert group.wait([a, b], timeout=0) == [a], "a finished call is returned before more work runs"
    ro = group.result(b)  # result() runs a pending call
    assert ro.worker_index == 1 and ro.num_steps == 6
    assert group.result(a).worker_index == 0
    assert group.wait([], timeout=1.0) == []


def test_publish_hands_the_weights_object_itself_and_call_all_reaches_every_worker():
    group = make_group()
    weights = {k: np.zeros_like(v) for k, v in group.workers[0].policy.get_weights().items()}
    assert group.publish(weights) is weights
    rollouts = group.call_all("sample", 2, group.publish(weights), 4)
    assert [r.worker_index for r in rollouts] == [0, 1] and {r.policy_version for r in rollouts} == {4}
    assert group.alive == [0, 1] and group.restarts == 0


def test_a_failing_local_worker_raises_its_own_error_not_worker_lost():
    group = make_group(1)
    handle = group.submit(0, "sample", "not a number")
    assert group.wait([handle], timeout=0) == [handle]
    with pytest.raises(TypeError):
        group.result(handle)


def test_collect_returns_a_fragment_with_the_batch_for_an_in_memory_replay():
    group = LocalWorkerGroup(1, env_id="FrozenLake-v1", num_envs=2, algo="qlearn", algo_config=QLearnConfig())
    frag = group.result(group.submit(0, "collect", 5))
    assert isinstance(frag, Fragment)
    assert frag.env_steps == 10 and len(frag.batch) == 10 and frag.policy_version == 0


def rows(run_dir) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


class RecordingBackend(LocalBackend):
    """The local backend with a metrics sink that keeps every row it is given."""

    def __init__(self):
        self.rows: list[dict[str, Any]] = []
        self.sink_args: tuple[str, str, str] | None = None

    def metrics_sink(self, run: str, algo: str, env: str):
        self.sink_args = (run, algo, env)
        return SimpleNamespace(record=self.rows.append)


def test_on_policy_driver_counts_what_the_learner_reports_and_resumes(tmp_path):
    settings = {
        "total_steps": 256,
        "workers": 2,
        "envs_per_worker": 2,
        "run_dir": str(tmp_path / "ppo"),
        "fragment_length": 32,
        "epochs": 2,
        "num_minibatches": 4,
        "checkpoint_every": 1,
    }
    run, cfg, spec = resolve_config("ppo", "CartPole-v1", settings)
    backend = RecordingBackend()
    out = train(run, cfg, spec, quiet=True, backend=backend)
    first = rows(out)
    # Telemetry is attached through the backend: its sink got every row metrics.jsonl got.
    assert backend.sink_args == ("ppo", "ppo", "CartPole-v1")
    assert [r["env_steps"] for r in backend.rows] == [r["env_steps"] for r in first]
    last = first[-1]
    # 2 workers x 2 envs x 32 steps = 128 per iteration; 2 epochs x 4 minibatches = 8 steps each.
    assert [r["env_steps"] for r in first] == [128, 256]
    assert last["grad_updates"] == 16 and last["samples_trained"] == 2 * 256
    assert "grad_updates" not in {k for k in last if "/" in k} and "loss/policy" in last
    assert last["workers"] == 2 and last["worker_restarts"] == 0

    run2, cfg2, spec2 = resolve_config("ppo", "CartPole-v1", {**settings, "total_steps": 384})
    run2.run_dir = str(out)
    train(run2, cfg2, spec2, resume_dir=out, quiet=True, backend=LocalBackend())
    resumed = rows(out)[len(first) :]
    assert [r["env_steps"] for r in resumed] == [384]
    assert resumed[-1]["grad_updates"] == 24 and resumed[-1]["wall_time_s"] >= last["wall_time_s"]


class FlakyGroup(LocalWorkerGroup):
    """Worker 1's second call dies; the worker is parked for one more wait, then comes back."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls = {0: 0, 1: 0}
        self.parked_for = 0
        self._restarts = 0

    @property
    def alive(self) -> list[int]:
        if self.parked_for:
            self.parked_for -= 1
            return [0]
        return [0, 1]

    @property
    def restarts(self) -> int:
        return self._restarts

    def result(self, handle):
        self.calls[handle.worker] += 1
        if handle.worker == 1 and self.calls[1] == 2:
            raise WorkerLost(1, "killed by the test")
        return super().result(handle)

    def park(self, i: int, err: BaseException) -> None:
        assert isinstance(err, WorkerLost) and i == 1
        self._restarts += 1
        self.parked_for = 3


class FlakyBackend(LocalBackend):
    def make_group(self, num_workers: int, **worker_kwargs: Any) -> FlakyGroup:
        self.group = FlakyGroup(num_workers, **worker_kwargs)
        return self.group


def test_off_policy_driver_parks_a_lost_worker_and_keeps_collecting(tmp_path):
    run, cfg, spec = resolve_config(
        "qlearn",
        "FrozenLake-v1",
        {
            "env_kwargs": {"is_slippery": False},
            "total_steps": 2000,
            "workers": 2,
            "envs_per_worker": 2,
            "replay": "memory",
            "run_dir": str(tmp_path / "q"),
            "min_size": 200,
            "samples_per_insert": 4.0,
            "batch_size": 32,
        },
    )
    backend = FlakyBackend()
    out = train(run, cfg, spec, quiet=True, backend=backend)
    last = rows(out)[-1]
    assert last["worker_restarts"] == 1 and backend.group.calls[1] > 2, "worker 1 must be back after parking"
    assert last["env_steps"] >= 2000 and last["grad_updates"] > 0
    assert last["samples_trained"] == 32 * last["grad_updates"]
