"""``tandem sweep`` on a real local Ray and Ray Tune: a 2x2 sweep of tiny PPO runs, a trial that
fails inside Tune while the other finishes, ``--resume`` of that sweep, and the worker group
placing its workers in the trial's own placement group."""

import csv
import json

import pytest
import ray
import yaml
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from tandem.cli import main
from tandem.cluster.group import init_ray
from tandem.learners.ppo import PPOConfig

pytestmark = pytest.mark.integration

# Each trial: 256 env steps of CartPole PPO, one worker with one env, half a CPU for its driver
# and half for its worker, so four trials fit the 4-CPU Ray at once.
TINY = [
    "--algo", "ppo", "--env", "CartPole-v1", "--total-steps", "256", "--workers", "1",
    "--envs-per-worker", "1", "--set", "fragment_length=64", "--set", "hidden=[8]",
    "--driver-cpus", "0.5", "--worker-cpus", "0.5", "--num-cpus", "4",
]  # fmt: skip


@pytest.fixture(scope="module")
def sweep_ray():
    init_ray(None, num_cpus=4)
    yield
    ray.shutdown()


def test_two_by_two_sweep_writes_four_runs_and_a_summary(sweep_ray, tmp_path, capsys):
    code = main(
        [
            "sweep",
            *TINY,
            "--seeds",
            "0:2",
            "--grid",
            "lr=[3e-4,1e-3]",
            "--name",
            "s",
            "--runs-root",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    sweep = tmp_path / "s"
    names = {"lr=0.0003,seed=0", "lr=0.0003,seed=1", "lr=0.001,seed=0", "lr=0.001,seed=1"}
    assert {p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")} == names
    for name in names:
        run = sweep / name
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["seed"] == int(name[-1])
        assert cfg["algo_config"]["lr"] == pytest.approx(3e-4 if "0.0003" in name else 1e-3)
        assert cfg["workers"] == 1 and cfg["total_steps"] == 256
        assert json.loads((run / "status.json").read_text())["status"] == "finished"
        assert (run / "metrics.jsonl").read_text().count("\n") >= 4  # 256 steps / 64-step fragments
    rows = json.loads((sweep / "summary.json").read_text())["trials"]
    assert {r["trial"] for r in rows} == names
    for r in rows:
        assert r["status"] == "finished" and r["error"] is None
        assert r["env_steps"] >= 256 and r["wall_time_s"] > 0
        assert r["final_return"] is not None and 8 <= r["final_return"] <= 500  # CartPole's range
        assert r["config"] in ("lr=0.0003", "lr=0.001") and r["seed"] in (0, 1)
    with open(sweep / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert "lr=0.001: median final return" in out and "lr=0.0003,seed=1  finished" in out


def test_a_failing_trial_is_reported_and_the_other_finishes_then_resume(sweep_ray, tmp_path, capsys):
    # device cuda:7 passes the config checks (a GPU node may have it) and fails inside the trial,
    # when the learner is built on a node that has no such device.
    spec = {"name": "f", "seeds": 0, "grid": {"device": ["cpu", "cuda:7"]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    code = main(["sweep", str(path), *TINY, "--runs-root", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1, captured.out
    rows = {r["trial"]: r for r in json.loads((tmp_path / "f" / "summary.json").read_text())["trials"]}
    assert rows["device=cpu,seed=0"]["status"] == "finished"
    assert rows["device=cpu,seed=0"]["env_steps"] >= 256
    bad = rows["device=cuda_7,seed=0"]
    assert bad["status"] == "failed" and "cuda:7" in bad["error"], bad
    assert "1 of 2 trial(s) failed" in captured.err
    assert "device=cuda_7,seed=0 failed:" in captured.out

    # --resume restores Tune's state: the finished trial is not run again, the failed one is
    # retried with --retry-failed (and fails again, the same way).
    done = tmp_path / "f" / "device=cpu,seed=0" / "metrics.jsonl"
    before = done.read_text()
    code = main(["sweep", "--resume", str(tmp_path / "f"), "--retry-failed"])
    captured = capsys.readouterr()
    assert code == 1
    assert done.read_text() == before
    rows = {r["trial"]: r for r in json.loads((tmp_path / "f" / "summary.json").read_text())["trials"]}
    assert rows["device=cpu,seed=0"]["status"] == "finished"
    assert rows["device=cuda_7,seed=0"]["status"] == "failed"


def test_worker_group_places_its_workers_in_the_trial_placement_group(sweep_ray):
    pg = placement_group([{"CPU": 0.5}, {"CPU": 0.5}])
    ray.get(pg.ready(), timeout=120)

    @ray.remote(num_cpus=0.5)
    def trial():
        from tandem.cluster.group import RayWorkerGroup

        group = RayWorkerGroup(
            1, env_id="CartPole-v1", num_envs=1, algo="ppo", algo_config=PPOConfig(hidden=(8,)), seed=0
        )
        where = ray.get(
            group.actors[0].__ray_call__.remote(
                lambda self: ray.get_runtime_context().get_placement_group_id()
            )
        )
        out = (group.pg.id.hex(), where)
        group.shutdown()
        return out

    strategy = PlacementGroupSchedulingStrategy(
        pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True
    )
    group_pg, worker_pg = ray.get(trial.options(scheduling_strategy=strategy).remote(), timeout=300)
    assert group_pg == worker_pg == pg.id.hex()
    # The group's shutdown leaves the trial's placement group to its owner (Tune).
    assert placement_group_table(pg)["state"] == "CREATED"
    remove_placement_group(pg)
