"""Run directories -> the numbers behind the dashboard and the static report.

Pure Python (no ray, no torch, no numpy): the live dashboard server and ``tandem report``
both build on :class:`RunStore`, so the two show the same curves.

A run directory holds ``config.yaml``, ``metrics.jsonl`` (one JSON object per line, the
fields of :data:`core.metrics.METRIC_FIELDS` plus namespaced extras) and ``status.json``.
``metrics.jsonl`` is read incrementally: each :meth:`RunStore.refresh` reads only the bytes
appended since the last one. A last line without its newline is a row still being
written; it is held back until the newline arrives. A complete line that is not a JSON
object with a numeric ``env_steps`` is skipped and reported as an :class:`Issue`, never
raised.

What the dashboard plots, per run and per row ``i``:

=============  =================================================================
``ret_smooth``  mean of the last ``smooth`` episode returns finished up to row i
                (a causal rolling mean, so appending rows never changes old values)
``points``      every raw episode return, placed evenly inside the reporting
                interval it finished in (the exact step is not recorded)
``reuse``       uses-per-transition distribution: from the replay's histograms for
                off-policy runs, derived from ``replay_ratio`` for on-policy runs
=============  =================================================================

Seeds of one configuration (same algo, env, framework, worker layout and
hyperparameters) form a group; :func:`group_band` gives the median of their smoothed
curves and a min-max band.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import re
import socket
import statistics
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tandem.core.metrics import METRIC_FIELDS, RETURN_WINDOW, finite_float

X_AXES: dict[str, str] = {
    "env_steps": "Env steps",
    "wall_time_s": "Wall-clock time (s)",
    "grad_updates": "Gradient updates",
}
"""The x-axis choices of the return and throughput plots: row field -> axis title."""

RUN_FILES = ("metrics.jsonl", "config.yaml", "status.json")
"""A directory holding any of these is a run directory."""

DEFAULT_STALE_S = 300.0
"""A "running" run whose status and metrics have not changed for this long shows as crashed."""

USES_BINS: tuple[tuple[int, int | None], ...] = tuple((i, i) for i in range(11)) + (
    (11, 15),
    (16, 31),
    (32, 63),
    (64, 127),
    (128, 255),
    (256, None),
)
"""Columns of the uses-per-transition view: exact counts 0..10, then doubling ranges."""

_DIR_RE = re.compile(r"^(?P<algo>[^-]+)-(?P<env>.+)-(?P<ts>\d{8}-\d{6})(?:-\d+)?$")
_MAX_DISCOVERY_DEPTH = 3


def uses_bin_labels() -> list[str]:
    """Labels of :data:`USES_BINS`: ``"0"``, ..., ``"10"``, ``"11-15"``, ..., ``"256+"``."""
    out = []
    for lo, hi in USES_BINS:
        out.append(str(lo) if hi == lo else (f"{lo}+" if hi is None else f"{lo}-{hi}"))
    return out


def _uses_col(uses: int) -> int:
    for j, (lo, hi) in enumerate(USES_BINS):
        if uses >= lo and (hi is None or uses <= hi):
            return j
    return len(USES_BINS) - 1


@dataclass(frozen=True)
class Issue:
    """Something wrong with the input, shown in the page and printed once on the console."""

    level: str
    """"error" (data was skipped or a run is unreadable), "warning" or "info"."""
    message: str
    """One line, naming the file (and line) it is about."""
    run: str | None = None
    """The run id it belongs to, None for a runs-directory problem."""

    def to_json(self) -> dict:
        return {"level": self.level, "message": self.message, "run": self.run}


MAX_DEPTH = 32
"""Nesting kept from config.yaml and status.json; the dashboard reads only the top levels."""
_MAX_INT = 2**63


def plain(v: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of parsed YAML/JSON: non-finite floats and ints beyond 64 bits become
    None (``json.dumps`` refuses NaN here and cannot print an int of 5000 digits), nesting
    beyond :data:`MAX_DEPTH` is cut, anything else (YAML dates) becomes text."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if -_MAX_INT <= v < _MAX_INT else None
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if depth >= MAX_DEPTH:
        return None
    if isinstance(v, dict):
        return {str(plain(k, depth + 1)): plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x, depth + 1) for x in v]
    return str(v)[:200]


def _num_list(v: Any) -> list[float | None] | None:
    if not isinstance(v, list):
        return None
    return [finite_float(x) for x in v]


def _count_list(v: Any) -> list[float] | None:
    if not isinstance(v, list) or not v:
        return None
    out = [finite_float(x) for x in v]
    if any(x is None or x < 0 for x in out):
        return None
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- discovery


def is_run_dir(path: Path) -> bool:
    """True if ``path`` holds any of :data:`RUN_FILES`."""
    return any((path / name).is_file() for name in RUN_FILES)


def discover_runs(roots: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Issue]]:
    """Run directories under ``roots``: each root is a run dir itself or a parent of run dirs.

    Parents are searched up to three levels deep (``runs/<sweep>/<run>`` works). Returns the
    run dirs in a stable order and issues for roots that are missing, not directories,
    or hold no runs.
    """
    found: list[Path] = []
    issues: list[Issue] = []
    seen: set[Path] = set()
    for root in roots:
        root = Path(root).expanduser()
        if not root.exists():
            issues.append(Issue("error", f"runs dir {str(root)!r} does not exist (waiting for it)"))
            continue
        if not root.is_dir():
            issues.append(Issue("error", f"runs dir {str(root)!r} is not a directory"))
            continue
        before = len(found)
        stack = [(root, 0)]
        while stack:
            d, depth = stack.pop()
            if is_run_dir(d):
                r = d.resolve()
                if r not in seen:
                    seen.add(r)
                    found.append(d)
                continue
            if depth >= _MAX_DISCOVERY_DEPTH:
                continue
            try:
                children = sorted((c for c in d.iterdir() if c.is_dir()), reverse=True)
            except OSError:
                continue
            stack.extend((c, depth + 1) for c in children if not c.name.startswith("."))
        if len(found) == before:
            issues.append(Issue("warning", f"no runs found in {str(root)!r} (a run dir holds metrics.jsonl)"))
    return found, issues


# --------------------------------------------------------------------------- status


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def effective_status(
    status: dict | None,
    last_activity: float | None,
    now: float,
    stale_s: float = DEFAULT_STALE_S,
    hostname: str | None = None,
) -> tuple[str, str | None]:
    """(status, reason) as the dashboard shows it: running, finished, crashed or unknown.

    A "running" run is shown as crashed when its pid is gone (checked only when
    ``status.json`` names no host or this host) or when neither ``status.json``'s
    ``updated`` nor the metrics file changed for ``stale_s`` seconds.
    ``last_activity`` is the newest mtime of the run's files.
    """
    hostname = hostname or socket.gethostname()
    if not isinstance(status, dict):
        if last_activity is not None and now - last_activity < stale_s:
            return "running", "no status.json yet"
        return "unknown", "no status.json"
    state = status.get("status")
    if state in ("finished", "crashed"):
        err = status.get("error")
        return state, (str(err) if err else None)
    if state != "running":
        return "unknown", f"status.json has status {state!r}"
    pid = status.get("pid")
    host = status.get("host") or status.get("hostname")
    if isinstance(pid, int) and (host is None or host == hostname) and not pid_alive(pid):
        return "crashed", f"process {pid} is gone (status.json still says running)"
    updated = finite_float(status.get("updated"))
    latest = max([t for t in (updated, last_activity) if t is not None], default=None)
    if latest is not None and now - latest > stale_s:
        return "crashed", f"no update for {int(now - latest)} s (status.json still says running)"
    return "running", None


# --------------------------------------------------------------------------- incremental reader


class MetricsTail:
    """Reads the rows appended to one ``metrics.jsonl`` since the last :meth:`poll`.

    The reader keeps a byte offset. A last line without a newline is kept back (it is being
    written) and counted as ``pending``; a complete line that is not a JSON object with a
    numeric ``env_steps`` is skipped and reported. If the file shrinks (rewritten), the
    reader restarts from the top and ``generation`` increases, so clients refetch.
    """

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.pending = b""
        self.line_no = 0
        self.generation = 0

    def reset(self) -> None:
        self.offset, self.pending, self.line_no = 0, b"", 0
        self.generation += 1

    def poll(self) -> tuple[list[tuple[int, dict]], list[tuple[int, str]], bool]:
        """(new rows as (line number, row), bad lines as (line number, reason), was_reset)."""
        was_reset = False
        try:
            size = self.path.stat().st_size
        except OSError:
            return [], [], False
        if size < self.offset:
            self.reset()
            was_reset = True
        if size == self.offset:
            return [], [], was_reset
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        data = self.pending + data
        lines = data.split(b"\n")
        self.pending = lines.pop()
        rows, bad = [], []
        for raw in lines:
            self.line_no += 1
            if not raw.strip():
                continue
            row, err = parse_line(raw)
            if err is None:
                rows.append((self.line_no, row))
            else:
                bad.append((self.line_no, err))
        return rows, bad, was_reset

    def parse_pending(self) -> tuple[dict | None, str | None]:
        """Try the held-back last line as a row (a finished run may end without a newline)."""
        if not self.pending.strip():
            return None, None
        return parse_line(self.pending)


def parse_line(raw: bytes) -> tuple[dict, None] | tuple[None, str]:
    """(row, None) or (None, reason) for one metrics line."""
    try:
        row = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        text = raw[:60].decode("utf-8", "replace")
        return None, f"not valid JSON ({e.__class__.__name__}: {str(e)[:120]}): {text!r}"
    except RecursionError:
        return None, "nested too deeply to read"
    if not isinstance(row, dict):
        return None, f"not a JSON object but {type(row).__name__}"
    if finite_float(row.get("env_steps")) is None:
        return None, "no numeric env_steps"
    return row, None


# --------------------------------------------------------------------------- per-run state

_COLUMNS = (
    "env_steps",
    "wall_time_s",
    "grad_updates",
    "episodes",
    "ret_mean",
    "ret_smooth",
    "replay_ratio",
    "model_ratio",
    "env_steps_per_s",
    "updates_per_s",
    "policy_lag",
    "replay_size",
    "workers",
    "worker_sps",
    "bonus_mean",
)
"""Columns served per row (``ret_*`` are derived; the rest come from the row; ``bonus_mean`` is
the learner's ``stats/bonus_mean``, the exploration bonus it adds to sampled rewards, which the
env's returns do not contain)."""


@dataclass
class Run:
    """One run directory: its config, status and the rows read so far (columnar)."""

    run_id: str
    path: Path
    smooth: int = RETURN_WINDOW
    config: dict = field(default_factory=dict)
    status: dict | None = None
    tail: MetricsTail | None = None
    cols: dict[str, list] = field(default_factory=lambda: {c: [] for c in _COLUMNS})
    points: dict[str, list] = field(default_factory=lambda: {"row": [], "frac": [], "ret": []})
    issues: list[Issue] = field(default_factory=list)
    missing_fields: set[str] = field(default_factory=set)
    hist_live: list[float] | None = None
    hist_evicted: list[float] | None = None
    _window: deque = field(default_factory=deque)
    _window_full_seen: bool = False
    best_return: float | None = None
    _config_mtime: float | None = None
    _status_mtime: float | None = None
    last_activity: float | None = None
    _reported: set[str] = field(default_factory=set)
    sweep: tuple[str, str] | None = None
    """(sweep name, its grid values for this trial) when the run is a ``tandem sweep`` trial."""

    # -- reading

    def refresh(self) -> list[Issue]:
        """Re-read config/status if changed and append new metric rows. Returns new issues."""
        new: list[Issue] = []
        mtimes = []
        cfg = self.path / "config.yaml"
        m = _mtime(cfg)
        if m is not None and m != self._config_mtime:
            self._config_mtime = m
            try:
                loaded = plain(yaml.safe_load(cfg.read_text()) or {})
                if not isinstance(loaded, dict):
                    raise ValueError("top level is not a mapping")
                self.config = loaded
                self.sweep = sweep_of(self.path)
            except (OSError, ValueError, RecursionError, yaml.YAMLError) as e:
                new += self._issue("warning", f"{cfg}: unreadable config ({e.__class__.__name__})", "cfg")
        mtimes.append(m)
        st = self.path / "status.json"
        m = _mtime(st)
        if m is not None and m != self._status_mtime:
            try:
                self.status = plain(json.loads(st.read_text()))
                self._status_mtime = m
            except (OSError, ValueError, RecursionError):
                pass  # being rewritten: keep the last good one and retry next refresh
        mtimes.append(m)
        mp = self.path / "metrics.jsonl"
        mtimes.append(_mtime(mp))
        self.last_activity = max((t for t in mtimes if t is not None), default=None)
        if self.tail is None and mp.exists():
            self.tail = MetricsTail(mp)
        if self.tail is not None:
            rows, bad, was_reset = self.tail.poll()
            if was_reset:
                self._clear()
            for line_no, reason in bad:
                new += self._issue(
                    "error", f"{mp} line {line_no}: {reason}; line skipped", f"line{line_no}:{reason}"
                )
            for line_no, row in rows:
                reason = self._append_or_skip(row)
                if reason:
                    new += self._issue(
                        "error", f"{mp} line {line_no}: {reason}; line skipped", f"line{line_no}:{reason}"
                    )
        return new

    def _append_or_skip(self, row: dict) -> str | None:
        """Append ``row``; if a field of an unexpected shape breaks that halfway, undo the partial
        row and return why, so one hostile line never costs the poll's other rows."""
        n, n_points, window = self.n_rows, len(self.points["row"]), list(self._window)
        saved = (self._window_full_seen, self.best_return, self.hist_live, self.hist_evicted)
        try:
            self._append(row)
            return None
        except Exception as e:  # noqa: BLE001 - any malformed row is skipped and reported
            for col in self.cols.values():
                del col[n:]
            for col in self.points.values():
                del col[n_points:]
            self._window = deque(window)
            self._window_full_seen, self.best_return, self.hist_live, self.hist_evicted = saved
            return f"unreadable row ({type(e).__name__})"

    def _issue(self, level: str, message: str, key: str) -> list[Issue]:
        if key in self._reported:
            return []
        self._reported.add(key)
        issue = Issue(level, message, self.run_id)
        self.issues.append(issue)
        return [issue]

    def _clear(self) -> None:
        self.cols = {c: [] for c in _COLUMNS}
        self.points = {"row": [], "frac": [], "ret": []}
        self._window.clear()
        self._window_full_seen = False
        self.best_return = None
        self.issues = [i for i in self.issues if "line" not in i.message]
        self._reported = {k for k in self._reported if not k.startswith("line")}

    def _append(self, row: dict) -> None:
        i = len(self.cols["env_steps"])
        missing = [f for f in METRIC_FIELDS if f not in row]
        if missing:
            self.missing_fields.update(missing)
        c = self.cols
        c["env_steps"].append(finite_float(row.get("env_steps")))
        c["wall_time_s"].append(finite_float(row.get("wall_time_s")))
        c["grad_updates"].append(finite_float(row.get("grad_updates")))
        c["episodes"].append(finite_float(row.get("episodes")))
        c["ret_mean"].append(finite_float(row.get("episode_return_mean")))
        rr = finite_float(row.get("replay_ratio"))
        if rr is None:
            st, es = finite_float(row.get("samples_trained")), finite_float(row.get("env_steps"))
            rr = st / es if st is not None and es else None
        c["replay_ratio"].append(rr)
        sm, es = finite_float(row.get("samples_model")), finite_float(row.get("env_steps"))
        c["model_ratio"].append(sm / es if sm and es else None)
        c["env_steps_per_s"].append(finite_float(row.get("env_steps_per_s")))
        c["updates_per_s"].append(finite_float(row.get("updates_per_s")))
        c["policy_lag"].append(finite_float(row.get("policy_lag")))
        size = row.get("replay_size", row.get("replay/size"))
        c["replay_size"].append(finite_float(size))
        c["workers"].append(finite_float(row.get("workers")))
        c["worker_sps"].append(_num_list(row.get("worker_env_steps_per_s")))
        c["bonus_mean"].append(finite_float(row.get("stats/bonus_mean")))
        # Returns: raw points and the causal rolling mean.
        rets = [r for r in _num_list(row.get("episode_returns")) or [] if r is not None]
        if rets:
            n = len(rets)
            for k, r in enumerate(rets):
                self.points["row"].append(i)
                self.points["frac"].append((k + 1) / n)
                self.points["ret"].append(r)
            self._push_returns(rets)
        elif c["ret_mean"][-1] is not None:
            # No per-episode list: count the row's mean once per episode it covers.
            prev = c["episodes"][-2] if i > 0 else 0.0
            cur = c["episodes"][-1]
            n = int(cur - (prev or 0.0)) if cur is not None else 1
            self._push_returns([c["ret_mean"][-1]] * max(1, min(n, self.smooth)))
        c["ret_smooth"].append(statistics.fmean(self._window) if self._window else None)
        if self._window and (self._window_full_seen or len(self._window) == self.smooth):
            self._window_full_seen = True
            v = c["ret_smooth"][-1]
            self.best_return = v if self.best_return is None else max(self.best_return, v)
        h_live = _count_list(row.get("replay/uses_hist_live"))
        h_ev = _count_list(row.get("replay/uses_hist_evicted"))
        if h_live is not None or h_ev is not None:
            self.hist_live, self.hist_evicted = h_live, h_ev

    def _push_returns(self, rets: Sequence[float]) -> None:
        for r in rets:
            self._window.append(r)
            if len(self._window) > self.smooth:
                self._window.popleft()

    # -- derived

    @property
    def n_rows(self) -> int:
        return len(self.cols["env_steps"])

    @property
    def algo(self) -> str:
        return str(self.config.get("algo") or self._from_name("algo") or "?")

    @property
    def env(self) -> str:
        return str(self.config.get("env_id") or self.config.get("env") or self._from_name("env") or "?")

    @property
    def framework(self) -> str:
        return str(self.config.get("framework") or "tandem")

    def _from_name(self, key: str) -> str | None:
        m = _DIR_RE.match(self.path.name)
        return m.group(key) if m else None

    @property
    def on_policy(self) -> bool | None:
        """Whether every transition is used a fixed number of times and dropped (True) or
        sampled from replay (False); None while unknown.

        ``config.yaml`` records it (key ``on_policy``). Runs written before that key existed
        are judged by their metrics: a replay size or a uses histogram means replay. Tandem's
        replay driver has always reported ``replay_size``, so Tandem rows without it mean no
        replay; other frameworks' rows (RLlib reports no replay size) stay unknown.
        """
        recorded = self.config.get("on_policy")
        if isinstance(recorded, bool):
            return recorded
        if self.hist_live is not None or self.hist_evicted is not None:
            return False
        if any(v is not None for v in self.cols["replay_size"]):
            return False
        return True if self.n_rows and self.framework == "tandem" else None

    def group_key(self) -> str:
        """Runs with equal keys are seeds of one configuration."""
        cfg = self.config
        algo_cfg = cfg.get("algo_config") or {}
        if isinstance(algo_cfg, dict):
            algo_cfg = {k: v for k, v in algo_cfg.items() if k not in ("seed",)}
        blob = json.dumps(
            [cfg.get("workers"), cfg.get("envs_per_worker"), algo_cfg], sort_keys=True, default=str
        )
        digest = hashlib.sha1(blob.encode()).hexdigest()[:6]
        if self.sweep is not None:
            # A sweep's trials group by their grid values, apart from runs outside the sweep.
            return f"{self.algo}|{self.env}|{self.framework}|sweep {self.sweep[0]}|{self.sweep[1]}|{digest}"
        return f"{self.algo}|{self.env}|{self.framework}|{digest}"

    def workers_range(self) -> list[int] | None:
        """[fewest, most] workers alive over the run's rows (node loss, elastic growth), or None."""
        seen = [int(v) for v in self.cols["workers"] if v is not None]
        return [min(seen), max(seen)] if seen else None

    def reuse(self) -> dict:
        """Uses-per-transition distribution, binned into :data:`USES_BINS` columns (fractions).

        ``kind``: "replay" (the replay's live + evicted histograms: every transition
        written so far), "derived" (on-policy: every transition used ``replay_ratio`` times;
        a fractional ratio is split between floor and ceil so the mean is exact), or "none".
        """
        ratio = next((v for v in reversed(self.cols["replay_ratio"]) if v is not None), None)
        out: dict[str, Any] = {"kind": "none", "fractions": None, "mean": ratio, "last_bin": None}
        hists = [h for h in (self.hist_live, self.hist_evicted) if h]
        if hists:
            n = max(len(h) for h in hists)
            counts = [sum(h[i] for h in hists if i < len(h)) for i in range(n)]
            total = sum(counts)
            if total > 0:
                fr = [0.0] * len(USES_BINS)
                for uses, cnt in enumerate(counts):
                    fr[_uses_col(uses)] += cnt / total
                out.update(kind="replay", fractions=fr, last_bin=n - 1)
                # Mean of the histogram; the last (>=) bin is counted at its lower edge.
                out["hist_mean"] = sum(u * cnt for u, cnt in enumerate(counts)) / total
            return out
        if self.on_policy and ratio is not None and ratio > 0:
            lo = math.floor(ratio)
            w_hi = ratio - lo
            fr = [0.0] * len(USES_BINS)
            fr[_uses_col(lo)] += 1.0 - w_hi
            if w_hi > 1e-9:
                fr[_uses_col(lo + 1)] += w_hi
            out.update(kind="derived", fractions=fr)
        return out

    def summary(self, now: float, stale_s: float) -> dict:
        """The run's row in ``/api/runs``: identity, status, progress, reuse, issues."""
        state, reason = effective_status(self.status, self.last_activity, now, stale_s)
        cfg = self.config
        last = lambda col: next((v for v in reversed(self.cols[col]) if v is not None), None)  # noqa: E731
        issues = list(self.issues)
        if self.missing_fields:
            issues.append(
                Issue(
                    "warning",
                    f"{self.path / 'metrics.jsonl'}: rows lack schema fields "
                    f"{', '.join(sorted(self.missing_fields))}",
                    self.run_id,
                )
            )
        pending = bool(self.tail and self.tail.pending.strip())
        if pending and state != "running":
            row, err = self.tail.parse_pending()  # type: ignore[union-attr]
            if err is not None:
                issues.append(
                    Issue(
                        "error",
                        f"{self.path / 'metrics.jsonl'} line {self.tail.line_no + 1}: "  # type: ignore[union-attr]
                        f"truncated last line ({err}); line skipped",
                        self.run_id,
                    )
                )
        return {
            "id": self.run_id,
            "name": self.path.name,
            "path": str(self.path),
            "algo": self.algo,
            "env": self.env,
            "framework": self.framework,
            "seed": cfg.get("seed"),
            "workers": cfg.get("workers", last("workers")),
            "workers_now": last("workers"),
            "workers_range": self.workers_range(),
            "envs_per_worker": cfg.get("envs_per_worker"),
            "total_steps": cfg.get("total_steps"),
            "group": self.group_key(),
            "sweep": self.sweep[0] if self.sweep else None,
            "sweep_config": self.sweep[1] if self.sweep else None,
            "on_policy": self.on_policy,
            "status": state,
            "status_reason": reason,
            "rows": self.n_rows,
            "gen": self.tail.generation if self.tail else 0,
            "pending_line": pending,
            "env_steps": last("env_steps"),
            "wall_time_s": last("wall_time_s"),
            "grad_updates": last("grad_updates"),
            "episodes": last("episodes"),
            "best_return": self.best_return,
            "last_return": last("ret_smooth"),
            "replay_ratio": last("replay_ratio"),
            "model_ratio": last("model_ratio"),
            "reuse": self.reuse(),
            "has_config": (self.path / "config.yaml").is_file(),
            "issues": [i.to_json() for i in issues],
        }

    def metrics(self, since: int = 0) -> dict:
        """Rows ``since`` .. end, columnar, plus the raw episode points of those rows."""
        since = max(0, min(since, self.n_rows))
        start = bisect.bisect_left(self.points["row"], since)
        return {
            "id": self.run_id,
            "gen": self.tail.generation if self.tail else 0,
            "since": since,
            "next": self.n_rows,
            "cols": {c: v[since:] for c, v in self.cols.items()},
            "points": {k: v[start:] for k, v in self.points.items()},
        }

    def series(self, x: str) -> tuple[list[float], list[float]]:
        """(x, smoothed return) pairs with both defined, for group bands."""
        xs, ys = [], []
        for xv, yv in zip(self.cols[x], self.cols["ret_smooth"], strict=True):
            if xv is not None and yv is not None:
                xs.append(xv)
                ys.append(yv)
        return xs, ys


SWEEP_FILE = "sweep.json"
"""Written by ``tandem sweep`` beside its trials' run directories: the grid values of each."""


def sweep_of(run_dir: Path) -> tuple[str, str] | None:
    """(sweep name, ``key=value,...`` grid values) if ``run_dir`` is a trial of a sweep, else None.

    A hand-edited or half-written sweep.json is no sweep (the run still shows, ungrouped by it).
    """
    try:
        data = json.loads((run_dir.parent / SWEEP_FILE).read_text())
        trial = next(t for t in data["trials"] if t["name"] == run_dir.name)
        params = trial["params"]
        text = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration, RecursionError):
        return None
    return run_dir.parent.name, text


def _mtime(p: Path) -> float | None:
    try:
        return p.stat().st_mtime
    except OSError:
        return None


# --------------------------------------------------------------------------- groups


def interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float | None:
    """Linear interpolation of the curve (xs ascending) at x; None outside [xs[0], xs[-1]]."""
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    j = bisect.bisect_left(xs, x)
    if xs[j] == x:
        return ys[j]
    x0, x1, y0, y1 = xs[j - 1], xs[j], ys[j - 1], ys[j]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def group_band(curves: Sequence[tuple[Sequence[float], Sequence[float]]], points: int = 120) -> dict:
    """Median and min-max band of several seeds' curves on a shared grid.

    The grid spans from the earliest start to the last x that at least half of the curves
    (and at least two) reach, so a live group's median stops where most seeds are, and a
    seed that crashed early does not cut the others short. ``n[i]`` is how many curves
    cover grid point i.

    ==========  ======================================
    ``x``       [G] grid
    ``median``  [G] median over the curves covering x
    ``lo/hi``   [G] min / max over the same curves
    ``n``       [G] number of curves covering x
    ==========  ======================================
    """
    curves = [(list(xs), list(ys)) for xs, ys in curves if len(xs) >= 1]
    # x must ascend for interpolation: keep the running maximum (rows are time-ordered).
    clean = []
    for xs, ys in curves:
        cx, cy = [], []
        for xv, yv in zip(xs, ys, strict=True):
            if not cx or xv > cx[-1]:
                cx.append(xv)
                cy.append(yv)
        clean.append((cx, cy))
    empty = {"x": [], "median": [], "lo": [], "hi": [], "n": []}
    if len(clean) < 2:
        return empty
    need = max(2, math.ceil(len(clean) / 2))
    ends = sorted((c[0][-1] for c in clean), reverse=True)
    x_end = ends[need - 1]
    x_start = min(c[0][0] for c in clean)
    if x_end <= x_start:
        return empty
    out: dict[str, list] = {"x": [], "median": [], "lo": [], "hi": [], "n": []}
    for g in range(points):
        x = x_start + (x_end - x_start) * g / (points - 1)
        vals = [v for v in (interp(cx, cy, x) for cx, cy in clean) if v is not None]
        if not vals:
            continue
        out["x"].append(x)
        out["median"].append(statistics.median(vals))
        out["lo"].append(min(vals))
        out["hi"].append(max(vals))
        out["n"].append(len(vals))
    return out


# --------------------------------------------------------------------------- the store


class RunStore:
    """All runs under some roots, refreshed incrementally; thread-safe.

    >>> store = RunStore(["runs"])
    >>> store.refresh()            # discover new runs, read appended rows
    >>> store.runs_json()          # what /api/runs serves
    >>> store.metrics(run_id, since=40)
    >>> store.groups(x="env_steps", ids=[...])
    """

    def __init__(
        self,
        roots: Sequence[str | os.PathLike],
        smooth: int = RETURN_WINDOW,
        stale_s: float = DEFAULT_STALE_S,
        rescan_s: float = 1.0,
    ):
        self.roots = [Path(r) for r in roots]
        self.smooth = max(1, int(smooth))
        self.stale_s = stale_s
        self.rescan_s = rescan_s
        self.runs: dict[str, Run] = {}
        self._by_path: dict[Path, str] = {}
        self.root_issues: list[Issue] = []
        self._lock = threading.RLock()
        self._last_scan = -math.inf
        self._printed: set[tuple[str, str | None]] = set()

    def refresh(self, force_scan: bool = False) -> list[Issue]:
        """Find new run dirs (at most every ``rescan_s``) and read new rows of every run.

        Returns the issues not returned before (to print on the console once).
        """
        with self._lock:
            new: list[Issue] = []
            now = time.monotonic()
            if force_scan or now - self._last_scan >= self.rescan_s:
                self._last_scan = now
                paths, self.root_issues = discover_runs(self.roots)
                for p in paths:
                    key = p.resolve()
                    if key in self._by_path:
                        continue
                    run_id = p.name
                    k = 2
                    while run_id in self.runs:
                        run_id, k = f"{p.name}~{k}", k + 1
                    self.runs[run_id] = Run(run_id, p, smooth=self.smooth)
                    self._by_path[key] = run_id
                new += self.root_issues
            for run in self.runs.values():
                new += run.refresh()
                for i in run.summary(time.time(), self.stale_s)["issues"]:
                    new.append(Issue(i["level"], i["message"], i["run"]))
            fresh = []
            for issue in new:
                key = (issue.message, issue.run)
                if key not in self._printed:
                    self._printed.add(key)
                    fresh.append(issue)
            return fresh

    def runs_json(self) -> dict:
        """``/api/runs``: every run's summary, the roots and the runs-directory issues."""
        with self._lock:
            now = time.time()
            runs = [r.summary(now, self.stale_s) for r in self.runs.values()]
            runs.sort(key=lambda r: (r["env"], r["algo"], r["framework"], str(r["seed"]), r["name"]))
            _label_groups(runs)
            return {
                "roots": [str(r) for r in self.roots],
                "runs": runs,
                "issues": [i.to_json() for i in self.root_issues],
                "smooth": self.smooth,
                "x_axes": X_AXES,
                "uses_bins": uses_bin_labels(),
                "time": now,
            }

    def metrics(self, run_id: str, since: int = 0) -> dict | None:
        with self._lock:
            run = self.runs.get(run_id)
            return None if run is None else run.metrics(since)

    def config_text(self, run_id: str) -> str | None:
        with self._lock:
            run = self.runs.get(run_id)
        if run is None:
            return None
        try:
            return (run.path / "config.yaml").read_text(errors="replace")
        except OSError:
            return None

    def groups(self, x: str = "env_steps", ids: Iterable[str] | None = None) -> dict[str, dict]:
        """Median/band per group that has at least two of ``ids`` (default: all runs)."""
        if x not in X_AXES:
            raise ValueError(f"unknown x axis {x!r}: choose one of {', '.join(X_AXES)}")
        with self._lock:
            chosen = [self.runs[i] for i in (ids if ids is not None else self.runs) if i in self.runs]
            members: dict[str, list[Run]] = {}
            for run in chosen:
                members.setdefault(run.group_key(), []).append(run)
            out = {}
            for key, runs in members.items():
                if len(runs) < 2:
                    continue
                band = group_band([r.series(x) for r in runs])
                band["members"] = [r.run_id for r in runs]
                out[key] = band
            return out

    def snapshot(self) -> dict:
        """Everything the static report needs: runs, all rows, groups for every x axis, configs."""
        self.refresh(force_scan=True)
        data = self.runs_json()
        with self._lock:
            data["metrics"] = {rid: r.metrics(0) for rid, r in self.runs.items()}
            data["configs"] = {rid: self.config_text(rid) for rid in self.runs}
        data["groups"] = {x: self.groups(x) for x in X_AXES}
        return data


def _label_groups(runs: list[dict]) -> None:
    """Give each run a group label; name what differs only when one algo/env/framework splits."""
    by_base: dict[tuple, set[str]] = {}
    for r in runs:
        by_base.setdefault((r["algo"], r["env"], r["framework"]), set()).add(r["group"])
    variant: dict[str, int] = {}
    for groups in by_base.values():
        for k, g in enumerate(sorted(groups)):
            variant[g] = k
    for r in runs:
        if r.get("sweep"):
            label = f"{r['algo']} · {r['sweep']} · {r.get('sweep_config') or 'seeds'}"
            r["group_label"] = label
            r["variant"] = variant[r["group"]]
            r["label"] = f"{label} · seed {r['seed']}"
            continue
        split = len(by_base[(r["algo"], r["env"], r["framework"])]) > 1
        label = f"{r['algo']} · {r['framework']}"
        if split:
            extra = []
            if r.get("workers") is not None:
                extra.append(f"w{r['workers']}")
            extra.append(f"cfg {r['group'].rsplit('|', 1)[-1]}")
            label += " (" + ", ".join(extra) + ")"
        r["group_label"] = label
        r["variant"] = variant[r["group"]]
        r["label"] = f"{label} · seed {r['seed']}" if r.get("seed") is not None else f"{label} · {r['name']}"
