"""A user's own env by Gymnasium's ``module:id`` syntax: the module is imported where the env
is checked and in every process that makes it (gym.make imports it itself)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest

from tandem.core.errors import TandemError
from tandem.runner.envs import check_env_id, env_spaces, split_env_id
from tandem.runner.session import resolve_config
from tests.faults.summary import record

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "tests.plugin_env:TandemPlugin-v0"


def test_module_colon_id_is_imported_and_accepted():
    check_env_id(PLUGIN)
    obs, act = env_spaces(PLUGIN)
    assert obs.shape == (2,) and act.n == 2
    run, _, _ = resolve_config("ppo", PLUGIN, {"workers": 1})
    assert run.env_id == PLUGIN
    record("env_module_id", accepted=True)


def test_a_fresh_process_makes_the_env_from_the_id_alone():
    """What a Ray worker does: nothing imported the module before make_vector_env."""
    code = (
        "from tandem.runner.envs import make_vector_env\n"
        f"v = make_vector_env({PLUGIN!r}, 2)\n"
        "obs, _ = v.reset(seed=0)\n"
        "print(obs.shape)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "(2, 2)"


@pytest.mark.parametrize(
    "env_id, match",
    [
        ("no_such_module_xyz:Foo-v0", "cannot import module 'no_such_module_xyz'"),
        ("tests.plugin_env:Nope-v0", "registered no env 'Nope-v0'"),
        (":Foo-v0", "expected MODULE:ENV_ID"),
        ("MyOwnEnv-v0", "name the module that registers yours"),
    ],
)
def test_bad_module_ids_are_one_line(env_id, match):
    with pytest.raises(TandemError, match=match) as e:
        check_env_id(env_id)
    assert "\n" not in str(e.value)


def test_split_env_id():
    assert split_env_id("a.b:C-v0") == ("a.b", "C-v0")
    assert split_env_id("ALE/Pong-v5") == (None, "ALE/Pong-v5")
    assert "CartPole-v1" in gym.registry
