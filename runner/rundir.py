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
import numbers
import os
import random
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from tandem.core.errors import TandemError
from tandem.core.protocols import MetricsSink
from tandem.core.types import UpdateResult


@dataclass
class Counters:
    """Everything the metrics count, saved in checkpoints so a resumed run continues the count."""

    env_steps: int = 0
    episodes: int = 0
    grad_updates: int = 0
    samples_trained: int = 0
    samples_model: int = 0
    iterations: int = 0
    version: int = 0
    wall_time_s: float = 0.0
    recent_returns: list[float] = field(default_factory=list)
    sessions: int = 0
    """Processes that ran this run before this one (0: a fresh run): the resumed workers' seed salt."""
    replay_base: int = -1
    """The shared replay's insert cursor when this run began writing to it (-1: not tracked, an
    in-memory replay or none): the run's transitions in it are ``cursor - replay_base``."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def record_fragment(self, env_steps: int, episode_returns: Iterable[float], window: int) -> None:
        """Count one worker fragment: its env steps, its finished episodes, and their returns in
        the trailing ``window`` (what --stop-return and a resumed run's console read)."""
        returns = [float(r) for r in episode_returns]
        self.env_steps += int(env_steps)
        self.episodes += len(returns)
        self.recent_returns = (self.recent_returns + returns)[-window:]

    def record_update(self, result: UpdateResult) -> None:
        """Count one ``Learner.update``: the optimizer steps, real and model samples it reports."""
        self.grad_updates += int(result.grad_steps)
        self.samples_trained += int(result.samples_trained)
        self.samples_model += int(result.samples_model)


COUNTED = ("env_steps", "episodes", "grad_updates", "samples_trained")
"""Counters that a metrics row also holds, so a resume can continue them from the last row."""


def continue_counters(ckpt: Counters, last_row: dict[str, Any] | None) -> Counters:
    """The counters a resumed run starts from: the checkpoint's, raised to the last metrics row's.

    A process killed after its last checkpoint already appended rows with higher counters; the
    rows must never go back (13,568 -> 12,480 env steps, issue 13), so each counted total is
    ``max(checkpoint, last row)``, and ``wall_time_s`` likewise. This keeps counting work that
    the crash threw away (the steps collected and the updates made after the checkpoint happened,
    and sample efficiency must pay for them); the learner's parameters restart from the
    checkpoint. Returns a new ``Counters``; ``ckpt`` is not changed.
    """
    c = Counters(**{**ckpt.to_dict(), "recent_returns": list(ckpt.recent_returns)})
    if not last_row:
        return c
    for name in COUNTED:
        v = last_row.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            setattr(c, name, max(getattr(c, name), int(v)))
    wall = last_row.get("wall_time_s")
    if isinstance(wall, int | float) and not isinstance(wall, bool):
        c.wall_time_s = max(c.wall_time_s, float(wall))
    return c


def last_metrics_row(path: Path, repair: bool = False) -> dict[str, Any] | None:
    """The last whole row of metrics.jsonl (None: no rows). A process killed mid-write leaves
    a partial last line; ``repair`` cuts it off, so the next appended row starts on its own line."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if repair and end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    for line in reversed(data[:end].splitlines()):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            return row
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def read_status(run_dir: str | Path, mark_dead: bool = True) -> dict[str, Any] | None:
    """status.json, with a dead run found out: one that says "running" while the process that
    wrote it is gone from this host (SIGKILL, OOM killer, power loss) is "crashed", and with
    ``mark_dead`` the file is rewritten to say so. None if there is no status.json."""
    path = Path(run_dir) / "status.json"
    try:
        st = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = st.get("pid")
    if (
        st.get("status") == "running"
        and st.get("host") == socket.gethostname()
        and isinstance(pid, int)
        and pid != os.getpid()
        and not pid_alive(pid)
    ):
        st["status"] = "crashed"
        st["error"] = (
            f"the process (pid {pid}) died without closing the run (killed?): resume with --resume {run_dir}"
        )
        if mark_dead:
            tmp = path.with_name(".status.json.tmp")
            tmp.write_text(json.dumps(st))
            os.replace(tmp, path)
    return st


def default_run_dir(algo: str, env_id: str, root: str | Path = "runs") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe_env = env_id.replace("/", "_").replace(":", "_")
    path = Path(root) / f"{algo}-{safe_env}-{stamp}"
    n = 1
    while path.exists():  # two runs started in the same second
        n += 1
        path = Path(root) / f"{algo}-{safe_env}-{stamp}-{n}"
    return path


def write_status(run_dir: Path, status: str, error: str | None = None, session: int = 0) -> None:
    """status.json, replaced atomically: running | finished | crashed, with a heartbeat.
    ``session`` numbers the processes that ran this run (0 first, +1 per resume)."""
    tmp = run_dir / ".status.json.tmp"
    payload = {
        "status": status,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "updated": time.time(),
        "error": error,
        "session": session,
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

    def __init__(
        self, path: str | Path, config: dict[str, Any] | None = None, resume: bool = False, session: int = 0
    ):
        self.path = Path(path)
        self.session = session
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
        if resume:
            last_metrics_row(self.path / "metrics.jsonl", repair=True)
        self._metrics = open(self.path / "metrics.jsonl", "a", buffering=1)
        self._tb = None
        self._sinks: list[MetricsSink] = []
        self.set_status("running")

    # --- metrics -----------------------------------------------------------------------------
    def attach_telemetry(self, sinks: Iterable[MetricsSink | None] = ()) -> None:
        """TensorBoard always, plus the backend's sinks (Ray's Prometheus metrics)."""
        from torch.utils.tensorboard import SummaryWriter

        self._tb = SummaryWriter(str(self.path / "tb"))
        self._sinks = [s for s in sinks if s is not None]

    def log(self, row: dict[str, Any]) -> None:
        self._metrics.write(json.dumps(row, default=_json_default) + "\n")
        if self._tb is not None:
            write_tensorboard(self._tb, row, step=int(row["env_steps"]))
        for sink in self._sinks:
            sink.record(row)
        self.set_status("running")

    def set_status(self, status: str, error: str | None = None) -> None:
        write_status(self.path, status, error, self.session)

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


def write_tensorboard(writer: Any, row: dict[str, Any], step: int) -> int:
    """Write each scalar of ``row`` to a ``SummaryWriter`` as ``add_scalar(name, value, step)``.

    Numbers (ints, floats, numpy scalars) are written under the row's own names; None, lists
    (``episode_returns``, histograms, per-worker rates), strings and bools are skipped.
    Returns how many scalars were written.
    """
    n = 0
    for name, value in row.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        writer.add_scalar(name, float(value), global_step=int(step))
        n += 1
    return n


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o)}")
