"""User mistakes on the train/eval command line: one line on stderr, exit 2, and nothing
started (no Ray, no run directory). Plus a property-based fuzz of ``--set`` parsing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.cli import main
from tandem.core.errors import TandemError
from tandem.learners.registry import ALGORITHMS, get_algo
from tandem.runner.config import RunConfig, parse_set, split_overrides
from tests.faults.summary import record


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if anything reaches Ray start-up (the point is to stop before it)."""
    import tandem.cluster.group as group

    def refuse(*a, **k):
        raise AssertionError("init_ray was called: the mistake was caught too late")

    monkeypatch.setattr(group, "init_ray", refuse)


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len([ln for ln in lines if ln.startswith("tandem: error")]) == 1, err
    return next(ln for ln in lines if ln.startswith("tandem: error"))


TRAIN = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--total-steps", "100"]
DQN = ["train", "--algo", "dqn", "--env", "CartPole-v1", "--total-steps", "100"]


@pytest.mark.parametrize(
    "case, argv, message",
    [
        ("set_lr_negative", [*TRAIN, "--set", "lr=-1"], "lr=-1.0: must be > 0"),
        ("set_checkpoint_every_0", [*TRAIN, "--set", "checkpoint_every=0"], "checkpoint_every=0"),
        ("set_fragment_length_0", [*TRAIN, "--set", "fragment_length=0"], "fragment_length=0"),
        ("set_gamma_5", [*TRAIN, "--set", "gamma=5"], "gamma=5.0: must be in [0, 1]"),
        ("stop_return_nan", [*TRAIN, "--stop-return", "nan"], "stop_return=nan: must be a finite number"),
        ("replay_foo", [*DQN, "--replay", "foo"], "replay='foo': expected memory"),
        ("set_batch_size_0", [*DQN, "--set", "batch_size=0"], "batch_size=0: must be at least 1"),
        ("workers_0", [*TRAIN, "--workers", "0"], "workers=0: must be at least 1"),
    ],
)
def test_bad_values_stop_before_ray_and_leave_no_run_dir(tmp_path, capsys, no_ray, case, argv, message):
    run_dir = tmp_path / "run"
    line = one_line_error(capsys, [*argv, "--run-dir", str(run_dir)])
    assert message in line
    assert not run_dir.exists()
    record(f"cli_{case}", exit_code=2, error=line, run_dir_left=run_dir.exists())


def test_existing_run_dir_is_refused_before_ray(tmp_path, capsys, no_ray):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("algo: ppo\nenv_id: CartPole-v1\n")
    (run_dir / "metrics.jsonl").write_text('{"env_steps": 1}\n')
    before = sorted(p.name for p in run_dir.iterdir())
    line = one_line_error(capsys, [*TRAIN, "--run-dir", str(run_dir)])
    assert "already holds a run" in line and f"--resume {run_dir}" in line
    assert sorted(p.name for p in run_dir.iterdir()) == before
    record("cli_existing_run_dir", exit_code=2, error=line)


def test_non_utf8_config_file(tmp_path, capsys, no_ray):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes("lr: 0.001\nnote: caf\u00e9\n".encode("latin-1"))
    line = one_line_error(capsys, [*TRAIN, "--config", str(cfg)])
    assert "is not UTF-8 text" in line
    record("cli_config_not_utf8", exit_code=2, error=line)


@pytest.mark.parametrize(
    "case, text, message",
    [
        ("empty", "", "is empty"),
        ("truncated", "algo: ppo\nenv_id: CartPole-v1\nalgo_config:\n  lr: [0.1,\n", "is not valid YAML"),
        ("no_algo", "env_id: CartPole-v1\nworkers: 1\n", "has no algo"),
        ("not_utf8", b"algo: ppo\nenv_id: caf\xe9\n", "is not UTF-8 text"),
    ],
)
@pytest.mark.parametrize("command", ["resume", "eval"])
def test_damaged_run_config_yaml(tmp_path, capsys, no_ray, case, text, message, command):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    path = run_dir / "config.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    argv = ["train", "--resume", str(run_dir)] if command == "resume" else ["eval", str(run_dir)]
    line = one_line_error(capsys, argv)
    assert message in line
    record(f"cli_{command}_config_{case}", exit_code=2, error=line)


# ------------------------------------------------------------------ fuzz of --set

keys = st.sampled_from(
    sorted(
        {f.name for f in dataclasses.fields(RunConfig)}
        | {f.name for name in ALGORITHMS for f in dataclasses.fields(get_algo(name).config_cls)}
    )
) | st.text(max_size=10)
raw_values = (
    st.text(max_size=30)
    | st.sampled_from(
        ["-1", "0", "1e999", ".nan", "-.inf", "[1, a]", "{a: 1}", "[[1]]", "true", "~", "9" * 5000]
    )
    | st.sampled_from(["[" * 200, "{" * 200, "&a [*a]", "!!python/object:os.system x"])
    | st.floats(allow_nan=True).map(repr)
    | st.integers().map(str)
)


@settings(max_examples=300, deadline=None)
@given(algo=st.sampled_from(sorted(ALGORITHMS)), pairs=st.lists(st.tuples(keys, raw_values), max_size=4))
def test_fuzz_set_parsing_fails_only_with_one_line_tandem_errors(algo, pairs):
    """Property: any ``--set key=value`` list either applies cleanly, leaving every numeric
    field finite, or raises TandemError with a one-line message; never another exception."""
    items = [f"{k}={v}" for k, v in pairs]
    run, cfg = RunConfig(), get_algo(algo).config_cls()
    try:
        split_overrides(run, cfg, parse_set(items), "--set")
    except TandemError as e:
        assert "\n" not in str(e) and len(str(e)) < 2000
        return
    for obj in (run, cfg):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if isinstance(v, float):
                assert v == v and abs(v) != float("inf"), (f.name, v)


def test_fuzz_summary_row():
    record("cli_fuzz_set_parsing", examples=300, property="applies cleanly or one-line TandemError")


def test_set_without_equals_sign_and_unknown_key(capsys, no_ray):
    assert "expected key=value" in one_line_error(capsys, [*TRAIN, "--set", "lr"])
    assert "unknown --set key" in one_line_error(capsys, [*TRAIN, "--set", "lrr=1"])
    assert Path.cwd()  # the CLI never changed directory
