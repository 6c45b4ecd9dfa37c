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


COLUMNS = ("case", "faults", "written", "counted", "lost", "duplicated", "outcome")
"""The summary table's columns (issue 13); other fields stay in faults.json's rows."""

SUMMARY = DEFAULT.with_suffix(".json")
"""benchmarks/results/faults.json: the latest row of every case, as one table."""


def read_rows(path: Path) -> list[dict]:
    """Every whole JSON line of ``path`` (a partial line from a killed test is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "case" in row:
            out.append(row)
    return out


def aggregate(rows: list[dict]) -> list[dict]:
    """The latest row of each case, in case order."""
    latest: dict[str, dict] = {}
    for row in sorted(rows, key=lambda r: r.get("time", 0)):
        latest[row["case"]] = row
    return [latest[k] for k in sorted(latest)]


def table(rows: list[dict], width: int = 60) -> str:
    """``rows`` as a plain-text table of :data:`COLUMNS`; long cells are cut to ``width``."""

    def cell(v) -> str:
        s = "-" if v is None else str(v)
        return s if len(s) <= width else s[: width - 3] + "..."

    cells = [[cell(r.get(c)) for c in COLUMNS] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(COLUMNS)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths, strict=True)).rstrip()
    return "\n".join([line(COLUMNS), line(["-" * w for w in widths])] + [line(r) for r in cells])


def write_summary(source: Path | None = None, out: Path | None = None) -> list[dict]:
    """Aggregate the JSON lines at ``source`` (default: ``$TANDEM_FAULTS_OUT`` or
    benchmarks/results/faults.jsonl) into ``out`` (default: faults.json beside it)."""
    source = Path(source or os.environ.get("TANDEM_FAULTS_OUT") or DEFAULT)
    out = Path(out or source.with_suffix(".json"))
    rows = aggregate(read_rows(source))
    doc = {
        "generated": round(time.time(), 3),
        "source": source.name,
        "columns": list(COLUMNS),
        "cases": rows,
        "failed": [r["case"] for r in rows if "FAIL" in str(r.get("outcome", "")).upper()],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out)
    return rows


if __name__ == "__main__":
    print(table(write_summary()))
