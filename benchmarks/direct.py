"""A serial, in-process off-policy loop for benchmarks of learners the Ray driver cannot run yet.

It is the driver's loop without Ray: one :class:`runner.worker.RolloutWorker` (its vector env
holds all the sub-envs), an :class:`replay.InMemoryReplay`, and the same replay-ratio rule
(sample while sampled + batch ≤ samples_per_insert · inserted, once min_size is reached),
with weights published every ``weights_publish_interval`` updates. Learners may return a
``dict`` (today's model-free learners) or an :class:`core.types.UpdateResult`.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
import torch

from tandem.core.types import UpdateResult
from tandem.learners.registry import get_algo
from tandem.replay import InMemoryReplay
from tandem.runner.envs import env_spaces
from tandem.runner.worker import RolloutWorker


def drive(
    algo: str,
    env_id: str,
    cfg: Any,
    *,
    seed: int,
    budget: int,
    threshold: float,
    window: int,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    metric_keys: tuple[str, ...] = (),
    log_every: int = 0,
    log_prefix: str = "",
) -> dict[str, Any]:
    """Train until the mean of the last ``window`` episode returns reaches ``threshold`` or
    ``budget`` env steps pass. Returns env steps and wall time at the crossing (or at the end),
    the final trailing mean, update/sample counters, and the mean of each ``metric_keys`` entry
    over all updates. ``log_every`` > 0 prints a progress line every that many env steps."""
    torch.manual_seed(seed)
    spec = get_algo(algo)
    obs_space, act_space = env_spaces(env_id, env_kwargs)
    learner = spec.make_learner(obs_space, act_space, cfg)
    worker = RolloutWorker(env_id, num_envs, algo, cfg, seed=seed, env_kwargs=env_kwargs)
    prioritized = bool(getattr(cfg, "prioritized", False))
    replay = InMemoryReplay(
        cfg.replay_capacity,
        prioritized=prioritized,
        alpha=getattr(cfg, "priority_alpha", 0.6),
        beta=getattr(cfg, "priority_beta", 0.4),
        seed=seed,
    )
    weights, version = learner.get_weights(), 1
    returns: deque[float] = deque(maxlen=window)
    env_steps = sampled = updates = samples_model = 0
    sums: dict[str, float] = {k: 0.0 for k in metric_keys}
    t0 = time.perf_counter()
    reached = False
    bs = cfg.batch_size
    while env_steps < budget:
        progress = env_steps / budget
        res = worker.collect(cfg.fragment_length, weights, version, progress)
        replay.add(res["batch"])
        env_steps += res["env_steps"]
        returns.extend(res["episode_returns"].tolist())
        if log_every and env_steps // log_every != (env_steps - res["env_steps"]) // log_every:
            mean = float(np.mean(returns)) if returns else float("nan")
            print(
                f"{log_prefix} env_steps={env_steps} trailing_mean={mean:.2f} updates={updates} "
                f"wall_s={time.perf_counter() - t0:.0f}",
                flush=True,
            )
        if len(returns) == window and float(np.mean(returns)) >= threshold:
            reached = True
            break
        while len(replay) >= cfg.min_size and sampled + bs <= cfg.samples_per_insert * env_steps:
            if hasattr(learner, "set_progress"):
                learner.set_progress(progress)
            batch = replay.sample(bs)
            out = learner.update(batch)
            if isinstance(out, UpdateResult):
                metrics, prio, samples_model = out.metrics, out.priorities, samples_model + out.samples_model
            else:
                metrics, prio = out, getattr(learner, "last_priorities", None)
            if prioritized and prio is not None:
                replay.update_priorities(batch.indices, prio)
            for k in metric_keys:
                sums[k] += float(metrics.get(k, 0.0))
            sampled += bs
            updates += 1
            if updates % cfg.weights_publish_interval == 0:
                weights, version = learner.get_weights(), version + 1
    worker.close()
    return {
        "reached": reached,
        "env_steps": env_steps,
        "wall_s": round(time.perf_counter() - t0, 2),
        "final_return": float(np.mean(returns)) if returns else None,
        "updates": updates,
        "samples_trained": sampled,
        "samples_model": samples_model,
        **{f"mean_{k}": sums[k] / max(updates, 1) for k in metric_keys},
    }


def median_steps(per_seed: list[dict[str, Any]]) -> float | None:
    """Median env steps to the threshold, an unreached seed counting as +inf (None if the
    median itself is unreached)."""
    steps = sorted(r["env_steps"] if r["reached"] else float("inf") for r in per_seed)
    m = float(np.median(steps))
    return None if m == float("inf") else m
