"""The learner as a Ray actor (``--learner actor``) on a real local Ray and, off-policy, a real
redis-server: the same counts, checkpoints and resume as the in-process learner, rollouts that
never enter the driver, and one-line errors for placements that cannot work."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest
import ray
import torch

from tandem.cli import _resources
from tandem.cluster.group import AUTO_LEARNER_ENV, RayBackend, auto_learner_placement
from tandem.cluster.learner_actor import _get, ray_options, start_learner_actor
from tandem.core.errors import TandemError
from tandem.core.types import Rollout
from tandem.runner.local import LocalBackend
from tandem.runner.session import resolve_config
from tandem.runner.train import train

pytestmark = pytest.mark.integration


def rows(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def ppo_settings(tmp_path, learner="actor", total_steps=256):
    return {
        "total_steps": total_steps,
        "workers": 2,
        "envs_per_worker": 2,
        "run_dir": str(tmp_path / "ppo"),
        "fragment_length": 32,
        "epochs": 2,
        "num_minibatches": 4,
        "checkpoint_every": 1,
        "learner": learner,
        "learner_cpus": 0.5,
    }


def test_on_policy_rollouts_reach_the_actor_as_refs_and_checkpoints_hold_its_state(
    local_ray, tmp_path, monkeypatch
):
    # Every value this (driver) process takes out of the object store, by type.
    fetched: Counter = Counter()
    real_get = ray.get

    def recording_get(refs, *a, **kw):
        out = real_get(refs, *a, **kw)
        for v in out if isinstance(out, list) else [out]:
            fetched[type(v).__name__] += 1
        return out

    monkeypatch.setattr(ray, "get", recording_get)
    run, cfg, spec = resolve_config("ppo", "CartPole-v1", ppo_settings(tmp_path))
    out = train(run, cfg, spec, quiet=True, backend=RayBackend(num_cpus=2))
    monkeypatch.setattr(ray, "get", real_get)
    first = rows(out)
    # 2 workers x 2 envs x 32 steps = 128 per iteration; 2 epochs x 4 minibatches = 8 steps each:
    # the counts of the in-process learner (tests/unit/test_worker_group.py).
    assert [r["env_steps"] for r in first] == [128, 256]
    assert first[-1]["grad_updates"] == 16 and first[-1]["samples_trained"] == 2 * 256
    assert first[-1]["workers"] == 2 and np.isfinite(first[-1]["loss/policy"])
    assert fetched["LearnerStep"] == 2, fetched
    assert fetched[Rollout.__name__] == 0, "a rollout passed through the driver"

    # The checkpoints hold the actor's learner, copied back: it changed between iterations
    # (the driver's own copy of the learner never trains).
    ckpts = sorted((out / "checkpoints").glob("ckpt_*.pt"))
    states = [torch.load(p, weights_only=True)["learner"] for p in ckpts]
    assert len(states) == 2

    def params(state):
        return torch.cat([t.flatten().float() for t in _tensors(state)])

    assert not torch.equal(params(states[0]), params(states[1]))

    # Resume in actor mode: the counters continue from the checkpoint.
    run2, cfg2, spec2 = resolve_config("ppo", "CartPole-v1", ppo_settings(tmp_path, total_steps=384))
    run2.run_dir = str(out)
    train(run2, cfg2, spec2, resume_dir=out, quiet=True, backend=RayBackend(num_cpus=2))
    resumed = rows(out)[len(first) :]
    assert [r["env_steps"] for r in resumed] == [384] and resumed[-1]["grad_updates"] == 24


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            if k != "optimizer":
                yield from _tensors(obj[k])


def qlearn_settings(tmp_path, name, replay, learner, steps=4000, **kw):
    return {
        "env_kwargs": {"is_slippery": False},
        "total_steps": steps,
        "workers": 2,
        "envs_per_worker": 2,
        "run_dir": str(tmp_path / name),
        "replay": replay,
        "min_size": 1000,
        "samples_per_insert": 8.0,
        "batch_size": 64,
        "report_interval_s": 0.2,
        "learner": learner,
        "learner_cpus": 0.5,
        **kw,
    }


@pytest.mark.timeout(600)
def test_off_policy_actor_with_an_in_memory_replay_holds_the_ratio_and_resumes(local_ray, tmp_path):
    """--replay memory: the driver forwards the workers' batches to the actor's own buffer."""
    run, cfg, spec = resolve_config(
        "qlearn",
        "FrozenLake-v1",
        qlearn_settings(tmp_path, "m", "memory", "actor", steps=3000, checkpoint_every=3),
    )
    out = train(run, cfg, spec, quiet=True, backend=RayBackend(num_cpus=2))
    data = rows(out)
    last = data[-1]
    assert last["env_steps"] >= 3000
    assert all(r["grad_updates"] == 0 for r in data if r["env_steps"] < 1000)
    assert last["samples_trained"] / (last["env_steps"] - 1000) == pytest.approx(8.0, rel=0.10)
    # The replay statistics come from the actor's buffer, which got every forwarded batch.
    assert last["replay_size"] == last["env_steps"] and last["replay/sampled"] == last["samples_trained"]
    assert np.isfinite(last["loss/td"])

    # The in-memory buffer is gone after a resume: the learner warms up on min_size new
    # transitions again, then holds the ratio (a limiter that kept the old counts let the
    # workers fill its slack while the learner waited for min_size, and the run stalled).
    run2, cfg2, spec2 = resolve_config(
        "qlearn", "FrozenLake-v1", qlearn_settings(tmp_path, "m", "memory", "actor", steps=4500)
    )
    run2.run_dir = str(out)
    ckpt = torch.load(sorted((out / "checkpoints").glob("ckpt_*.pt"))[-1], weights_only=True)["counters"]
    train(run2, cfg2, spec2, resume_dir=out, quiet=True, backend=RayBackend(num_cpus=2))
    end = rows(out)[-1]
    assert end["env_steps"] >= 4500
    new_steps = end["env_steps"] - ckpt["env_steps"]
    new_samples = end["samples_trained"] - ckpt["samples_trained"]
    assert end["replay_size"] == new_steps
    assert new_samples / (new_steps - 1000) == pytest.approx(8.0, rel=0.10)


def test_learner_threads_follow_the_actor_cpus(local_ray):
    from tandem.learners.tabular import QLearnConfig
    from tandem.runner.envs import env_spaces

    obs, act = env_spaces("FrozenLake-v1", {})
    learner = start_learner_actor(
        dict(algo="qlearn", obs_space=obs, act_space=act, algo_cfg=QLearnConfig(), threads=2), 0.5, {}, 60
    )
    try:
        threads = ray.get(learner.actor.__ray_call__.remote(lambda self: torch.get_num_threads()))
        assert threads == 2
    finally:
        learner.close()


def test_an_error_two_actors_deep_reaches_the_driver_as_raised(local_ray):
    """A worker's TandemError that the learner actor met while fetching fragment refs is wrapped
    by Ray once per hop; the driver sees the worker's own one line (found with --learner-mode actor)."""

    @ray.remote
    def worker_call():
        raise TandemError("a rollout fragment needs at least 1 step per env: --set fragment_length=64")

    @ray.remote
    class Relay:
        def fetch(self):
            return ray.get(worker_call.remote())

    with pytest.raises(TandemError) as e:
        _get(Relay.remote().fetch.remote())
    assert str(e.value) == "a rollout fragment needs at least 1 step per env: --set fragment_length=64"


def test_a_dead_learner_actor_is_a_one_line_error(local_ray):
    from tandem.learners.registry import get_algo
    from tandem.learners.tabular import QLearnConfig
    from tandem.runner.envs import env_spaces

    obs, act = env_spaces("FrozenLake-v1", {})
    kwargs = dict(algo="qlearn", obs_space=obs, act_space=act, algo_cfg=QLearnConfig())
    learner = start_learner_actor(kwargs, 0.5, {}, 60)
    ray.kill(learner.actor, no_restart=True)
    with pytest.raises(ray.exceptions.RayActorError):  # wait until Ray knows it is gone
        for _ in range(60):
            ray.get(learner.actor.ready.remote(), timeout=30)
            time.sleep(0.5)
    with pytest.raises(TandemError, match=r"the learner actor died .*--resume RUN_DIR"):
        learner.sync_to(get_algo("qlearn").make_learner(obs, act, QLearnConfig()))


def test_a_learner_no_node_can_place_fails_with_one_line(local_ray):
    from tandem.learners.tabular import QLearnConfig
    from tandem.runner.envs import env_spaces

    obs, act = env_spaces("FrozenLake-v1", {})
    kwargs = dict(algo="qlearn", obs_space=obs, act_space=act, algo_cfg=QLearnConfig())
    with pytest.raises(TandemError, match=r"no node of the Ray cluster could give the learner actor .*GPU"):
        start_learner_actor(kwargs, 0.5, {"GPU": 1}, timeout_s=11)


def test_actor_mode_needs_the_ray_backend(tmp_path):
    run, cfg, spec = resolve_config("ppo", "CartPole-v1", ppo_settings(tmp_path))
    with pytest.raises(TandemError, match="--learner actor needs the Ray backend"):
        train(run, cfg, spec, quiet=True, backend=LocalBackend())
    assert not (tmp_path / "ppo").exists(), "the error must come before the run directory exists"


def test_auto_is_local_on_an_embedded_ray_and_an_actor_on_a_joined_cluster(monkeypatch):
    monkeypatch.delenv(AUTO_LEARNER_ENV, raising=False)  # pytest --learner-mode sets it
    backend = RayBackend()
    assert backend.learner_placement("auto") == "local"
    assert backend.learner_placement("actor") == "actor"
    backend.joined = True
    assert backend.learner_placement("auto") == "actor"
    assert backend.learner_placement("local") == "local"
    assert LocalBackend().learner_placement("auto") == "local"


def test_tandem_learner_fixes_what_auto_means():
    assert auto_learner_placement(False, {AUTO_LEARNER_ENV: "actor"}) == "actor"
    assert auto_learner_placement(True, {AUTO_LEARNER_ENV: " Local "}) == "local"
    assert auto_learner_placement(True, {AUTO_LEARNER_ENV: ""}) == "actor"
    with pytest.raises(TandemError, match=r"TANDEM_LEARNER='gpu' is not a learner placement"):
        auto_learner_placement(False, {AUTO_LEARNER_ENV: "gpu"})


def test_learner_resources_become_ray_options():
    assert ray_options(1.0, {}) == {"num_cpus": 1.0, "max_restarts": 0}
    assert ray_options(1.0, {"GPU": 1}) == {"num_cpus": 1.0, "num_gpus": 1.0, "max_restarts": 0}
    assert ray_options(2.0, {"CPU": 4, "accel": 0.5})["num_cpus"] == 4.0
    assert ray_options(2.0, {"accel": 0.5})["resources"] == {"accel": 0.5}
    with pytest.raises(TandemError, match="non-negative numbers"):
        ray_options(1.0, {"GPU": "one"})
    assert _resources('{"GPU": 1}') == {"GPU": 1.0}
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="JSON object"):
        _resources("GPU=1")
