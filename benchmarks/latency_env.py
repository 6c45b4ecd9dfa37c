"""A slow simulator that costs no CPU: each ``step`` sleeps a fixed time.

With it, many more workers than cores can run, and the shortfall from the ideal throughput
(``workers x envs / step_time``) is what orchestration costs: actor calls, serialisation, the
driver's loop, the policy's forward pass. Nothing else stands between the env and the learner.

Ray workers must register it too. A process that imports this module has it; for Ray's worker
processes, start Ray with ``runtime_env={"worker_process_setup_hook": SETUP_HOOK}``.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

ENV_ID = "TandemBench/Latency-v0"
SETUP_HOOK = "tandem.benchmarks.latency_env.register"
EPISODE_STEPS = 200


class LatencyEnv(gym.Env):
    """obs = 4 zeros with the step count first, 2 actions, reward 1 per step; ``step`` sleeps
    ``step_time_s`` (a simulator waiting on something else, not computing). Episodes end by
    truncation after ``EPISODE_STEPS`` steps (the registered TimeLimit)."""

    def __init__(self, step_time_s: float = 0.002):
        self.observation_space = gym.spaces.Box(-1e6, 1e6, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.step_time_s = step_time_s
        self._obs = np.zeros(4, np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._obs[:] = 0.0
        return self._obs.copy(), {}

    def step(self, action):
        if self.step_time_s > 0:  # 0: no syscall at all, for measuring everything but the wait
            time.sleep(self.step_time_s)
        self._obs[0] += 1.0
        return self._obs.copy(), 1.0, False, False, {}


def register() -> None:
    """Register ``ENV_ID`` (idempotent); also the Ray worker setup hook."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=LatencyEnv, max_episode_steps=EPISODE_STEPS)


register()
