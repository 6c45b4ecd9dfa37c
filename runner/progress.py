"""Turning counters into metrics rows, and showing progress on the console."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tandem.core.metrics import RETURN_WINDOW, MetricsRow
from tandem.runner.rundir import Counters


def window_reached(recent: list[float], window: int, target: float | None) -> bool:
    """The --stop-return rule, shared by Tandem's drivers and the RLlib baseline: ``window``
    episode returns are in and their mean reaches ``target``."""
    return target is not None and len(recent) >= window and float(np.mean(recent[-window:])) >= target


class Reporter:
    """Builds one MetricsRow per interval from the run counters, and drives the progress bar.

    It reads the counters and never changes them: the drivers count (``Counters.record_*``)."""

    def __init__(
        self,
        counters: Counters,
        total_steps: int,
        title: str,
        quiet: bool = False,
        t_start: float | None = None,
        window: int = RETURN_WINDOW,
    ):
        self.c = counters
        self.window = window
        self.total = total_steps
        # Wall time counts from process start-up (Ray init, worker spawn), not from the first batch.
        self._t0 = (t_start or time.perf_counter()) - counters.wall_time_s
        self._last_t = time.perf_counter()
        self._last_steps = counters.env_steps
        self._last_updates = counters.grad_updates
        self._returns: list[float] = []
        self._lags: list[float] = []
        self._worker_steps: dict[int, int] = {}
        self.console = Console(stderr=True)
        self._tty = self.console.is_terminal and not quiet
        self._quiet = quiet
        self._last_print = 0.0
        self.progress = Progress(
            TextColumn(f"[bold]{title}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TextColumn("return {task.fields[ret]}"),
            TextColumn("{task.fields[sps]} steps/s"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self._tty,
        )
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=counters.env_steps, ret="-", sps="-"
        )

    def __enter__(self) -> Reporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def collected(self, worker_index: int, env_steps: int, returns: np.ndarray, policy_lag: float) -> None:
        """Note one fragment for the interval's row: per-worker steps, returns and policy lag."""
        self._worker_steps[worker_index] = self._worker_steps.get(worker_index, 0) + env_steps
        self._returns.extend(float(r) for r in returns)
        self._lags.append(policy_lag)

    @property
    def recent_mean(self) -> float | None:
        return float(np.mean(self.c.recent_returns)) if self.c.recent_returns else None

    def row(self, workers: int, extra: dict[str, Any]) -> dict[str, Any]:
        """The metrics row for the interval since the last call; resets the interval."""
        now = time.perf_counter()
        dt = max(now - self._last_t, 1e-9)
        wall = now - self._t0
        sps = (self.c.env_steps - self._last_steps) / dt
        ups = (self.c.grad_updates - self._last_updates) / dt
        row = MetricsRow(
            env_steps=self.c.env_steps,
            episodes=self.c.episodes,
            wall_time_s=round(wall, 3),
            episode_return_mean=float(np.mean(self._returns)) if self._returns else None,
            episode_returns=[round(r, 4) for r in self._returns],
            grad_updates=self.c.grad_updates,
            samples_trained=self.c.samples_trained,
            replay_ratio=self.c.samples_trained / max(self.c.env_steps, 1),
            env_steps_per_s=round(sps, 2),
            updates_per_s=round(ups, 2),
            workers=workers,
            policy_lag=float(np.mean(self._lags)) if self._lags else 0.0,
            samples_model=self.c.samples_model,
            extra={
                "return_mean_window": self.recent_mean,
                "worker_env_steps_per_s": [
                    round(self._worker_steps.get(i, 0) / dt, 2)
                    for i in range(max(self._worker_steps, default=-1) + 1)
                ],
                **extra,
            },
        ).to_json()
        self._last_t, self._last_steps, self._last_updates = now, self.c.env_steps, self.c.grad_updates
        self._returns, self._lags, self._worker_steps = [], [], {}
        self._show(sps)
        return row

    def _show(self, sps: float) -> None:
        ret = self.recent_mean
        ret_s = "-" if ret is None else f"{ret:.1f}"
        self.progress.update(
            self.task, completed=min(self.c.env_steps, self.total), ret=ret_s, sps=f"{sps:,.0f}"
        )
        now = time.time()
        if not self._tty and not self._quiet and now - self._last_print > 5:
            # No terminal (CI, nohup): a plain line every few seconds instead of a live bar.
            print(
                f"steps {self.c.env_steps:,}/{self.total:,}  return {ret_s}  {sps:,.0f} steps/s",
                file=sys.stderr,
                flush=True,
            )
            self._last_print = now
