"""The run directory: config.yaml, metrics.jsonl, status.json, TensorBoard events, checkpoints.

Layout::

    runs/<algo>-<env>-<YYYYmmdd-HHMMSS>/
        config.yaml          fully resolved config (read back by --resume and the dashboard)
        metrics.jsonl        one MetricsRow per line (core.metrics)
        status.json          running | finished | crashed, pid, heartbeat
        tb/                  TensorBoard events, same metric names
        checkpoints/ckpt_<env_steps>.pt
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from tandem.core.errors import TandemError


@dataclass
class Counters:
    """Everything the metrics count, saved in checkpoints so a resumed run continues the count."""

    env_steps: int = 0
    episodes: int = 0
    grad_updates: int = 0
    samples_trained: int = 0
    iterations: int = 0
    version: int = 0
    wall_time_s: float = 0.0
    recent_returns: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_run_dir(algo: str, env_id: str, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe_env = env_id.replace("/", "_").replace(":", "_")
    path = Path(root) / f"{algo}-{safe_env}-{stamp}"
    n = 1
    while path.exists():  # two runs started in the same second
        n += 1
        path = Path(root) / f"{algo}-{safe_env}-{stamp}-{n}"
    return path


def write_status(run_dir: Path, status: str, error: str | None = None) -> None:
    """status.json, replaced atomically: running | finished | crashed, with a heartbeat."""
    tmp = run_dir / ".status.json.tmp"
    payload = {
        "status": status,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "updated": time.time(),
        "error": error,
    }
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, run_dir / "status.json")


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG state in types that ``torch.load(weights_only=True)`` accepts."""
    return {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    np.random.set_state(("MT19937", np.asarray(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])


class RunDir:
    """Writes one run's outputs. Append-only metrics; atomic checkpoints (write, then rename)."""

    def __init__(self, path: str | Path, config: dict[str, Any] | None = None, resume: bool = False):
        self.path = Path(path)
        self.ckpt_dir = self.path / "checkpoints"
        if config is not None and not resume:
            if (self.path / "metrics.jsonl").exists():
                raise TandemError(
                    f"run directory {self.path} already holds a run: pass --resume {self.path} "
                    "to continue it, or choose another --run-dir"
                )
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            (self.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.path / "metrics.jsonl", "a", buffering=1)
        self._tb = None
        self._ray_metrics = None
        self.set_status("running")

    # --- metrics -----------------------------------------------------------------------------
    def attach_telemetry(self, algo: str, env_id: str, ray_metrics: bool = True) -> None:
        """TensorBoard always; Ray's Prometheus metrics when running under ray.init."""
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(str(self.path / "tb"))
        if ray_metrics:
            from tandem.cluster.telemetry import RayMetrics

            self._ray_metrics = RayMetrics(run=self.path.name, algo=algo, env=env_id)

    def log(self, row: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(row, default=_json_default) + "\n")
        if self._tb is not None:
            from tandem.cluster.telemetry import write_tensorboard

            write_tensorboard(self._tb, row, step=int(row["env_steps"]))
        if self._ray_metrics is not None:
            self._ray_metrics.record(row)
        self.set_status("running")

    def set_status(self, status: str, error: str | None = None) -> None:
        write_status(self.path, status, error)

    def close(self, status: str = "finished", error: str | None = None) -> None:
        self.set_status(status, error)
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()

    # --- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, learner_state: dict[str, Any], counters: Counters, keep: int = 3) -> Path:
        payload = {"format": 1, "learner": learner_state, "counters": counters.to_dict(), "rng": rng_state()}
        final = self.ckpt_dir / f"ckpt_{counters.env_steps:012d}.pt"
        tmp = final.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, final)
        for old in sorted(self.ckpt_dir.glob("ckpt_*.pt"))[:-keep]:
            old.unlink()
        return final


def load_checkpoint(run_dir: str | Path) -> tuple[dict[str, Any], Path]:
    """The newest readable checkpoint of ``run_dir``. A corrupt newest one is reported and
    skipped for the one before it, so a crash mid-write never loses the run."""
    ckpts = sorted(Path(run_dir, "checkpoints").glob("ckpt_*.pt"), reverse=True)
    if not ckpts:
        raise TandemError(f"{run_dir} has no checkpoints to resume from: start a new run instead")
    errors = []
    for path in ckpts:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means "corrupt"
            errors.append(f"{path.name}: {str(e).splitlines()[0][:120]}")
            continue
        if not isinstance(state, dict) or state.get("format") != 1:
            errors.append(f"{path.name}: not a Tandem checkpoint")
            continue
        if errors:
            import logging

            logging.getLogger("tandem").warning("skipped corrupt checkpoint(s): %s", "; ".join(errors))
        return state, path
    raise TandemError(
        f"every checkpoint in {run_dir}/checkpoints is corrupt ({errors[0]}): start a new run, "
        "or restore the files from a backup"
    )


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o)}")
