"""Tiny environments whose episode boundaries and rewards are known exactly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class CounterEnv(gym.Env):
    """obs = [t, episode], reward = t + 1 at step t, terminates after ``terminate_at`` steps
    (if given). Registered with a TimeLimit so that other lengths end by truncation."""

    def __init__(self, terminate_at: int | None = None):
        self.observation_space = gym.spaces.Box(0, 1e6, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.terminate_at = terminate_at
        self.t = 0
        self.episode = -1

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return np.array([0, self.episode], np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.t, self.episode], np.float32)
        terminated = self.terminate_at is not None and self.t >= self.terminate_at
        return obs, float(self.t), terminated, False, {}


def register_fake_envs() -> None:
    if "TandemTest/Terminating-v0" not in gym.registry:
        gym.register(
            "TandemTest/Terminating-v0",
            entry_point=CounterEnv,
            kwargs={"terminate_at": 3},
            max_episode_steps=100,
        )
        gym.register("TandemTest/Truncating-v0", entry_point=CounterEnv, max_episode_steps=4)


register_fake_envs()
