"""One JSON line per fault case, appended to $TANDEM_FAULTS_OUT (benchmarks/results/faults.jsonl)."""

import json
import os
import time
from pathlib import Path

DEFAULT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "faults.jsonl"


def record(case: str, **fields) -> None:
    """Append ``{"case": case, "time": ..., **fields}`` to the faults summary file."""
    path = Path(os.environ.get("TANDEM_FAULTS_OUT") or DEFAULT)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"case": case, "time": time.time(), **fields}, default=str) + "\n")
