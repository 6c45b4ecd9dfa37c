"""The Ray-free half of ``tandem sweep``: the sweep spec (flags or a YAML file), its expansion
into trials (grid x seeds), each trial's final figures read back from its run directory, and the
summary table. ``cluster.sweep`` runs the trials on Ray Tune.

A sweep file::

    name: ppo-lr            # runs/<name>/ (default: <algo>-<env>-sweep-<time>)
    algo: ppo
    env: CartPole-v1
    seeds: "0:5"            # or [0, 1, 2], or 3
    grid:                   # every combination of these, for every seed
      lr: [3.0e-4, 1.0e-3]
    set:                    # fixed overrides, as --set
      total_steps: 50000
    stop_return: 475        # per trial
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.core.errors import TandemError
from tandem.core.metrics import RETURN_WINDOW
from tandem.runner.config import _read_mapping, parse_set


class SweepError(TandemError):
    """A sweep spec that cannot run: a bad --grid, --seeds or sweep file."""


@dataclass
class SweepSpec:
    """One sweep: what every trial shares, what varies (grid x seeds), and how to place trials."""

    algo: str
    """Algorithm name, as ``tandem train --algo``."""
    env: str
    """Gymnasium env id, as ``tandem train --env``."""
    name: str = ""
    """Sweep name: its trials go under runs/<name>/ (empty: <algo>-<env>-sweep-<time>)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds each grid point runs with."""
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Config key -> values; every combination is one configuration."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config keys every trial shares (``--set``, ``--total-steps``, ``--stop-return``...)."""
    driver_cpus: float = 1.0
    """CPUs reserved for each trial's driver and learner (its placement group's bundle 0)."""
    worker_cpus: float = 1.0
    """CPUs reserved for each rollout worker of a trial (one bundle each)."""
    max_concurrent: int = 0
    """Trials running at once (0: as many as the cluster's CPUs hold)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: a grid point with one seed."""

    name: str
    """Its run directory's name under runs/<sweep>/."""
    params: dict[str, Any]
    """The grid values of this trial (seed excluded)."""
    seed: int
    """Its run seed."""


def parse_seeds(value: Any) -> list[int]:
    """``"0:5"`` -> [0..4] (a Python range, end excluded), ``"0,3,7"`` or [0, 3, 7] -> those,
    ``3`` -> [3]."""
    bad = SweepError(
        f"seeds {value!r}: expected START:END (end excluded, e.g. 0:5), a list 0,1,2, or one seed"
    )
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        seeds = [value]
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad
        seeds = list(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if ":" in text:
                lo, hi = (int(p) for p in text.split(":"))
                seeds = list(range(lo, hi))
            else:
                seeds = [int(p) for p in text.split(",") if p.strip()]
        except ValueError:
            raise bad from None
    else:
        raise bad
    if not seeds:
        raise SweepError(f"seeds {value!r} select no seed: END must be above START (0:5 is seeds 0..4)")
    if min(seeds) < 0:
        raise SweepError(f"seeds {value!r}: seeds must be >= 0")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds {value!r}: a seed is listed twice")
    return seeds


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["lr=[3e-4,1e-3]", "epochs=4"]`` -> {"lr": [0.0003, 0.001], "epochs": [4]} (YAML values;
    a scalar is a one-value axis)."""
    grid: dict[str, list[Any]] = {}
    for key, value in parse_set(items).items():
        if key in grid:
            raise SweepError(f"--grid {key} is given twice: list its values once, {key}=[a,b]")
        grid[key] = _axis(key, value)
    return grid


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _number(v: Any) -> Any:
    """YAML 1.1 reads ``3e-4`` (no dot) as a string; a grid value is meant as the number."""
    return float(v) if isinstance(v, str) and _NUMBER.fullmatch(v.strip()) else v


def _axis(key: str, value: Any) -> list[Any]:
    values = [_number(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if not values:
        raise SweepError(f"grid {key}: no values; give at least one, {key}=[a,b]")
    if key == "seed":
        raise SweepError("grid seed: sweep seeds with --seeds 0:5 (or seeds: in the sweep file), not --grid")
    return values


SPEC_KEYS = {"name", "algo", "env", "seeds", "grid", "set", "driver_cpus", "worker_cpus", "max_concurrent"}


def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """A sweep file's mapping, checked for unknown top-level keys (flags may still override it).
    Keys other than those of :data:`SPEC_KEYS` are run config keys, like ``set:``'s."""
    p = Path(path)
    if not p.is_file():
        raise SweepError(f"sweep file {p} does not exist: pass an existing YAML file")
    data = _read_mapping(p, "sweep file")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise SweepError(f"sweep file {p}: grid must be a mapping of key: [values]")
    data["grid"] = {str(k): _axis(str(k), v) for k, v in grid.items()}
    fixed = data.get("set") or {}
    if not isinstance(fixed, dict):
        raise SweepError(f"sweep file {p}: set must be a mapping of key: value")
    extra = {k: v for k, v in data.items() if k not in SPEC_KEYS}
    data["set"] = {**extra, **fixed}
    for k in extra:
        del data[k]
    return data


def build_spec(file_data: dict[str, Any] | None, **flags: Any) -> SweepSpec:
    """The sweep file's fields, then the command-line flags that were given (not None) on top;
    ``grid`` and ``set`` merge key by key."""
    data = dict(file_data or {})
    overrides = dict(data.pop("set", {}) or {})
    overrides.update(flags.pop("overrides", None) or {})
    grid = dict(data.pop("grid", {}) or {})
    grid.update(flags.pop("grid", None) or {})
    data.update({k: v for k, v in flags.items() if v is not None})
    if not data.get("algo") or not data.get("env"):
        raise SweepError("sweep needs --algo and --env (or algo: and env: in the sweep file)")
    for key in ("driver_cpus", "worker_cpus"):
        if key in data and not (isinstance(data[key], (int, float)) and data[key] > 0):
            raise SweepError(f"{key} {data[key]!r}: must be a positive number of CPUs")
    limit = data.get("max_concurrent", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise SweepError(f"max_concurrent {limit!r}: must be a whole number >= 0 (0: no limit)")
    if "seed" in overrides:
        raise SweepError("a sweep sets each trial's seed: use --seeds 0:5, not --set seed=")
    if "run_dir" in overrides:
        raise SweepError(
            "a sweep names each trial's run directory: drop run_dir (use --name for runs/<name>/)"
        )
    collide = sorted(set(grid) & set(overrides))
    if collide:
        raise SweepError(f"{collide[0]} is both swept (grid) and fixed (--set): keep one")
    name = str(data.get("name") or "")
    if name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=+-]*", name):
        raise SweepError(f"sweep name {name!r}: use letters, digits and . _ = + - (it names a directory)")
    return SweepSpec(
        algo=str(data["algo"]),
        env=str(data["env"]),
        name=name,
        seeds=parse_seeds(data.get("seeds", [0])),
        grid=grid,
        overrides=overrides,
        driver_cpus=float(data.get("driver_cpus", 1.0)),
        worker_cpus=float(data.get("worker_cpus", 1.0)),
        max_concurrent=int(data.get("max_concurrent", 0)),
    )


def _fmt(v: Any) -> str:
    """A grid value as it appears in a trial name: short, filesystem-safe."""
    if isinstance(v, float):
        text = f"{v:g}"
    elif isinstance(v, str):
        text = v
    else:
        text = json.dumps(v, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)[:40]


def expand(spec: SweepSpec) -> list[Trial]:
    """Every grid combination x every seed, in a stable order (grid keys as given, seeds last).

    Trial names are ``key=value,...,seed=N`` (values cut to a safe form); two grid points that
    print alike get a numeric suffix rather than sharing a directory.
    """
    keys = list(spec.grid)
    trials: list[Trial] = []
    used: set[str] = set()
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        params = dict(zip(keys, combo, strict=True))
        stem = ",".join(f"{k}={_fmt(v)}" for k, v in params.items())
        for seed in spec.seeds:
            name = f"{stem},seed={seed}" if stem else f"seed={seed}"
            base, n = name, 1
            while name in used:
                n += 1
                name = f"{base}~{n}"
            used.add(name)
            trials.append(Trial(name, params, seed))
    return trials


def trial_overrides(spec: SweepSpec, trial: Trial, run_dir: Path) -> dict[str, Any]:
    """The flat ``--set``-style overrides that make ``trial``'s run config.

    An off-policy trial's replay buffer is named ``<sweep>/<trial>``, not the default (its run
    directory's name), which two sweeps with the same grid would share on one Redis.
    """
    out = {**spec.overrides, **trial.params, "seed": trial.seed, "run_dir": str(run_dir)}
    out.setdefault("replay_name", f"{run_dir.parent.name}/{trial.name}")
    return out


def default_sweep_name(algo: str, env: str) -> str:
    env_part = re.sub(r"[^A-Za-z0-9.-]", "_", env.split(":")[-1])
    return f"{algo}-{env_part}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"


SPEC_FILE = "sweep.json"
"""Written into runs/<sweep>/ at the start: the spec and its trials, for --resume and the dashboard."""


def write_spec(sweep_dir: Path, spec: SweepSpec, trials: list[Trial]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "spec": spec.to_dict(),
        "trials": [{"name": t.name, "params": t.params, "seed": t.seed} for t in trials],
    }
    (sweep_dir / SPEC_FILE).write_text(json.dumps(payload, indent=1, default=str))


def read_spec(sweep_dir: Path) -> tuple[SweepSpec, list[Trial]]:
    path = Path(sweep_dir) / SPEC_FILE
    if not path.is_file():
        raise SweepError(f"{sweep_dir} is not a sweep directory (no {SPEC_FILE}): pass runs/<sweep>")
    try:
        data = json.loads(path.read_text())
        spec = SweepSpec(**data["spec"])
        trials = [Trial(t["name"], dict(t["params"]), int(t["seed"])) for t in data["trials"]]
    except (ValueError, KeyError, TypeError) as e:
        raise SweepError(
            f"{path} is damaged ({type(e).__name__}): start the sweep again under a new --name"
        ) from None
    return spec, trials


# --------------------------------------------------------------------------- results


def final_metrics(run_dir: Path, window: int = RETURN_WINDOW) -> dict[str, Any]:
    """A run directory's final figures: status, env steps, wall time, and the final return,

    final return = mean of the last ``window`` episode returns of the run (None before any
    episode ends), the same trailing mean ``--stop-return`` tests.
    """
    run_dir = Path(run_dir)
    out: dict[str, Any] = {"status": "missing", "error": None, "env_steps": None, "wall_time_s": None}
    out["final_return"] = None
    try:
        status = json.loads((run_dir / "status.json").read_text())
        out["status"] = status.get("status", "unknown")
        out["error"] = status.get("error")
    except (OSError, ValueError):
        pass
    returns: list[float] = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn last line of a crashed run
        if not isinstance(row, dict):
            continue
        out["env_steps"] = row.get("env_steps", out["env_steps"])
        out["wall_time_s"] = row.get("wall_time_s", out["wall_time_s"])
        returns.extend(r for r in row.get("episode_returns") or [] if isinstance(r, (int, float)))
    if returns:
        tail = returns[-window:]
        out["final_return"] = sum(tail) / len(tail)
    return out


SUMMARY_COLUMNS = ("trial", "config", "seed", "status", "final_return", "env_steps", "wall_time_s", "error")


def summary_rows(sweep_dir: Path, trials: list[Trial], errors: dict[str, str], window: int) -> list[dict]:
    """One row per trial, from its run directory; ``errors`` (trial name -> message, from the
    engine) marks a trial failed even if it died before its run directory said so."""
    rows = []
    for t in trials:
        m = final_metrics(sweep_dir / t.name, window)
        status = m["status"]
        error = errors.get(t.name) or m["error"]
        if t.name in errors and status != "finished":
            status = "failed"
        elif status == "crashed":
            status = "failed"
        elif status == "running":
            # Read after the engine returned: nothing runs any more, so the trial was stopped
            # mid-way (Ctrl-C on the sweep) and its run directory never closed.
            status = "interrupted"
        rows.append(
            {
                "trial": t.name,
                "config": ",".join(f"{k}={_fmt(v)}" for k, v in t.params.items()) or "-",
                "seed": t.seed,
                "status": status,
                "final_return": m["final_return"],
                "env_steps": m["env_steps"],
                "wall_time_s": m["wall_time_s"],
                "error": (error or "").splitlines()[0][:200] if error else None,
            }
        )
    return rows


def write_summary(sweep_dir: Path, rows: list[dict]) -> tuple[Path, Path]:
    """runs/<sweep>/summary.json and summary.csv, replaced atomically."""
    js, cs = sweep_dir / "summary.json", sweep_dir / "summary.csv"
    tmp = sweep_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps({"trials": rows}, indent=1))
    tmp.replace(js)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    tmp = sweep_dir / ".summary.csv.tmp"
    tmp.write_text(buf.getvalue())
    tmp.replace(cs)
    return js, cs


def format_table(rows: list[dict]) -> str:
    """The summary as one plain-text table, then one line per group: median final return of
    its seeds (``config``: the grid values)."""
    heads = ["trial", "status", "final return", "env steps", "wall s"]
    body = []
    for r in rows:
        ret = r["final_return"]
        body.append(
            [
                r["trial"],
                r["status"],
                "-" if ret is None else f"{ret:.2f}",
                "-" if r["env_steps"] is None else str(r["env_steps"]),
                "-" if r["wall_time_s"] is None else f"{r['wall_time_s']:.1f}",
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]

    def line(cells: list[str]) -> str:
        # Names and statuses left-aligned, numbers right-aligned.
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [line(heads), line(["-" * w for w in widths]), *(line(b) for b in body)]
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r["config"], [])
        if r["status"] == "finished" and r["final_return"] is not None:
            groups[r["config"]].append(r["final_return"])
    if len(groups) > 1 or any(len(v) > 1 for v in groups.values()):
        out.append("")
        for cfg, rets in groups.items():
            med = "-" if not rets else f"{median(rets):.2f}"
            what = cfg if cfg != "-" else "all trials"
            out.append(f"{what}: median final return {med} over {len(rets)} finished seed(s)")
    for r in rows:
        if r["error"]:
            out.append(f"{r['trial']} failed: {r['error']}")
    return "\n".join(out)


def median(xs: list[float]) -> float:
    """The middle value of sorted ``xs`` (the mean of the two middle ones for an even count)."""
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return math.nan
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
