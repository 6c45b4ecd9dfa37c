"""``tandem sweep`` on Ray Tune: each trial is one ordinary Tandem run, ``runs/<sweep>/<trial>/``.

Tune schedules the trials, reserves each one's CPUs as a placement group (bundle 0: the trial's
driver and learner; bundles 1..N: its rollout workers, which ``RayWorkerGroup`` places there),
keeps going when a trial fails, and restores an interrupted sweep (``Tuner.restore`` on
``runs/<sweep>/.tune``). The grid, the trial names and the summary are ``runner.sweep``'s.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from tandem.cluster.group import RayBackend, init_ray
from tandem.core.errors import TandemError
from tandem.runner.sweep import (
    SweepSpec,
    Trial,
    final_metrics,
    format_table,
    summary_rows,
    trial_overrides,
    write_summary,
)

log = logging.getLogger("tandem")

TUNE_DIR = ".tune"
"""Tune's own state under runs/<sweep>/ (hidden: the dashboard skips dot-folders)."""
EXPERIMENT = "tune"


def _set_aside(run_dir: Path) -> None:
    """Move a trial's run directory that cannot be resumed (no checkpoint yet) out of the way,
    keeping it for a post-mortem: a hidden sibling the dashboard does not list."""
    dest = run_dir.with_name(f".{run_dir.name}.attempt-{time.strftime('%Y%m%d-%H%M%S')}")
    shutil.move(str(run_dir), str(dest))


def run_trial(config: dict[str, Any]) -> None:
    """Tune's trainable: one Tandem run with the trial's config, its final figures to Tune.

    A trial restarted after an interruption continues its run directory from the last
    checkpoint; a run directory that already finished is only reported again.
    """
    from tandem.runner.local import LocalBackend
    from tandem.runner.session import load_run_config, resolve_config
    from tandem.runner.train import train

    config = config["trial"]
    run_dir = Path(config["run_dir"])
    window = int(config["return_window"])
    if final_metrics(run_dir)["status"] != "finished":
        resume_dir = None
        if (run_dir / "config.yaml").is_file():
            if any((run_dir / "checkpoints").glob("*.pt")):
                resume_dir = run_dir
            else:
                _set_aside(run_dir)
        if resume_dir is not None:
            run, algo_cfg, spec = load_run_config(run_dir)
            run.run_dir = str(run_dir)
        else:
            run, algo_cfg, spec = resolve_config(config["algo"], config["env"], dict(config["overrides"]))
        # Bundle 0 of the trial's placement group reserves its driver and learner together, and
        # Tune keeps the trial's actors inside that group, where a learner actor has no bundle to
        # go to: "auto" (an actor on a joined cluster) means the driver here.
        run.learner = "local"
        backend = LocalBackend() if run.backend == "local" else RayBackend(run.address, run.num_cpus)
        train(run, algo_cfg, spec, resume_dir=resume_dir, quiet=True, backend=backend)
    m = final_metrics(run_dir, window)
    tune.report(
        {
            "final_return": m["final_return"] if m["final_return"] is not None else float("nan"),
            "env_steps": m["env_steps"] or 0,
            "wall_time_s": m["wall_time_s"] or 0.0,
        }
    )


def bundles(spec: SweepSpec, workers: int, backend: str) -> list[dict[str, float]]:
    """The trial's placement group: its driver+learner, then one bundle per rollout worker
    (none with ``backend=local``: the workers run in the driver's process)."""
    head = [{"CPU": spec.driver_cpus}]
    return head if backend == "local" else head + [{"CPU": spec.worker_cpus}] * workers


def _resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
    return tune.PlacementGroupFactory(config["trial"]["bundles"], strategy="PACK")


def run_sweep(
    spec: SweepSpec,
    trials: list[Trial],
    sweep_dir: Path,
    *,
    layouts: dict[str, tuple[int, str]],
    address: str | None,
    num_cpus: int | None,
    return_window: int,
    resume: bool = False,
    retry_failed: bool = False,
) -> list[dict]:
    """Run (or, with ``resume``, continue) every trial on Tune; write and return the summary rows.

    ``layouts``: trial name -> (workers, backend) of its resolved run config, which sizes its
    placement group (a grid over ``workers`` gives trials of different sizes).
    """
    sweep_dir = sweep_dir.resolve()
    init_ray(address, num_cpus)
    have = float(ray.cluster_resources().get("CPU", 0))
    for name, (workers, backend) in layouts.items():
        need = sum(b["CPU"] for b in bundles(spec, workers, backend))
        if need > have:
            raise TandemError(
                f"trial {name} needs {need:g} CPUs (driver {spec.driver_cpus:g} + {workers} worker(s) x "
                f"{spec.worker_cpus:g}) but the cluster has {have:g}: lower --driver-cpus/--worker-cpus "
                "(e.g. --worker-cpus 0.5), --workers, or raise --num-cpus"
            )
    trainable = tune.with_resources(run_trial, _resources)
    # Tune's new console output ignores verbose=0 (it prints its banner and tables); the table
    # that matters is the summary printed at the end.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    storage = sweep_dir / TUNE_DIR
    restored = resume and tune.Tuner.can_restore(str(storage / EXPERIMENT))
    if restored:
        tuner = tune.Tuner.restore(
            str(storage / EXPERIMENT),
            trainable,
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=retry_failed,
        )
    else:
        # A first start, or an interruption before Tune saved any state: the trials' run
        # directories, if any, continue from their own checkpoints (run_trial).
        configs = [
            {
                "run_dir": str(sweep_dir / t.name),
                "algo": spec.algo,
                "env": spec.env,
                "overrides": trial_overrides(spec, t, sweep_dir / t.name),
                "return_window": return_window,
                "bundles": bundles(spec, *layouts[t.name]),
            }
            for t in trials
        ]
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=spec.max_concurrent or None,
                reuse_actors=False,
                trial_dirname_creator=_dirname,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                verbose=0,
            ),
        )
    results = tuner.fit()
    errors: dict[str, str] = {}
    for r in results:
        if r.error is not None:
            name = Path((r.config or {}).get("trial", {}).get("run_dir", "?")).name
            errors[name] = _error_line(r.error)
    rows = summary_rows(sweep_dir, trials, errors, return_window)
    write_summary(sweep_dir, rows)
    return rows


def _dirname(trial: Any) -> str:
    """Tune's folder for a trial (under .tune/) is named like the trial's run directory."""
    return Path(trial.config["trial"]["run_dir"]).name


def _error_line(err: BaseException) -> str:
    """The trial's own exception, one line (Tune wraps it in a RayTaskError with a traceback)."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:300]


__all__ = ["bundles", "format_table", "run_sweep", "run_trial"]
