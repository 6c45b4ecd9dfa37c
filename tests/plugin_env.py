"""A user's own environment, registered on import: the target of ``--env tests.plugin_env:TandemPlugin-v0``
(Gymnasium's ``module:id`` syntax, which imports the module in every process that makes the env)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "TandemPlugin-v0"


class PluginEnv(gym.Env):
    """obs = [t / 10, target]; reward 1 when the action equals ``target``; 10 steps an episode."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0
        self.target = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / 10, self.target], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.target = int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        reward = float(int(action) == self.target)
        return self._obs(), reward, self.t >= 10, False, {}


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=PluginEnv)
