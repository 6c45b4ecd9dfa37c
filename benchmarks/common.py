"""Shared by the benchmark scripts: run Tandem and RLlib in subprocesses (so start-up is
counted the same way for both) and read time-to-threshold off their metrics.jsonl files."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tandem.core.metrics import RETURN_WINDOW

ROOT = Path(__file__).resolve().parents[1]


def rolling_threshold(run_dir: Path, threshold: float, window: int = RETURN_WINDOW) -> dict[str, Any]:
    """First point where the mean of the last ``window`` episode returns reaches ``threshold``.

    Both frameworks are scored by this one function on their metrics.jsonl, so the criterion
    is identical: the row at which the trailing mean first crosses, its env steps and wall time.
    """
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    returns: list[float] = []
    for r in rows:
        returns.extend(r.get("episode_returns") or [])
        recent = returns[-window:]
        if len(recent) == window and sum(recent) / window >= threshold:
            return {
                "reached": True,
                "env_steps": r["env_steps"],
                "wall_s": r["wall_time_s"],
                "final_return": sum(recent) / window,
                "replay_ratio": r["replay_ratio"],
            }
    last = rows[-1] if rows else {}
    recent = returns[-window:]
    return {
        "reached": False,
        "env_steps": last.get("env_steps"),
        "wall_s": last.get("wall_time_s"),
        "final_return": sum(recent) / len(recent) if recent else None,
        "replay_ratio": last.get("replay_ratio"),
    }


def _run(cmd: list[str], timeout: float) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... failed:\n{p.stderr[-2000:]}")
    return time.perf_counter() - t0


def run_tandem(
    algo: str,
    env_id: str,
    seed: int,
    total_steps: int,
    stop_return: float | None,
    workers: int = 2,
    envs_per_worker: int = 4,
    sets: list[str] | None = None,
    extra: list[str] | None = None,
    timeout: float = 3600,
) -> tuple[Path, float]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{algo}-")) / "run"
    cmd = [
        sys.executable,
        "-m",
        "tandem.cli",
        "train",
        "--algo",
        algo,
        "--env",
        env_id,
        "--workers",
        str(workers),
        "--envs-per-worker",
        str(envs_per_worker),
        "--total-steps",
        str(total_steps),
        "--seed",
        str(seed),
        "--run-dir",
        str(run_dir),
        "--quiet",
        "--num-cpus",
        str(os.cpu_count() or 2),
    ]
    if stop_return is not None:
        cmd += ["--stop-return", str(stop_return)]
    for s in sets or []:
        cmd += ["--set", s]
    cmd += extra or []
    return run_dir, _run(cmd, timeout)


def run_rllib(
    algo: str,
    env_id: str,
    seed: int,
    total_steps: int,
    stop_return: float | None,
    workers: int = 1,
    overrides: dict | None = None,
    timeout: float = 3600,
    return_window: int = RETURN_WINDOW,
    max_wall_s: float | None = None,
    preset: str = "tuned",
) -> tuple[Path, float]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-rllib-{algo}-")) / "run"
    code = (
        "from benchmarks.rllib_baseline import run_rllib; "
        f"run_rllib({algo!r}, {env_id!r}, {total_steps}, {seed}, {str(run_dir)!r}, workers={workers}, "
        f"stop_return={stop_return!r}, config_overrides={overrides!r}, "
        f"return_window={return_window}, max_wall_s={max_wall_s!r}, preset={preset!r})"
    )
    return run_dir, _run([sys.executable, "-c", code], timeout)


def median(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def median_to_threshold(results: list[dict[str, Any]], key: str) -> float | None:
    """Median over all seeds, a seed that never reached the threshold counting as +inf
    (so 2 of 3 seeds reaching gives a finite median; 1 of 3 does not: None)."""
    xs = sorted(r[key] if r["reached"] else float("inf") for r in results)
    m = statistics.median(xs) if xs else float("inf")
    return None if m == float("inf") else m


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds (unreached seeds count as +inf for steps and wall time to threshold)."""
    reached = [r for r in results if r["reached"]]
    return {
        "seeds": len(results),
        "reached": len(reached),
        "median_env_steps_to_threshold": median_to_threshold(results, "env_steps"),
        "median_wall_s_to_threshold": median_to_threshold(results, "wall_s"),
        "median_final_return": median([r["final_return"] for r in results]),
        "median_replay_ratio": median([r["replay_ratio"] for r in results]),
        "median_process_s": median([r.get("process_s") for r in results]),
        "per_seed": results,
    }
