"""tandem.dashboard.data on the fixture runs and on hand-made files with known numbers."""

from __future__ import annotations

import json
import os
import time

import pytest

from tandem.dashboard.data import (
    RunStore,
    discover_runs,
    effective_status,
    group_band,
    uses_bin_labels,
)
from tests.fixtures.runs.make_fixtures import RUNNING, copy_runs

PPO0 = "ppo-CartPole-v1-20250101-100000"
PPO1 = "ppo-CartPole-v1-20250101-100500"
PG = "pg-CartPole-v1-20250101-110000"
DQN0 = "dqn-CartPole-v1-20250101-120000"
DQN1 = "dqn-CartPole-v1-20250101-150000"
RLLIB = "ppo-CartPole-v1-20250101-130000"


def row(steps: int, returns: list[float], **kw) -> dict:
    out = {
        "env_steps": steps,
        "episodes": kw.pop("episodes", 0),
        "wall_time_s": steps / 100,
        "episode_return_mean": sum(returns) / len(returns) if returns else None,
        "episode_returns": returns,
        "grad_updates": steps // 10,
        "samples_trained": steps,
        "replay_ratio": 1.0,
        "env_steps_per_s": 100.0,
        "updates_per_s": 10.0,
        "workers": 1,
        "policy_lag": 0.0,
    }
    out.update(kw)
    return out


def write_run(d, rows, status="running", config=None, tail=""):
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(json.dumps(config or {"algo": "pg", "env_id": "CartPole-v1", "seed": 0}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    (d / "status.json").write_text(
        json.dumps({"status": status, "pid": os.getpid(), "updated": time.time(), "error": None})
    )
    return d


@pytest.fixture
def fixture_store(tmp_path):
    store = RunStore([copy_runs(tmp_path / "runs")])
    store.refresh()
    return store


def by_id(store):
    return {r["id"]: r for r in store.runs_json()["runs"]}


# ------------------------------------------------------------------ discovery and status


def test_discovers_parent_dirs_run_dirs_and_reports_bad_roots(tmp_path):
    root = copy_runs(tmp_path / "runs")
    (tmp_path / "empty").mkdir()
    runs, issues = discover_runs([root, root / PPO0, tmp_path / "nope", tmp_path / "empty"])
    assert len(runs) == 7  # PPO0 given twice is listed once
    messages = [(i.level, i.message) for i in issues]
    assert any(lvl == "error" and "nope" in m and "does not exist" in m for lvl, m in messages)
    assert any(lvl == "warning" and "empty" in m and "no runs found" in m for lvl, m in messages)
    nested, _ = discover_runs([tmp_path])  # runs/<run> found from the grandparent
    assert len(nested) == 7


def test_fixture_runs_summaries(fixture_store):
    runs = by_id(fixture_store)
    assert len(runs) == 7
    assert {r["status"] for r in runs.values()} == {"finished", "crashed", "running"}
    assert runs[RUNNING]["status"] == "running"
    assert runs[DQN1]["status"] == "crashed" and "6379" in runs[DQN1]["status_reason"]
    assert runs[RLLIB]["framework"] == "rllib" and runs[PPO0]["framework"] == "tandem"
    assert runs[PG]["on_policy"] is True and runs[DQN0]["on_policy"] is False
    assert runs[PPO0]["rows"] == 12 and runs[PG]["rows"] == 12  # pg: 13 lines, one malformed
    assert runs[PPO0]["env_steps"] == 24576 and runs[PPO0]["replay_ratio"] == 10.0
    # Seeds of one config share a group; the RLlib run (other framework) does not.
    assert runs[PPO0]["group"] == runs[PPO1]["group"] != runs[RLLIB]["group"]
    assert runs[DQN0]["group"] == runs[DQN1]["group"]
    assert runs[PPO0]["label"] == "ppo · tandem · seed 0"
    # The malformed line is reported with its file and line number, not raised.
    (issue,) = runs[PG]["issues"]
    assert issue["level"] == "error" and "metrics.jsonl line 4" in issue["message"]
    assert "not valid JSON" in issue["message"]
    # The running run's half-written last line is held back quietly.
    assert runs[RUNNING]["pending_line"] is True and runs[RUNNING]["issues"] == []
    json.dumps(fixture_store.runs_json(), allow_nan=False)


def test_dead_or_stale_running_run_shows_crashed(tmp_path):
    root = copy_runs(tmp_path / "runs", live=False)  # pid 999999: no such process
    store = RunStore([root])
    store.refresh()
    run = by_id(store)[RUNNING]
    assert run["status"] == "crashed" and "999999 is gone" in run["status_reason"]
    # Its truncated last line is now an error: the run will not finish it.
    assert any("truncated last line" in i["message"] for i in run["issues"])


def test_effective_status_rules():
    now = 1_000_000.0
    me = os.getpid()
    assert effective_status({"status": "finished"}, None, now) == ("finished", None)
    assert effective_status({"status": "crashed", "error": "boom"}, None, now) == ("crashed", "boom")
    assert (
        effective_status({"status": "running", "pid": me, "updated": now - 5}, now - 5, now)[0] == "running"
    )
    state, why = effective_status({"status": "running", "pid": me, "updated": now - 900}, now - 900, now, 300)
    assert state == "crashed" and "no update for 900 s" in why
    # Another host's pid cannot be checked here: only staleness counts.
    other = {"status": "running", "pid": 999999, "host": "elsewhere", "updated": now}
    assert effective_status(other, now, now)[0] == "running"
    assert effective_status(None, now - 1, now) == ("running", "no status.json yet")
    assert effective_status(None, now - 1000, now)[0] == "unknown"


# ------------------------------------------------------------------ incremental reading


def test_tail_reads_only_appended_rows_and_holds_back_partial_line(tmp_path):
    d = write_run(tmp_path / "pg-CartPole-v1-20250101-000000", [row(100, [10.0]), row(200, [20.0])])
    store = RunStore([tmp_path], rescan_s=0)
    store.refresh()
    rid = d.name
    assert store.metrics(rid)["next"] == 2
    with open(d / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row(300, [30.0]))[:25])  # half a line: being written
    store.refresh()
    assert store.metrics(rid)["next"] == 2 and by_id(store)[rid]["pending_line"]
    with open(d / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row(300, [30.0]))[25:] + "\n" + json.dumps(row(400, [40.0, 50.0])) + "\n")
    store.refresh()
    m = store.metrics(rid, since=2)
    assert m["since"] == 2 and m["next"] == 4
    assert m["cols"]["env_steps"] == [300, 400]
    assert m["points"] == {"row": [2, 3, 3], "frac": [1.0, 0.5, 1.0], "ret": [30.0, 40.0, 50.0]}
    assert by_id(store)[rid]["issues"] == []


def test_malformed_lines_are_reported_once_and_skipped(tmp_path):
    d = write_run(tmp_path / "pg-CartPole-v1-20250101-000000", [row(100, [1.0])])
    with open(d / "metrics.jsonl", "a") as f:
        f.write(
            "not json\n[1, 2]\n" + json.dumps({"episodes": 3}) + "\n" + json.dumps(row(200, [2.0])) + "\n"
        )
    store = RunStore([tmp_path])
    first = store.refresh()
    assert store.metrics(d.name)["next"] == 2
    msgs = [i.message for i in first if i.run == d.name]
    assert any("line 2: not valid JSON" in m for m in msgs)
    assert any("line 3: not a JSON object but list" in m for m in msgs)
    assert any("line 4: no numeric env_steps" in m for m in msgs)
    assert not [i for i in store.refresh() if i.run == d.name]  # printed once
    assert len(by_id(store)[d.name]["issues"]) == 3


def test_rewritten_file_restarts_with_new_generation(tmp_path):
    d = write_run(tmp_path / "pg-CartPole-v1-20250101-000000", [row(100, [1.0]), row(200, [2.0])])
    store = RunStore([tmp_path])
    store.refresh()
    (d / "metrics.jsonl").write_text(json.dumps(row(50, [5.0])) + "\n")
    store.refresh()
    m = store.metrics(d.name)
    assert m["gen"] == 1 and m["cols"]["env_steps"] == [50]


def test_non_finite_numbers_become_null(tmp_path):
    d = tmp_path / "pg-CartPole-v1-20250101-000000"
    write_run(d, [])
    (d / "metrics.jsonl").write_text('{"env_steps": 10, "policy_lag": NaN, "env_steps_per_s": Infinity}\n')
    store = RunStore([tmp_path])
    store.refresh()
    m = store.metrics(d.name)
    assert m["cols"]["policy_lag"] == [None] and m["cols"]["env_steps_per_s"] == [None]
    json.dumps(store.runs_json(), allow_nan=False)
    assert any("lack schema fields" in i["message"] for i in by_id(store)[d.name]["issues"])


# ------------------------------------------------------------------ derived numbers


def test_smoothed_return_is_a_causal_rolling_mean(tmp_path):
    rows = [row(100, [1.0, 2.0]), row(200, []), row(300, [3.0, 4.0, 5.0]), row(400, [10.0])]
    d = write_run(tmp_path / "pg-CartPole-v1-20250101-000000", rows)
    store = RunStore([tmp_path], smooth=3)
    store.refresh()
    cols = store.metrics(d.name)["cols"]
    assert cols["ret_smooth"] == [1.5, 1.5, 4.0, pytest.approx(19 / 3)]
    assert cols["ret_mean"] == [1.5, None, 4.0, 10.0]
    # best: the highest smoothed value once the window is full
    assert by_id(store)[d.name]["best_return"] == pytest.approx(19 / 3)


def test_rows_without_episode_list_use_the_mean_per_episode(tmp_path):
    rows = [
        row(100, [], episodes=2, episode_return_mean=10.0),
        row(200, [], episodes=4, episode_return_mean=20.0),
    ]
    d = write_run(tmp_path / "pg-CartPole-v1-20250101-000000", rows)
    store = RunStore([tmp_path], smooth=4)
    store.refresh()
    m = store.metrics(d.name)
    assert m["cols"]["ret_smooth"] == [10.0, 15.0] and m["points"]["ret"] == []


def test_reuse_distribution_on_policy_is_one_spike(fixture_store):
    runs = by_id(fixture_store)
    labels = uses_bin_labels()
    pg, ppo, rl = runs[PG]["reuse"], runs[PPO0]["reuse"], runs[RLLIB]["reuse"]
    assert pg["kind"] == ppo["kind"] == rl["kind"] == "derived"
    assert pg["fractions"][labels.index("1")] == 1.0 and sum(pg["fractions"]) == 1.0
    assert ppo["fractions"][labels.index("10")] == 1.0
    # fractional ratio 6.144: split between 6 and 7 so the mean stays exact
    assert rl["fractions"][labels.index("6")] == pytest.approx(0.856)
    assert rl["fractions"][labels.index("7")] == pytest.approx(0.144)


def test_reuse_distribution_from_replay_histograms(tmp_path, fixture_store):
    dqn = by_id(fixture_store)[DQN0]["reuse"]
    assert dqn["kind"] == "replay" and sum(dqn["fractions"]) == pytest.approx(1.0)
    assert sum(f > 0.01 for f in dqn["fractions"]) >= 8  # a spread, not a spike
    # Exact binning: uses 0..10 own columns, 11-15 one column, the last (>=) bin its own range.
    live = [0] * 41
    live[0], live[3], live[12], live[40] = 10, 20, 30, 40
    d = write_run(
        tmp_path / "runs" / "dqn-CartPole-v1-20250101-000000",
        [row(100, [1.0], **{"replay/uses_hist_live": live, "replay/uses_hist_evicted": [0, 0, 0, 100]})],
        config={"algo": "dqn", "env_id": "CartPole-v1"},
    )
    store = RunStore([d])
    store.refresh()
    r = by_id(store)[d.name]["reuse"]
    labels = uses_bin_labels()
    assert r["kind"] == "replay" and r["last_bin"] == 40
    want = {"0": 0.05, "3": 0.6, "11-15": 0.15, "32-63": 0.2}
    assert {labels[j]: f for j, f in enumerate(r["fractions"]) if f} == pytest.approx(want)


def test_group_band_median_and_min_max():
    a = ([0.0, 10.0], [0.0, 10.0])
    b = ([0.0, 10.0], [2.0, 12.0])
    c = ([0.0, 5.0], [4.0, 4.0])  # stops early (crashed)
    band = group_band([a, b, c], points=11)
    assert band["x"][0] == 0.0 and band["x"][-1] == 10.0  # 2 of 3 reach 10: at least half
    i5 = band["x"].index(5.0)
    assert band["median"][i5] == 5.0 and band["lo"][i5] == 4.0 and band["hi"][i5] == 7.0
    assert band["n"][i5] == 3 and band["n"][-1] == 2
    assert band["median"][-1] == 11.0
    assert group_band([a])["x"] == []  # one curve is not a group


def test_groups_api_on_fixtures(fixture_store):
    groups = fixture_store.groups("env_steps")
    members = sorted(tuple(sorted(g["members"])) for g in groups.values())
    assert members == [(DQN0, DQN1), (PPO0, PPO1)]
    dqn = next(g for g in groups.values() if DQN0 in g["members"])
    # the crashed seed stops at 14k: with two seeds, the median needs both
    assert dqn["x"][-1] == pytest.approx(14000)
    assert all(lo <= m <= hi for lo, m, hi in zip(dqn["lo"], dqn["median"], dqn["hi"], strict=True))
    only_one = fixture_store.groups("wall_time_s", ids=[PPO0, DQN0])
    assert only_one == {}
    with pytest.raises(ValueError, match="unknown x axis"):
        fixture_store.groups("episodes")


def test_group_labels_name_what_differs(tmp_path):
    base = {"algo": "ppo", "env_id": "CartPole-v1", "framework": "tandem", "seed": 0}
    for i, w in enumerate((1, 4)):
        write_run(
            tmp_path / f"ppo-CartPole-v1-20250101-00000{i}",
            [row(100, [1.0])],
            config={**base, "workers": w, "algo_config": {"epochs": 10}},
        )
    store = RunStore([tmp_path])
    store.refresh()
    runs = store.runs_json()["runs"]
    assert runs[0]["group"] != runs[1]["group"]
    assert sorted(r["group_label"].split(" (")[1][:2] for r in runs) == ["w1", "w4"]


def test_snapshot_holds_everything_the_report_needs(fixture_store):
    snap = fixture_store.snapshot()
    assert set(snap["metrics"]) == set(snap["configs"]) == {r["id"] for r in snap["runs"]}
    assert set(snap["groups"]) == {"env_steps", "wall_time_s", "grad_updates"}
    assert "algo: ppo" in snap["configs"][PPO0]
    json.dumps(snap, allow_nan=False)


# ------------------------------------------------------------------ on- or off-policy


@pytest.mark.parametrize(
    ("config", "extra", "expected"),
    [
        # config.yaml's on_policy wins over anything the rows suggest
        ({"algo": "qlearn", "on_policy": True}, {"replay_size": 100}, True),
        ({"algo": "ppo", "on_policy": False}, {}, False),
        # old runs (no key): the metrics decide, whatever the algorithm is called
        ({"algo": "ppo"}, {"replay_size": 100}, False),
        ({"algo": "my-new-algo"}, {"replay/size": 100}, False),
        ({"algo": "dqn"}, {}, True),
        ({"algo": "dqn", "framework": "rllib"}, {}, None),
    ],
)
def test_on_policy_from_config_yaml_then_metrics(tmp_path, config, extra, expected):
    d = write_run(tmp_path / "runs" / "r", [row(100, [1.0], **extra)], config={"env_id": "E", **config})
    store = RunStore([d])
    store.refresh()
    assert by_id(store)["r"]["on_policy"] is expected


def test_on_policy_unknown_before_the_first_row(tmp_path):
    d = write_run(tmp_path / "runs" / "r", [], config={"algo": "ppo", "env_id": "E"})
    store = RunStore([d])
    store.refresh()
    assert by_id(store)["r"]["on_policy"] is None


def test_model_samples_are_served_apart_from_the_replay_ratio(tmp_path):
    """A Dyna-style run's samples_model becomes its own per-env-step ratio (the reuse panel's
    'model samples' bar); model-free runs have none."""
    cfg = {"algo": "dynaq", "env_id": "FrozenLake-v1", "seed": 0, "on_policy": False}
    dyna = write_run(
        tmp_path / "dynaq-FrozenLake-v1-20250101-000000",
        [row(100, [0.0], samples_model=500), row(200, [1.0], samples_model=3000)],
        config=cfg,
    )
    plain = write_run(tmp_path / "pg-CartPole-v1-20250101-000000", [row(100, [1.0])])
    store = RunStore([tmp_path])
    store.refresh()
    runs = by_id(store)
    assert runs[dyna.name]["model_ratio"] == 15.0 and runs[dyna.name]["replay_ratio"] == 1.0
    assert runs[plain.name]["model_ratio"] is None
    assert store.metrics(dyna.name)["cols"]["model_ratio"] == [5.0, 15.0]
    assert not any("lack schema fields" in i["message"] for i in runs[plain.name]["issues"])


def test_exploration_bonus_is_served_apart_from_the_returns(tmp_path):
    """``stats/bonus_mean`` (what the learner added to sampled rewards) becomes its own column; the
    return columns stay the env's own, and runs without the bonus serve None."""
    cfg = {"algo": "dqn", "env_id": "MountainCar-v0", "seed": 0, "on_policy": False}
    bonus = write_run(
        tmp_path / "dqn-MountainCar-v0-20250101-000000",
        [row(100, [-200.0], **{"stats/bonus_mean": 0.08}), row(200, [-150.0], **{"stats/bonus_mean": 0.05})],
        config=cfg,
    )
    plain = write_run(tmp_path / "pg-CartPole-v1-20250101-000000", [row(100, [1.0])])
    store = RunStore([tmp_path])
    store.refresh()
    cols = store.metrics(bonus.name)["cols"]
    assert cols["bonus_mean"] == [0.08, 0.05]
    assert cols["ret_mean"] == [-200.0, -150.0]
    assert store.metrics(plain.name)["cols"]["bonus_mean"] == [None]
