"""``tandem eval``: run a checkpointed policy greedily, optionally recording videos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tandem.agents.torch_utils import DeviceConfig
from tandem.core.errors import TandemError
from tandem.runner.envs import env_spaces, make_env
from tandem.runner.rundir import load_checkpoint
from tandem.runner.session import load_run_config


def evaluate(run_dir: Path, episodes: int = 10, video: bool = False, seed: int = 12345) -> dict[str, Any]:
    if episodes < 1:
        raise TandemError("--episodes must be at least 1")
    run, algo_cfg, spec = load_run_config(run_dir)
    if isinstance(algo_cfg, DeviceConfig):
        algo_cfg.device = "cpu"  # a run trained on a GPU evaluates anywhere: checkpoints load to CPU
    obs_space, act_space = env_spaces(run.env_id, run.env_kwargs)
    learner = spec.make_learner(obs_space, act_space, algo_cfg)
    state, _ = load_checkpoint(run_dir)
    learner.load_state_dict(state["learner"])
    policy = spec.make_policy(obs_space, act_space, algo_cfg)
    policy.set_weights(learner.get_weights(), 0)

    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame renderers probe a sound card otherwise
    env = make_env(run.env_id, run.env_kwargs, render_mode="rgb_array" if video else None)
    video_dir = None
    if video:
        try:
            from gymnasium.wrappers import RecordVideo

            video_dir = Path(run_dir) / "videos"
            env = RecordVideo(env, str(video_dir), episode_trigger=lambda i: True, disable_logger=True)
        except Exception as e:  # gymnasium raises DependencyNotInstalled without moviepy
            raise TandemError(f"--video needs moviepy ({e}): pip install moviepy") from None
    returns = []
    low_high = (act_space.low, act_space.high) if hasattr(act_space, "low") else None
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            action, _ = policy.act(np.asarray(obs)[None], explore=False)
            a = action[0] if low_high is None else np.clip(action[0], *low_high)
            obs, r, term, trunc, _ = env.step(a)
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    r = np.asarray(returns)
    return {
        "episodes": episodes,
        "return_mean": float(r.mean()),
        "return_std": float(r.std()),
        "return_min": float(r.min()),
        "return_max": float(r.max()),
        "returns": returns,
        "video_dir": str(video_dir) if video_dir else None,
    }
