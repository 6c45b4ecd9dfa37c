"""Which vector env a worker builds (``vector_env``): pure rules, no EnvPool needed."""

from __future__ import annotations

import pytest

from tandem.core.errors import TandemError
from tandem.runner.envpool_env import ENVPOOL_AUTO, choose_vector_env
from tandem.runner.session import resolve_config


def test_auto_takes_envpool_only_where_it_matched_and_was_faster():
    assert choose_vector_env("auto", "Hopper-v5", None, installed=True, num_envs=4) == "envpool"
    # HalfCheetah gains from 8 sub-envs on (0.85x at 4, 1.32x at 8)
    assert choose_vector_env("auto", "HalfCheetah-v5", None, installed=True, num_envs=4) == "gymnasium"
    assert choose_vector_env("auto", "HalfCheetah-v5", None, installed=True, num_envs=8) == "envpool"
    assert choose_vector_env("auto", "CartPole-v1", None, installed=True, num_envs=64) == "gymnasium"
    assert choose_vector_env("auto", "Hopper-v5", None, installed=False, num_envs=4) == "gymnasium"
    # gymnasium.make's keyword names are not EnvPool's
    kwargs = {"ctrl_cost_weight": 0.2}
    assert choose_vector_env("auto", "Hopper-v5", kwargs, installed=True, num_envs=4) == "gymnasium"
    assert "CartPole-v1" not in ENVPOOL_AUTO


def test_gymnasium_is_always_gymnasium():
    assert choose_vector_env("gymnasium", "Hopper-v5", None, installed=True, num_envs=16) == "gymnasium"


@pytest.mark.parametrize(
    "choice, kwargs, installed, words",
    [
        ("envpool", None, False, "not installed"),
        ("envpool", {"is_slippery": False}, True, "env_kwargs"),
        ("fast", None, True, "choose one of"),
    ],
)
def test_an_explicit_choice_that_cannot_hold_is_one_line(choice, kwargs, installed, words):
    with pytest.raises(TandemError) as e:
        choose_vector_env(choice, "CartPole-v1", kwargs, installed, 4)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert "vector_env" in str(e.value)


def test_resolve_config_checks_it_before_anything_starts(monkeypatch):
    monkeypatch.setattr("tandem.runner.envpool_env.envpool_installed", lambda: False)
    with pytest.raises(TandemError, match="EnvPool is not installed"):
        resolve_config("ppo", "CartPole-v1", {"vector_env": "envpool"})
    run, _, _ = resolve_config("ppo", "CartPole-v1", {"vector_env": "gymnasium"})
    assert run.vector_env == "gymnasium"
