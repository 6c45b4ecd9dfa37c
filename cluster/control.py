"""The live control channel of a run: ``tandem scale RUN_DIR --workers N`` from another shell.

The channel is Ray's GCS key-value store, which every driver of a cluster already talks to: the
run publishes where its cluster is (``RUN_DIR/control.json``, written once at start) and reads
one key, ``tandem:<run key>:workers``, between iterations. ``tandem scale`` joins the cluster and
writes that key. No file is polled, and no extra actor process is started.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import ray
from ray.experimental import internal_kv

from tandem.core.errors import TandemError

log = logging.getLogger("tandem")

NAMESPACE = "tandem"
CONTROL_FILE = "control.json"


def run_key(run_dir: str | Path) -> str:
    """The run's key prefix: its absolute run directory, hashed (two runs never share one)."""
    return "tandem:" + hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]


class ScaleChannel:
    """The driver's side: publishes the cluster address, then reads target changes."""

    def __init__(self, run_dir: str | Path):
        self.key = (run_key(run_dir) + ":workers").encode()
        self._seen: bytes | None = None
        # A value left by an earlier incarnation of this run (--resume) is stale: start clean.
        internal_kv._internal_kv_del(self.key, namespace=NAMESPACE)
        path = Path(run_dir) / CONTROL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {"address": ray.get_runtime_context().gcs_address, "key": self.key.decode()}
        path.write_text(json.dumps(info) + "\n")

    def poll(self) -> int | None:
        """A new target worker count if one was written since the last poll, else None."""
        raw = internal_kv._internal_kv_get(self.key, namespace=NAMESPACE)
        if raw is None or raw == self._seen:
            return None
        self._seen = raw
        try:
            return int(json.loads(raw)["workers"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed scale request %r", raw[:80])
            return None

    def close(self) -> None:
        try:
            internal_kv._internal_kv_del(self.key, namespace=NAMESPACE)
        except Exception:  # shutting down: the GCS may be gone already
            pass


def request_scale(run_dir: str | Path, workers: int) -> str:
    """``tandem scale``: set a live run's target worker count; returns the cluster address."""
    path = Path(run_dir) / CONTROL_FILE
    if not path.is_file():
        raise TandemError(
            f"{run_dir} has no {CONTROL_FILE}: only a live Ray run started with --workers MIN:MAX "
            "or auto can be scaled"
        )
    if workers < 1:
        raise TandemError(f"--workers {workers}: a run needs at least 1 worker")
    info = json.loads(path.read_text())
    status_file = Path(run_dir) / "status.json"
    if status_file.is_file():
        status = json.loads(status_file.read_text()).get("status")
        if status not in (None, "running"):
            raise TandemError(f"{run_dir} is not running (status {status}): nothing to scale")
    from tandem.cluster.group import init_ray

    init_ray(info["address"])
    value = json.dumps({"workers": workers, "time": time.time()})
    internal_kv._internal_kv_put(info["key"].encode(), value.encode(), overwrite=True, namespace=NAMESPACE)
    return info["address"]
