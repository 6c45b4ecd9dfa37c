"""Config resolution and the one-line errors for bad input (no Ray needed)."""

import pytest

from tandem.core.errors import TandemError
from tandem.runner.config import parse_set
from tandem.runner.session import resolve_config


def test_defaults_preset_and_overrides_in_order():
    run, cfg, spec = resolve_config("ppo", "Pendulum-v1", {"lr": 1e-3, "workers": 3})
    assert spec.name == "ppo" and run.workers == 3
    assert cfg.lr == 1e-3  # --set beats the continuous preset
    assert cfg.fragment_length == 256  # from the preset for Box actions


def test_set_values_are_parsed_and_typed():
    run, cfg, _ = resolve_config(
        "pg", "CartPole-v1", parse_set(["hidden=[32,32]", "baseline=false", "gamma=0.9"])
    )
    assert cfg.hidden == (32, 32) and cfg.baseline is False and cfg.gamma == 0.9


@pytest.mark.parametrize(
    "algo, env, overrides, match",
    [
        ("ppo", "CartPol-v1", {}, "unknown env id 'CartPol-v1': did you mean CartPole-v1"),
        ("nope", "CartPole-v1", {}, "unknown algorithm 'nope'"),
        ("ppo", "CartPole-v1", {"learning_rate": 1}, "unknown --set key 'learning_rate'"),
        ("ppo", "CartPole-v1", {"epochs": "many"}, "expected int"),
        ("sac", "Pendulum-v1", {"return_window": 0}, "return_window=0: must be at least 1"),
        ("pg", "CartPole-v1", {"return_type": "x"}, "choose one of"),
        ("ppo", "CartPole-v1", {"workers": 0}, "at least 1"),
    ],
)
def test_bad_input_gets_one_line_errors(algo, env, overrides, match):
    with pytest.raises((TandemError, ValueError), match=match) as e:
        resolve_config(algo, env, overrides)
    assert "\n" not in str(e.value)


def test_set_needs_key_value():
    with pytest.raises(TandemError, match="expected key=value"):
        parse_set(["lr"])


def test_config_yaml_never_holds_a_redis_password():
    from tandem.runner.config import to_yaml_dict

    run, cfg, _ = resolve_config("qlearn", "FrozenLake-v1", {"replay": "redis://:s3cret@db:6379/0"})
    assert "s3cret" not in str(to_yaml_dict(run, cfg))
    assert run.replay == "redis://:s3cret@db:6379/0"  # the live config keeps it


def test_tuned_budget_is_a_default_the_user_can_override():
    assert resolve_config("ppo", "CartPole-v1", {})[0].total_steps == 50_000
    assert resolve_config("ppo", "CartPole-v1", {"total_steps": 123})[0].total_steps == 123
    assert resolve_config("ppo", "Acrobot-v1", {})[0].total_steps == 100_000


def test_stop_return_uses_the_trailing_return_window():
    from types import SimpleNamespace

    from tandem.runner.progress import Reporter
    from tandem.runner.rundir import Counters
    from tandem.runner.session import Session

    run, _, _ = resolve_config("sac", "Pendulum-v1", {"return_window": 3, "stop_return": -200.0})
    counters = Counters()
    rep = Reporter(counters, run.total_steps, "t", quiet=True, window=run.return_window)
    session = SimpleNamespace(run_cfg=run, counters=counters)

    def fragment(worker, returns):
        Session.record_fragment(session, rep, worker, 10, returns, 0)

    fragment(0, [-900.0, -150.0])
    assert not Session.should_stop(session), "two episodes do not fill a window of three"
    fragment(0, [-150.0])
    assert not Session.should_stop(session), "mean(-900, -150, -150) = -400 is below -200"
    fragment(1, [-100.0])
    assert counters.recent_returns == [-150.0, -150.0, -100.0]
    assert (counters.env_steps, counters.episodes) == (30, 4)
    assert Session.should_stop(session)


@pytest.mark.parametrize(
    ("algo", "on_policy"), [("ppo", True), ("pg", True), ("dqn", False), ("qlearn", False)]
)
def test_config_yaml_records_whether_the_algorithm_is_on_policy(algo, on_policy):
    from tandem.learners.registry import get_algo
    from tandem.runner.config import RunConfig, to_yaml_dict

    spec = get_algo(algo)
    d = to_yaml_dict(RunConfig(algo=algo), spec.config_cls())
    assert d["on_policy"] is on_policy


OFF_POLICY_ENVS = {"qlearn": "FrozenLake-v1", "qeval": "FrozenLake-v1", "dqn": "CartPole-v1"}
OFF_POLICY_ENVS |= {"sac": "Pendulum-v1", "td3": "Pendulum-v1"}


@pytest.mark.parametrize("algo", sorted(OFF_POLICY_ENVS))
def test_shared_off_policy_fields_take_set_and_survive_config_yaml(tmp_path, algo):
    """The fields inherited from learners.config.OffPolicyConfig are ordinary fields of each
    algorithm's config: --set writes them and config.yaml gives them back."""
    import dataclasses

    import yaml

    from tandem.learners.config import OffPolicyConfig
    from tandem.runner.config import to_yaml_dict
    from tandem.runner.session import load_run_config

    shared = {f.name for f in dataclasses.fields(OffPolicyConfig)}
    sets = ["fragment_length=3", "batch_size=7", "replay_capacity=999", "min_size=11"]
    sets += ["samples_per_insert=5", "weights_publish_interval=13"]
    run, cfg, spec = resolve_config(algo, OFF_POLICY_ENVS[algo], parse_set(sets))
    assert isinstance(cfg, OffPolicyConfig) and {s.split("=")[0] for s in sets} == shared
    assert (cfg.fragment_length, cfg.batch_size, cfg.replay_capacity) == (3, 7, 999)
    assert (cfg.min_size, cfg.samples_per_insert, cfg.weights_publish_interval) == (11, 5.0, 13)
    assert type(cfg.samples_per_insert) is float
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(to_yaml_dict(run, cfg), sort_keys=False))
    _, loaded, loaded_spec = load_run_config(tmp_path)
    assert loaded_spec.name == algo and loaded == cfg


def test_algorithm_defaults_of_the_shared_fields():
    from tandem.learners.dqn import DQNConfig
    from tandem.learners.sac import SACConfig
    from tandem.learners.tabular import QLearnConfig

    keys = ("fragment_length", "batch_size", "replay_capacity", "min_size", "samples_per_insert")
    assert [getattr(DQNConfig(), k) for k in keys] == [16, 64, 100_000, 1_000, 64.0]
    assert [getattr(SACConfig(), k) for k in keys] == [8, 256, 300_000, 5_000, 256.0]
    assert [getattr(QLearnConfig(), k) for k in keys] == [16, 256, 200_000, 1_000, 64.0]
    assert DQNConfig().prioritized and not SACConfig().prioritized


def test_a_class_keyword_must_name_an_inherited_field():
    from dataclasses import dataclass

    from tandem.learners.config import OffPolicyConfig

    with pytest.raises(TypeError, match="batch_sise"):

        @dataclass
        class Typo(OffPolicyConfig, batch_sise=3):
            pass


def test_a_runs_config_yaml_can_be_passed_back_as_config(tmp_path):
    import yaml

    from tandem.runner.config import load_yaml, to_yaml_dict

    run, cfg, _ = resolve_config("dqn", "CartPole-v1", {"batch_size": 32, "workers": 3})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(to_yaml_dict(run, cfg), sort_keys=False))
    run2, cfg2, _ = resolve_config("dqn", "CartPole-v1", None, load_yaml(tmp_path / "c.yaml"))
    assert cfg2 == cfg and run2.workers == 3


def test_reporter_reads_the_counters_and_never_changes_them():
    from dataclasses import asdict

    from tandem.runner.progress import Reporter
    from tandem.runner.rundir import Counters

    counters = Counters(env_steps=100, episodes=3, grad_updates=7, samples_trained=700)
    before = asdict(counters)
    rep = Reporter(counters, 1000, "t", quiet=True, window=5)
    rep.collected(0, 10, [1.0, 2.0], 1)
    row = rep.row(1, {})
    assert asdict(counters) == before
    assert row["env_steps"] == 100 and row["episode_returns"] == [1.0, 2.0] and row["policy_lag"] == 1.0


@pytest.mark.parametrize(
    "algo, sets, match",
    [
        ("ppo", ["lr=-1"], "--set lr=-1.0: must be > 0"),
        ("ppo", ["checkpoint_every=0"], "checkpoint_every=0: must be at least 1"),
        ("ppo", ["fragment_length=0"], "fragment_length=0: must be at least 1"),
        ("ppo", ["gamma=5"], r"gamma=5.0: must be in \[0, 1\]"),
        ("dqn", ["batch_size=0"], "batch_size=0: must be at least 1"),
        ("sac", ["tau=1.5"], r"tau=1.5: must be in \[0, 1\]"),
        ("dqn", ["priority_beta=2"], r"priority_beta=2.0: must be in \[0, 1\]"),
        ("dqn", ["priority_alpha=-0.5"], "priority_alpha=-0.5: must be >= 0"),
        ("ppo", ["stop_return=.nan"], "stop_return=nan: must be a finite number"),
        ("ppo", ["init_log_std=.inf"], "must be a finite number"),  # unlisted float: finite only
        ("ppo", ["hidden=[64,0]"], "hidden=0: must be at least 1"),
        ("ppo", ["hidden=[a]"], "expected a list of whole numbers"),
        ("ppo", ["workers=.inf"], "expected int"),
        ("ppo", ["epochs=2.5"], "expected int"),
        ("ppo", ["seed=-1"], "seed=-1: must be >= 0"),
        ("dqn", ["replay=foo"], "--set replay='foo': expected memory, redis://"),
        ("dqn", ["replay=http://db:6379"], "expected memory"),
    ],
)
def test_values_out_of_range_are_refused_before_anything_starts(algo, sets, match):
    with pytest.raises(TandemError, match=match) as e:
        resolve_config(algo, "Pendulum-v1" if algo == "sac" else "CartPole-v1", parse_set(sets))
    assert "\n" not in str(e.value)


def test_valid_edges_and_replay_forms_are_accepted():
    for replay in ("memory", "redis://db:6379/0", "rediss://:pw@db:6380/1", "unix:///tmp/r.sock"):
        assert resolve_config("qlearn", "FrozenLake-v1", {"replay": replay})[0].replay == replay
    _, cfg, _ = resolve_config("ppo", "CartPole-v1", parse_set(["gamma=1", "entropy_coef=0", "lr=1e-9"]))
    assert (cfg.gamma, cfg.entropy_coef) == (1.0, 0.0)


def test_a_huge_value_keeps_the_error_one_short_line():
    with pytest.raises(TandemError) as e:
        resolve_config("ppo", "CartPole-v1", parse_set(["seed=" + "9" * 5000]))
    assert len(str(e.value)) < 200


def test_config_file_that_is_not_utf8_is_one_line(tmp_path):
    from tandem.runner.config import load_yaml

    bad = tmp_path / "c.yaml"
    bad.write_bytes(b"lr: 0.1\ncomment: \xff\xfe latin\n")
    with pytest.raises(TandemError, match="is not UTF-8 text"):
        load_yaml(bad)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "is empty"),
        ("algo: ppo\nenv_id: Cart", None),  # truncated mid-value but parseable: accepted as written
        ("env_id: CartPole-v1\nworkers: 2\n", "has no algo"),
        ("algo: ppo\n", "has no env_id"),
        ("algo: ppo\nenv_id: CartPole-v1\nalgo_config: [1, 2]\n", "algo_config is not a mapping"),
        ("algo: ppo\nenv_id: CartPole-v1\nalgo_config: {lr: 0.1\n", "is not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_run_config_yaml_damage_is_one_line(tmp_path, text, match):
    from tandem.runner.session import load_run_config

    (tmp_path / "config.yaml").write_text(text)
    if match is None:
        assert load_run_config(tmp_path)[0].env_id == "Cart"
        return
    with pytest.raises(TandemError, match=match) as e:
        load_run_config(tmp_path)
    assert "\n" not in str(e.value)


def test_every_numeric_field_has_a_rule_or_is_a_free_float():
    """A new int field must be given a range in FIELD_RULES (a float without one must still be
    finite); this lists the ones that were forgotten."""
    import dataclasses
    import typing

    from tandem.learners.registry import ALGORITHMS, get_algo
    from tandem.runner.config import FIELD_RULES, RunConfig

    missing = set()
    for cls in [RunConfig] + [get_algo(a).config_cls for a in ALGORITHMS]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = str(hints[f.name])
            if ("int" in tp and "bool" not in tp) and f.name not in FIELD_RULES:
                missing.add(f"{cls.__name__}.{f.name}")
    assert not missing, f"no range for {sorted(missing)}: add them to FIELD_RULES"
