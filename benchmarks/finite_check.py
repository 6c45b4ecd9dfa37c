"""Cost of the learners' finiteness check (``learners.finite.checked``): updates/s of each
learner with the check and with it replaced by the identity, interleaved A/B rounds so that
other load on the machine hits both alike. Prints one line per learner.

    PYTHONPATH=$PWD python benchmarks/finite_check.py [--rounds 5] [--updates 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import tandem.learners.dqn as dqn
import tandem.learners.sac as sac
from tandem.learners import finite
from tandem.learners.registry import get_algo
from tandem.runner.envs import env_spaces

MODULES = {"dqn": dqn, "sac": sac}


def batch_for(obs_space, act_space, n: int, rng: np.random.Generator):
    from tandem.core.types import Batch

    obs = rng.standard_normal((n, *obs_space.shape)).astype(np.float32)
    if act_space.shape:
        actions = rng.uniform(-1, 1, (n, *act_space.shape)).astype(np.float32)
    else:
        actions = rng.integers(0, act_space.n, n)
    return Batch(
        obs=obs,
        actions=actions,
        rewards=rng.standard_normal(n).astype(np.float32),
        next_obs=obs,
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        weights=np.ones(n, np.float32),
        indices=np.arange(n),
    )


def rate(learner, batch, updates: int) -> float:
    t = time.perf_counter()
    for _ in range(updates):
        learner.update(batch)
    return updates / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--updates", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    for algo, env in [("dqn", "CartPole-v1"), ("sac", "Pendulum-v1")]:
        spec = get_algo(algo)
        obs_space, act_space = env_spaces(env)
        cfg = spec.config_cls()
        learner = spec.make_learner(obs_space, act_space, cfg)
        batch = batch_for(obs_space, act_space, cfg.batch_size, rng)
        mod = MODULES[algo]
        on, off = [], []
        rate(learner, batch, 20)  # warm-up
        for _ in range(args.rounds):
            mod.checked = finite.checked
            on.append(rate(learner, batch, args.updates))
            mod.checked = lambda result, batch, update: result
            off.append(rate(learner, batch, args.updates))
        mod.checked = finite.checked
        t = time.perf_counter()
        for _ in range(2000):
            finite.checked(_dummy_result(), batch, 0)
        check_us = (time.perf_counter() - t) / 2000 * 1e6
        print(
            f"{algo} {env} batch {cfg.batch_size}: {np.median(off):.0f} updates/s without the check, "
            f"{np.median(on):.0f} with ({(np.median(on) / np.median(off) - 1) * 100:+.1f}%); "
            f"the check alone {check_us:.1f} us per update"
        )


def _dummy_result():
    from tandem.core.types import UpdateResult

    return UpdateResult({"loss/q": 0.5, "loss/actor": 0.1, "stats/q_mean": 1.0}, 1, 256)


if __name__ == "__main__":
    main()
