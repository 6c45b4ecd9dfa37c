"""``record(case, **fields)``: one JSON line per fault case, for benchmarks/results/faults.json.

The file is ``$TANDEM_FAULTS_OUT`` (default: ``benchmarks/results/faults.jsonl`` in the repo).
Fields by convention: ``faults`` (what was injected), ``written``, ``counted``, ``lost``,
``duplicated``, ``outcome``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "faults.jsonl"


def record(case: str, **fields) -> None:
    """Append ``{"case": case, "time": unix seconds, **fields}`` as one line."""
    path = Path(os.environ.get("TANDEM_FAULTS_OUT") or DEFAULT)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"case": case, "time": round(time.time(), 3), **fields}
    with path.open("a") as f:
        f.write(json.dumps(row, sort_keys=True, default=str) + "\n")
