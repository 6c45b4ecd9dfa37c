"""Gymnasium environment construction and validation, shared by workers, the CLI and eval."""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import gymnasium as gym
import numpy as np

from tandem.core.errors import TandemError


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``"my_pkg.envs:MyEnv-v0"`` -> ``("my_pkg.envs", "MyEnv-v0")``; a plain id has no module.

    Gymnasium's own ``module:id`` syntax: importing the module registers the id, and
    ``gym.make`` does that import itself, so worker processes register it too.
    """
    module, sep, name = env_id.partition(":")
    return (module, name) if sep else (None, env_id)


def import_env_module(module: str, env_id: str) -> None:
    """Import the module named in ``module:id`` (it registers the env), or a one-line error."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise TandemError(
            f"--env {env_id}: cannot import module {module!r} ({e}): install the package that "
            "provides it or put its folder on PYTHONPATH"
        ) from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while registering
        raise TandemError(
            f"--env {env_id}: importing {module!r} failed ({type(e).__name__}: {str(e)[:120]})"
        ) from None


def check_env_id(env_id: str) -> None:
    """Raise a one-line TandemError for an unknown id, with the closest registered names.

    ``module:id`` first imports ``module``, which is how an env of the user's own, or of a
    package such as ``ale_py``, gets registered (Gymnasium 1.x loads no plugins by itself).
    """
    module, name = split_env_id(env_id)
    if module is not None:
        if not module or not name:
            raise TandemError(f"--env {env_id!r}: expected MODULE:ENV_ID, e.g. my_pkg.envs:MyEnv-v0")
        import_env_module(module, env_id)
    if name in gym.registry:
        return
    if module is not None:
        raise TandemError(
            f"--env {env_id}: importing {module!r} registered no env {name!r}: call "
            f"gymnasium.register(id={name!r}, entry_point=...) at the top level of {module}"
        )
    close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise TandemError(
        f"unknown env id {env_id!r}: {hint}list the registered ids with "
        '`python -c "import gymnasium; gymnasium.pprint_registry()"`, or name the module that '
        "registers yours: --env my_pkg.envs:MyEnv-v0"
    )


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, **kw) -> gym.Env:
    check_env_id(env_id)
    try:
        return gym.make(env_id, **(env_kwargs or {}), **kw)
    except TypeError as e:
        raise TandemError(f"cannot make {env_id} with env_kwargs={env_kwargs}: {e}") from None
    except (gym.error.DependencyNotInstalled, ImportError) as e:
        raise TandemError(
            f"{env_id} needs a missing package ({e}): pip install 'gymnasium[mujoco]'"
        ) from None


def env_spaces(env_id: str, env_kwargs: dict[str, Any] | None = None) -> tuple[gym.Space, gym.Space]:
    """Observation and action spaces, from one throwaway env (cheap, and catches bad ids early)."""
    env = make_env(env_id, env_kwargs)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def check_vector_env(vector_env: str, env_id: str, env_kwargs: dict[str, Any] | None, num_envs: int) -> str:
    """The backend ``vector_env`` gives for this env here, or a one-line error (an explicit
    envpool that is not installed or does not have the env), before any worker starts."""
    from tandem.runner.envpool_env import choose_vector_env, envpool_installed, require_envpool_env

    backend = choose_vector_env(vector_env, env_id, env_kwargs, envpool_installed(), num_envs)
    if backend == "envpool":
        require_envpool_env(env_id)
    return backend


def make_vector_env(
    env_id: str, num_envs: int, env_kwargs: dict[str, Any] | None = None, vector_env: str = "gymnasium"
) -> gym.vector.VectorEnv:
    """A synchronous vector env in same-step autoreset mode.

    Same-step mode resets a finished sub-env inside the step that ended it and hands the final
    observation over in ``info["final_obs"]``; so every step is a real transition and the
    ignored reset step of the default next-step mode never reaches a batch or the replay.
    ``vector_env``: gymnasium, envpool or auto (see :mod:`runner.envpool_env`).
    """
    from tandem.runner.envpool_env import EnvPoolVectorEnv, choose_vector_env, envpool_installed

    check_env_id(env_id)
    if choose_vector_env(vector_env, env_id, env_kwargs, envpool_installed(), num_envs) == "envpool":
        return EnvPoolVectorEnv(env_id, num_envs)
    fns = [lambda: make_env(env_id, env_kwargs) for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def derive_seeds(run_seed: int, worker_index: int, n: int) -> list[int]:
    """n independent 31-bit seeds for worker ``worker_index`` of run ``run_seed``."""
    ss = np.random.SeedSequence([run_seed, worker_index])
    return [int(s) for s in ss.generate_state(n, dtype=np.uint32) >> 1]
