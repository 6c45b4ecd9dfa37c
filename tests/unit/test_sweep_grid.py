"""The Ray-free half of ``tandem sweep``: seeds, grid, sweep file, trial expansion, summary."""

import json

import pytest

from tandem.cli import main
from tandem.runner.sweep import (
    SweepError,
    SweepSpec,
    build_spec,
    expand,
    final_metrics,
    format_table,
    load_sweep_file,
    median,
    parse_grid,
    parse_seeds,
    read_spec,
    summary_rows,
    trial_overrides,
    write_spec,
    write_summary,
)


@pytest.mark.parametrize(
    "text, seeds",
    [("0:5", [0, 1, 2, 3, 4]), ("3:5", [3, 4]), ("0,3,7", [0, 3, 7]), (3, [3]), ([1, 2], [1, 2]), ("4", [4])],
)
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "text, match",
    [
        ("5:0", "select no seed"),
        ("a:b", "START:END"),
        ("0,0", "twice"),
        (True, "START:END"),
        ("-2:1", ">= 0"),
    ],
)
def test_parse_seeds_rejects(text, match):
    with pytest.raises(SweepError, match=match):
        parse_seeds(text)


def test_parse_grid_reads_yaml_lists_and_scalars():
    assert parse_grid(["lr=[3e-4,1e-3]", "epochs=4", "hidden=[[64,64],[32]]"]) == {
        "lr": [3e-4, 1e-3],
        "epochs": [4],
        "hidden": [[64, 64], [32]],
    }
    with pytest.raises(SweepError, match="--seeds"):
        parse_grid(["seed=[1,2]"])
    with pytest.raises(SweepError, match="no values"):
        parse_grid(["lr=[]"])


def test_expand_is_grid_times_seeds_in_a_stable_order():
    spec = SweepSpec("ppo", "CartPole-v1", seeds=[0, 1], grid={"lr": [3e-4, 1e-3], "epochs": [4]})
    trials = expand(spec)
    assert [t.name for t in trials] == [
        "lr=0.0003,epochs=4,seed=0",
        "lr=0.0003,epochs=4,seed=1",
        "lr=0.001,epochs=4,seed=0",
        "lr=0.001,epochs=4,seed=1",
    ]
    assert trials[2].params == {"lr": 1e-3, "epochs": 4} and trials[2].seed == 0
    # No grid: one trial per seed.
    assert [t.name for t in expand(SweepSpec("ppo", "CartPole-v1", seeds=[2, 5]))] == ["seed=2", "seed=5"]


def test_expand_keeps_names_unique_and_filesystem_safe():
    spec = SweepSpec("ppo", "x", grid={"hidden": [[64, 64], [64, 64]], "device": ["cuda:0"]})
    names = [t.name for t in expand(spec)]
    assert names == ["hidden=_64_64_,device=cuda_0,seed=0", "hidden=_64_64_,device=cuda_0,seed=0~2"]
    assert all("/" not in n and ":" not in n for n in names)


def test_trial_overrides_merge_fixed_swept_seed_and_run_dir(tmp_path):
    spec = SweepSpec("ppo", "CartPole-v1", seeds=[3], grid={"lr": [0.1]}, overrides={"total_steps": 500})
    (trial,) = expand(spec)
    assert trial_overrides(spec, trial, tmp_path / trial.name) == {
        "total_steps": 500,
        "lr": 0.1,
        "seed": 3,
        "run_dir": str(tmp_path / trial.name),
        "replay_name": f"{tmp_path.name}/lr=0.1,seed=3",
    }
    # A replay_name the user gave is kept (trials then share that buffer on purpose).
    spec.overrides["replay_name"] = "shared"
    assert trial_overrides(spec, trial, tmp_path / trial.name)["replay_name"] == "shared"


def test_build_spec_flags_override_the_file_and_merge_grid_and_set():
    file_data = {
        "algo": "ppo",
        "env": "CartPole-v1",
        "seeds": "0:2",
        "grid": {"lr": [1, 2]},
        "set": {"epochs": 2},
    }
    spec = build_spec(
        file_data, env="Acrobot-v1", grid={"clip_eps": [0.1]}, overrides={"total_steps": 9}, seeds=None
    )
    assert spec.env == "Acrobot-v1" and spec.seeds == [0, 1]
    assert spec.grid == {"lr": [1, 2], "clip_eps": [0.1]}
    assert spec.overrides == {"epochs": 2, "total_steps": 9}
    # A key both swept and fixed is ambiguous.
    with pytest.raises(SweepError, match="both swept"):
        build_spec(file_data, grid={"epochs": [3]})
    spec = build_spec({**file_data, "set": {}}, grid={"epochs": [3]}, overrides={"total_steps": 9})
    assert spec.grid == {"lr": [1, 2], "epochs": [3]} and spec.overrides == {"total_steps": 9}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"env": None}, "needs --algo and --env"),
        ({"overrides": {"seed": 1}}, "--seeds"),
        ({"overrides": {"run_dir": "x"}}, "drop run_dir"),
        ({"name": "../evil"}, "names a directory"),
        ({"worker_cpus": 0}, "positive number of CPUs"),
        ({"max_concurrent": -1}, ">= 0"),
    ],
)
def test_build_spec_rejects(kw, match):
    with pytest.raises(SweepError, match=match):
        build_spec(None, **{"algo": "ppo", "env": "CartPole-v1", **kw})


def test_sweep_file_top_level_run_keys_join_set(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("algo: ppo\nenv: CartPole-v1\nseeds: [0, 1]\ngrid: {lr: [0.1, 0.2]}\nstop_return: 400\n")
    data = load_sweep_file(p)
    assert data["set"] == {"stop_return": 400} and "stop_return" not in data
    p.write_text("algo: ppo\ngrid: [1, 2]\n")
    with pytest.raises(SweepError, match="grid must be a mapping"):
        load_sweep_file(p)
    with pytest.raises(SweepError, match="does not exist"):
        load_sweep_file(tmp_path / "nope.yaml")


def test_spec_round_trips_through_the_sweep_directory(tmp_path):
    spec = SweepSpec("ppo", "CartPole-v1", name="s", seeds=[0, 1], grid={"lr": [0.1]}, worker_cpus=0.5)
    write_spec(tmp_path, spec, expand(spec))
    assert read_spec(tmp_path) == (spec, expand(spec))
    with pytest.raises(SweepError, match="not a sweep directory"):
        read_spec(tmp_path / "other")


def _run(path, rows, status="finished", error=None):
    path.mkdir(parents=True)
    (path / "status.json").write_text(json.dumps({"status": status, "error": error}))
    with open(path / "metrics.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
        f.write('{"env_steps": 99')  # a torn last line of a killed writer is skipped


def test_final_metrics_is_the_trailing_mean_of_the_last_window_returns(tmp_path):
    _run(
        tmp_path / "r",
        [
            {"env_steps": 10, "wall_time_s": 1.0, "episode_returns": [100.0, 1.0]},
            {"env_steps": 20, "wall_time_s": 2.5, "episode_returns": [2.0, 3.0]},
        ],
    )
    m = final_metrics(tmp_path / "r", window=3)
    assert m == {
        "status": "finished",
        "error": None,
        "env_steps": 20,
        "wall_time_s": 2.5,
        "final_return": 2.0,
    }
    assert final_metrics(tmp_path / "missing")["status"] == "missing"


def test_summary_marks_engine_errors_and_crashes_failed_and_the_table_shows_medians(tmp_path):
    spec = SweepSpec("ppo", "x", seeds=[0, 1, 2], grid={"lr": [0.1]})
    trials = expand(spec)
    _run(tmp_path / trials[0].name, [{"env_steps": 8, "wall_time_s": 1.0, "episode_returns": [10.0]}])
    _run(tmp_path / trials[1].name, [{"env_steps": 8, "wall_time_s": 1.0, "episode_returns": [30.0]}])
    _run(tmp_path / trials[2].name, [], status="crashed", error="ValueError: boom\ntraceback")
    rows = summary_rows(tmp_path, trials, {}, window=100)
    assert [r["status"] for r in rows] == ["finished", "finished", "failed"]
    assert rows[2]["error"] == "ValueError: boom"
    # A trial the engine saw fail before its run directory existed.
    _run(tmp_path / "x" / trials[0].name, [], status="running")
    assert summary_rows(tmp_path / "x", trials[:1], {}, 100)[0]["status"] == "interrupted"
    rows2 = summary_rows(tmp_path / "none", trials[:1], {trials[0].name: "DeviceError: no cuda:7"}, 100)
    assert rows2[0]["status"] == "failed" and rows2[0]["final_return"] is None
    js, cs = write_summary(tmp_path, rows)
    assert json.loads(js.read_text())["trials"] == rows
    assert (
        cs.read_text().splitlines()[0] == "trial,config,seed,status,final_return,env_steps,wall_time_s,error"
    )
    table = format_table(rows)
    assert "lr=0.1: median final return 20.00 over 2 finished seed(s)" in table
    assert "lr=0.1,seed=2 failed: ValueError: boom" in table


def test_median():
    assert median([3.0, 1.0, 2.0]) == 2.0 and median([4.0, 1.0]) == 2.5


def test_cli_checks_every_trial_config_before_ray_starts(tmp_path, capsys):
    code = main(
        [
            "sweep",
            "--algo",
            "ppo",
            "--env",
            "CartPole-v1",
            "--grid",
            "lr=[0.1,-1]",
            "--runs-root",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "lr=-1.0: must be > 0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written, nothing started


def test_cli_refuses_a_learner_actor_in_a_sweep_before_ray_starts(tmp_path, capsys):
    """A trial's placement group holds its driver (with the learner) and its workers; a learner
    actor would find no bundle, so the sweep says so instead of failing every trial."""
    argv = ["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--set", "learner=actor"]
    assert main([*argv, "--runs-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "a sweep trial's learner runs in its driver" in err and "drop learner=actor" in err
    assert "Traceback" not in err and not any(tmp_path.iterdir())


def test_cli_refuses_an_existing_sweep_and_resume_with_new_flags(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text("{}")
    args = ["sweep", "--algo", "ppo", "--env", "CartPole-v1", "--name", "s", "--runs-root", str(tmp_path)]
    assert main(args) == 2
    assert "already holds a sweep: pass --resume" in capsys.readouterr().err
    assert main(["sweep", "--resume", str(tmp_path / "s"), "--algo", "ppo"]) == 2
    assert "drop algo" in capsys.readouterr().err


def test_dashboard_groups_a_sweeps_trials_by_their_grid_values(tmp_path):
    from tandem.dashboard.data import RunStore

    spec = SweepSpec("ppo", "CartPole-v1", name="s", seeds=[0, 1], grid={"lr": [0.001, 0.01]})
    trials = expand(spec)
    sweep = tmp_path / "runs" / "s"
    write_spec(sweep, spec, trials)

    def run(d, seed, lr, rets):
        d.mkdir(parents=True)
        cfg = {"algo": "ppo", "env_id": "CartPole-v1", "seed": seed, "workers": 1, "algo_config": {"lr": lr}}
        (d / "config.yaml").write_text(json.dumps(cfg))
        rows = [
            {"env_steps": 100 * (i + 1), "episodes": i + 1, "wall_time_s": i + 1.0, "episode_returns": [r]}
            for i, r in enumerate(rets)
        ]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "status.json").write_text(json.dumps({"status": "finished"}))

    for t in trials:
        run(sweep / t.name, t.seed, t.params["lr"], [10.0 + t.seed, 20.0 + t.seed])
    run(tmp_path / "runs" / "outside", 0, 0.001, [5.0, 6.0])  # same config as a sweep group, not in it
    store = RunStore([tmp_path / "runs"])
    store.refresh()
    runs = {r["name"]: r for r in store.runs_json()["runs"]}
    assert runs["lr=0.001,seed=1"]["label"] == "ppo · s · lr=0.001 · seed 1"
    assert runs["lr=0.001,seed=1"]["sweep"] == "s" and runs["outside"]["sweep"] is None
    assert runs["outside"]["group"] != runs["lr=0.001,seed=0"]["group"]
    groups = store.groups("env_steps")
    assert len(groups) == 2  # one per grid point, each the median of its two seeds
    for g in groups.values():
        names = {store.runs[i].path.name for i in g["members"]}
        assert len(names) == 2 and len({n.split(",")[0] for n in names}) == 1
    # A damaged sweep.json leaves the trials as plain runs (grouped by config as before).
    (sweep / "sweep.json").write_text("{not json")
    store = RunStore([tmp_path / "runs"])
    store.refresh()
    assert all(r["sweep"] is None for r in store.runs_json()["runs"])
