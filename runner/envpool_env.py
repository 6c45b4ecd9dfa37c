"""EnvPool as a worker's vector env, with Gymnasium's same-step autoreset.

EnvPool (``pip install 'tandem-rl[envpool]'``) steps a batch of envs in C++. Its Gymnasium API
resets a finished sub-env on the *next* ``step`` call (reward 0, action ignored), where Tandem's
workers use Gymnasium's same-step mode: a finished sub-env is reset inside the step that ended
it, the true last observation goes to ``info["final_obs"]``, and every step is a real
transition. :class:`EnvPoolVectorEnv` gives EnvPool that contract by resetting the finished
sub-envs at once (EnvPool's ``reset(env_id=...)``).

Where EnvPool is used by default (``vector_env=auto``): :data:`ENVPOOL_AUTO`, the envs whose
transitions, rewards, terminations and time limits matched Gymnasium's in
``tests/integration/test_envpool.py``, from the sub-env count at which they stepped faster on
one core (``benchmarks/envpool.py``). Every EnvPool step hands the batch to its C++ thread and
back, two thread wake-ups that cost tens of microseconds on a VM, so small batches of cheap envs
lose: CartPole-v1 matches too but is not faster through EnvPool at any count measured (0.4-0.5x
at 4 sub-envs, 0.7-1.0x at 16), and stays on Gymnasium unless asked for.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np

from tandem.core.errors import TandemError

ENVPOOL_AUTO: dict[str, int] = {"HalfCheetah-v5": 8, "Hopper-v5": 4, "Swimmer-v5": 4}
"""Env id -> the fewest sub-envs at which ``vector_env=auto`` steps it through EnvPool. Measured
(EnvPool / Gymnasium steps per CPU second, medians of 5): HalfCheetah 0.85x at 4, 1.32x at 8;
Hopper 1.15x at 4; Swimmer 1.25x at 4."""

INSTALL_HINT = "pip install 'tandem-rl[envpool]' (or --set vector_env=gymnasium)"


def envpool_installed() -> bool:
    return importlib.util.find_spec("envpool") is not None


def require_envpool_env(env_id: str) -> None:
    """A one-line error unless EnvPool has ``env_id``."""
    import envpool

    if env_id not in set(envpool.list_all_envs()):
        raise TandemError(f"--set vector_env=envpool: EnvPool has no {env_id}: use vector_env=gymnasium")


def choose_vector_env(
    choice: str, env_id: str, env_kwargs: dict[str, Any] | None, installed: bool, num_envs: int
) -> str:
    """``vector_env`` -> the backend a worker of ``num_envs`` sub-envs builds: "gymnasium" or "envpool".

    auto takes EnvPool only for :data:`ENVPOOL_AUTO` from its sub-env count on, with no
    ``env_kwargs`` (EnvPool has its own keyword names), and when it is installed; an explicit
    ``envpool`` that cannot be honoured is a one-line error, never a silent fallback.
    """
    if choice == "gymnasium":
        return "gymnasium"
    if choice == "auto":
        fast = num_envs >= ENVPOOL_AUTO.get(env_id, 1 << 30)
        return "envpool" if installed and fast and not env_kwargs else "gymnasium"
    if choice != "envpool":
        raise TandemError(f"--set vector_env={choice!r}: choose one of auto, gymnasium, envpool")
    if not installed:
        raise TandemError(f"--set vector_env=envpool: EnvPool is not installed: {INSTALL_HINT}")
    if env_kwargs:
        raise TandemError(
            f"--set vector_env=envpool: env_kwargs {sorted(env_kwargs)} are gymnasium.make's; "
            "EnvPool takes its own: use --set vector_env=gymnasium with env_kwargs"
        )
    return "envpool"


class EnvPoolVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` EnvPool sub-envs stepped synchronously, Gymnasium same-step autoreset.

    Spaces and dtypes are EnvPool's, which match Gymnasium's for the envs it is used for; the
    info dict holds only ``final_obs`` (the workers read nothing else).
    """

    def __init__(self, env_id: str, num_envs: int):
        require_envpool_env(env_id)
        self.env_id = env_id
        self.num_envs = num_envs
        self._pool = self._make_pool(0)
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        self._all = np.arange(num_envs, dtype=np.int32)

    def _make_pool(self, seed: int):
        import envpool

        # One C++ thread per worker: a worker is one core's worth of work, like Gymnasium's
        # SyncVectorEnv; more threads would contend with the node's other workers.
        return envpool.make_gymnasium(
            self.env_id, num_envs=self.num_envs, batch_size=self.num_envs, num_threads=1, seed=seed
        )

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """EnvPool fixes its seeds when the pool is made (sub-env i gets ``seed + i``), so a
        seeded reset makes a new pool from the first seed; the others follow from it."""
        if seed is not None:
            first = int(seed[0] if isinstance(seed, (list, tuple, np.ndarray)) else seed)
            self._pool.close()
            self._pool = self._make_pool(first)
        obs, _ = self._pool.reset(self._all)
        return obs, {}

    def step(self, actions):
        obs, rew, term, trunc, _ = self._pool.step(np.asarray(actions), self._all)
        done = term | trunc
        info: dict[str, Any] = {}
        if done.any():
            ids = np.flatnonzero(done).astype(np.int32)
            final = np.zeros_like(obs)
            final[ids] = obs[ids]
            obs = obs.copy()
            obs[ids], _ = self._pool.reset(ids)
            info = {"final_obs": final, "_final_obs": done}
        return obs, rew, term, trunc, info

    def close(self, **kwargs: Any) -> None:
        self._pool.close()
