"""Benchmark runs through Tandem's real driver, in this process: ``train()`` on the local backend
(plain RolloutWorkers, no Ray) with the in-memory replay. No loop of its own, so a benchmark
measures exactly what ``tandem train --backend local --replay memory`` runs."""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import rolling_threshold
from tandem.learners.registry import get_algo
from tandem.runner.config import RunConfig
from tandem.runner.local import LocalBackend
from tandem.runner.train import train


def train_local(
    algo: str,
    env_id: str,
    cfg: Any | None = None,
    *,
    seed: int,
    budget: int,
    threshold: float | None,
    window: int,
    workers: int = 1,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
) -> Path:
    """One run to ``threshold`` (mean of the last ``window`` returns) or ``budget`` env steps;
    returns its run directory. ``cfg`` None takes the algorithm's defaults and preset."""
    spec = get_algo(algo)
    if cfg is None:
        from tandem.runner.session import resolve_config

        _, cfg, _ = resolve_config(algo, env_id, {"env_kwargs": env_kwargs} if env_kwargs else None)
    run = RunConfig(
        algo=algo,
        env_id=env_id,
        env_kwargs=env_kwargs,
        workers=workers,
        envs_per_worker=num_envs,
        total_steps=budget,
        seed=seed,
        replay="memory",
        backend="local",
        stop_return=threshold,
        return_window=window,
        run_dir=tempfile.mkdtemp(prefix=f"bench-{algo}-"),
    )
    return train(run, dataclasses.replace(cfg), spec, quiet=True, backend=LocalBackend())


def drive(
    algo: str,
    env_id: str,
    cfg: Any | None,
    *,
    seed: int,
    budget: int,
    threshold: float,
    window: int,
    num_envs: int = 8,
    env_kwargs: dict[str, Any] | None = None,
    metric_keys: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``train_local`` scored from its metrics rows: whether and when the trailing mean reached
    ``threshold`` (env steps, wall time), the final trailing mean, the update and sample
    counters, and the mean over rows of each ``metric_keys`` entry."""
    run_dir = train_local(
        algo, env_id, cfg, seed=seed, budget=budget, threshold=threshold, window=window,
        num_envs=num_envs, env_kwargs=env_kwargs,
    )  # fmt: skip
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    means = {}
    for k in metric_keys:
        values = [r[k] for r in rows if isinstance(r.get(k), (int, float))]
        means[f"mean_{k}"] = statistics.fmean(values) if values else None
    last = rows[-1]
    return {
        **rolling_threshold(run_dir, threshold, window),
        "updates": last["grad_updates"],
        "samples_trained": last["samples_trained"],
        "samples_model": last.get("samples_model", 0),
        "run_dir": str(run_dir),
        **means,
    }


def median_steps(per_seed: list[dict[str, Any]]) -> float | None:
    """Median env steps to the threshold, an unreached seed counting as +inf (None if the
    median itself is unreached)."""
    steps = sorted(r["env_steps"] if r["reached"] else float("inf") for r in per_seed)
    m = statistics.median(steps)
    return None if m == float("inf") else m
