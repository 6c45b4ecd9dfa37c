"""Metrics rows -> TensorBoard and Ray's Prometheus metrics (for Grafana).

Both take the same flat row the driver writes to ``metrics.jsonl``
(:meth:`core.metrics.MetricsRow.to_json`), so every view shows the same names.

=====================  ===================================================================
sink                   what it gets
=====================  ===================================================================
TensorBoard            every scalar field of the row (schema fields and namespaced extras
                       such as ``loss/policy``), under its own name, at ``step``
Ray / Prometheus       the cluster-health subset in :data:`RAY_GAUGES` / :data:`RAY_COUNTERS`,
                       exported by each node's metrics agent as ``ray_tandem_*``
=====================  ===================================================================
"""

from __future__ import annotations

import logging
from typing import Any

from tandem.core.metrics import finite_float

# Defined beside the run directory that writes TensorBoard; re-exported for the metrics' users.
from tandem.runner.rundir import write_tensorboard

__all__ = ["RAY_COUNTERS", "RAY_GAUGES", "WORKER_GAUGE", "RayMetrics", "write_tensorboard"]

log = logging.getLogger("tandem")


RAY_GAUGES: dict[str, tuple[str, str]] = {
    "tandem_episode_return_mean": (
        "episode_return_mean",
        "Mean return of the episodes finished in the interval",
    ),
    "tandem_replay_size": ("replay_size", "Transitions held in the replay buffer"),
    "tandem_policy_lag": ("policy_lag", "Learner policy version minus the version that acted"),
    "tandem_env_steps_per_s": ("env_steps_per_s", "Env steps per second, all workers"),
    "tandem_updates_per_s": ("updates_per_s", "Learner gradient updates per second"),
    "tandem_replay_ratio": ("replay_ratio", "samples_trained / env_steps (data reuse)"),
    "tandem_workers": ("workers", "Rollout workers alive"),
}
"""Gauge name -> (row field, description). A field missing or None in a row is left unchanged."""

RAY_COUNTERS: dict[str, tuple[str, str]] = {
    "tandem_env_steps": ("env_steps", "Env steps collected (Prometheus: ray_tandem_env_steps_total)"),
    "tandem_grad_updates": ("grad_updates", "Gradient updates (Prometheus: ray_tandem_grad_updates_total)"),
}
"""Counter name -> (row field, description). Rows carry running totals; the counter gets the increase."""

_ALIASES = {"replay_size": ("replay_size", "replay/size")}

WORKER_GAUGE = "tandem_worker_env_steps_per_s"
"""Per-worker env steps/s, from the row's ``worker_env_steps_per_s`` list, tagged ``worker``."""


class RayMetrics:
    """Ray application metrics for one run, exported to Prometheus by Ray's metrics agent.

    Create it in the driver process (which runs under ``ray.init``) and call :meth:`record`
    with every metrics row::

        metrics = RayMetrics(run="ppo-CartPole-v1-20250101-120000", algo="ppo", env="CartPole-v1")
        metrics.record(row)

    Every series is tagged ``run``, ``algo`` and ``env`` (``worker`` too for the per-worker
    gauge), so one Grafana dashboard (``deploy/grafana/tandem.json``) shows many runs.
    Ray prefixes the names with ``ray_`` and counters get ``_total``:
    ``ray_tandem_env_steps_total``, ``ray_tandem_episode_return_mean``, ...

    Export needs ``ray[default]`` (the metrics agent); without it, or outside ``ray.init``,
    :meth:`record` does nothing. Telemetry never stops training: a failure is logged once
    and recording is switched off.
    """

    def __init__(self, run: str = "default", algo: str = "", env: str = ""):
        self.tags = {"run": str(run), "algo": str(algo), "env": str(env)}
        self._gauges: dict[str, Any] = {}
        self._counters: dict[str, Any] = {}
        self._worker: Any = None
        self._last: dict[str, float] = {}
        self._enabled = True

    def _create(self) -> None:
        from ray.util.metrics import Counter, Gauge

        keys = tuple(self.tags)
        for name, (_, desc) in RAY_GAUGES.items():
            self._gauges[name] = Gauge(name, description=desc, tag_keys=keys)
        for name, (_, desc) in RAY_COUNTERS.items():
            self._counters[name] = Counter(name, description=desc, tag_keys=keys)
        self._worker = Gauge(
            WORKER_GAUGE, description="Env steps per second of one rollout worker", tag_keys=(*keys, "worker")
        )
        for m in (*self._gauges.values(), *self._counters.values(), self._worker):
            m.set_default_tags(self.tags)

    def record(self, row: dict[str, Any]) -> None:
        """Set the gauges and advance the counters from one metrics row."""
        if not self._enabled:
            return
        try:
            import ray

            if not ray.is_initialized():
                return
            if not self._gauges:
                self._create()
            for name, (field, _) in RAY_GAUGES.items():
                v = next((finite_float(row.get(k)) for k in _ALIASES.get(field, (field,)) if k in row), None)
                if v is not None:
                    self._gauges[name].set(v)
            for name, (field, _) in RAY_COUNTERS.items():
                v = finite_float(row.get(field))
                if v is None:
                    continue
                delta = v - self._last.get(name, 0.0)
                if delta > 0:
                    self._counters[name].inc(delta)
                self._last[name] = max(v, self._last.get(name, 0.0))
            for i, v in enumerate(row.get("worker_env_steps_per_s") or []):
                v = finite_float(v)
                if v is not None:
                    self._worker.set(v, tags={"worker": str(i)})
        except Exception as e:  # noqa: BLE001 - telemetry must never stop a training run
            self._enabled = False
            log.warning("Ray metrics switched off after an error: %s: %s", e.__class__.__name__, e)
