"""A training session: the resolved config, the learner, the counters, the run directory and the
backend that runs the workers, shared by the two drivers. ``runner.train.train`` opens one and
hands it to a driver; the drivers import this module, and this module imports no driver."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.core.errors import TandemError
from tandem.core.protocols import Backend, Learner, WorkerGroup
from tandem.learners.registry import AlgoSpec, get_algo
from tandem.runner.config import RunConfig, parse_workers, read_run_yaml, split_overrides, to_yaml_dict
from tandem.runner.envs import check_vector_env, env_spaces
from tandem.runner.progress import Reporter, window_reached
from tandem.runner.rundir import (
    Counters,
    RunDir,
    continue_counters,
    default_run_dir,
    last_metrics_row,
    load_checkpoint,
    read_status,
    set_rng_state,
)
from tandem.runner.worker import salted_seed


def resolve_config(
    algo: str,
    env_id: str,
    overrides: dict[str, Any] | None = None,
    file_overrides: dict[str, Any] | None = None,
) -> tuple[RunConfig, Any, AlgoSpec]:
    """defaults -> algorithm preset for the env's spaces -> config file -> --set/flags.

    Validates the env id and that the algorithm fits its action space before anything starts.
    """
    spec = get_algo(algo)
    obs_space, act_space = env_spaces(
        env_id, (overrides or {}).get("env_kwargs") or (file_overrides or {}).get("env_kwargs")
    )
    reason = spec.check_spaces(obs_space, act_space)
    if reason:
        raise TandemError(f"{reason} ({env_id})")
    run = RunConfig(algo=algo, env_id=env_id)
    algo_cfg = spec.config_cls()
    if spec.preset is not None:
        split_overrides(run, algo_cfg, dict(spec.preset(obs_space, act_space, env_id)), "preset")
    split_overrides(run, algo_cfg, dict(file_overrides or {}), "--config")
    split_overrides(run, algo_cfg, dict(overrides or {}), "--set")
    parse_workers(run.workers)  # a bad form fails here, before anything starts
    if run.envs_per_worker < 1:
        raise TandemError("--envs-per-worker must be at least 1")
    check_vector_env(run.vector_env, run.env_id, run.env_kwargs, run.envs_per_worker)
    if run.total_steps < 1:
        raise TandemError("--total-steps must be positive")
    if run.return_window < 1:
        raise TandemError("return_window must be at least 1 episode: --set return_window=20")
    return run, algo_cfg, spec


@dataclass
class Session:
    """One run's state, as the drivers see it."""

    run_cfg: RunConfig
    """The resolved run config."""
    algo_cfg: Any
    """The algorithm's resolved config dataclass."""
    spec: AlgoSpec
    """The algorithm's registry entry."""
    learner: Learner
    """The algorithm's learner (restored from the checkpoint on --resume)."""
    rundir: RunDir
    """Where metrics, status and checkpoints go."""
    counters: Counters
    """Run totals; checkpointed, so a resumed run continues them."""
    backend: Backend
    """Where the rollout workers run (Ray actors, or in this process)."""
    quiet: bool = False
    """No progress display."""
    t_start: float = 0.0
    """perf_counter() when train() began: wall time includes start-up."""
    resumed_from: Path | None = None
    """The checkpoint this run resumed from, if any."""
    wall_before: float = 0.0
    """Wall seconds of the run before this process (a resumed run's checkpointed total)."""
    notes: list[str] = field(default_factory=list)
    """Free-form remarks for the report."""

    @property
    def worker_seed(self) -> int:
        # A resumed run must not replay the episodes it already saw: salt by the session number,
        # which grows with every process (iterations would repeat after a crash that came
        # before the next checkpoint).
        c = self.counters
        return self.run_cfg.seed if c.sessions == 0 else salted_seed(self.run_cfg.seed, c.sessions)

    def start_workers(self, replay: dict[str, Any] | None = None) -> WorkerGroup:
        """The run's rollout workers, on the session's backend (``replay``: where they write,
        for off-policy)."""
        run = self.run_cfg
        lo, hi = parse_workers(run.workers)
        # MIN:MAX and auto (max_workers 0: the cluster's CPUs) ask for an elastic group, whose
        # run_dir names its control channel (``tandem scale``); N keeps the plain call.
        elastic = {} if lo == hi else {"max_workers": hi or 0, "run_dir": run.run_dir}
        return self.backend.make_group(
            lo,
            **elastic,
            env_id=run.env_id,
            num_envs=run.envs_per_worker,
            algo=run.algo,
            algo_config=self.algo_cfg,
            seed=self.worker_seed,
            env_kwargs=run.env_kwargs,
            vector_env=run.vector_env,
            replay=replay,
        )

    def log(self, row: dict[str, Any]) -> None:
        self.rundir.log(row)

    def checkpoint(self) -> Path:
        self.counters.wall_time_s = self.wall_before + time.perf_counter() - self.t_start
        return self.rundir.save_checkpoint(self.learner.state_dict(), self.counters)

    def record_fragment(
        self, rep: Reporter, worker_index: int, env_steps: int, returns: Any, policy_version: int
    ) -> None:
        """Count one worker's fragment in the run totals and in the reporter's interval."""
        self.counters.record_fragment(env_steps, returns, self.run_cfg.return_window)
        rep.collected(worker_index, env_steps, returns, self.counters.version - policy_version)

    def reporter(self) -> Reporter:
        run = self.run_cfg
        return Reporter(
            self.counters,
            run.total_steps,
            f"{run.algo} {run.env_id}",
            self.quiet,
            self.t_start,
            window=run.return_window,
        )

    def should_stop(self) -> bool:
        run = self.run_cfg
        return window_reached(self.counters.recent_returns, run.return_window, run.stop_return)


def open_session(
    run: RunConfig,
    algo_cfg: Any,
    spec: AlgoSpec,
    backend: Backend,
    resume_dir: Path | None = None,
    quiet: bool = False,
    cpu_learner: bool = False,
) -> Session:
    """``cpu_learner``: build this process's learner on the CPU whatever ``algo_cfg.device`` says
    (a learner actor computes; this copy only holds its state for checkpoints)."""
    obs_space, act_space = env_spaces(run.env_id, run.env_kwargs)
    on_cpu = cpu_learner and hasattr(algo_cfg, "device")
    learner = spec.make_learner(
        obs_space, act_space, dataclasses.replace(algo_cfg, device="cpu") if on_cpu else algo_cfg
    )
    counters = Counters()
    resumed_from = None
    if resume_dir is not None:
        state, resumed_from = load_checkpoint(resume_dir)
        try:
            learner.load_state_dict(state["learner"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise TandemError(
                f"checkpoint {resumed_from} does not match the config in {resume_dir} "
                f"({str(e).splitlines()[0][:100]}): resume with the config it was written with"
            ) from None
        previous = read_status(resume_dir) or {}
        if (
            previous.get("status") == "running"
            and previous.get("host") == socket.gethostname()
            and previous.get("pid") != os.getpid()
        ):
            raise TandemError(
                f"{resume_dir} is still running (pid {previous.get('pid')}): stop that process "
                "first, or resume a copy of the run directory"
            )
        counters = continue_counters(
            Counters(**state["counters"]), last_metrics_row(Path(resume_dir) / "metrics.jsonl")
        )
        counters.sessions = max(counters.sessions, int(previous.get("session") or 0)) + 1
        set_rng_state(state["rng"])
        rundir = RunDir(resume_dir, resume=True, session=counters.sessions)
    else:
        path = Path(run.run_dir) if run.run_dir else default_run_dir(run.algo, run.env_id)
        run.run_dir = str(path)
        rundir = RunDir(path, to_yaml_dict(run, algo_cfg))
    return Session(
        run,
        algo_cfg,
        spec,
        learner,
        rundir,
        counters,
        backend,
        quiet=quiet,
        t_start=time.perf_counter(),
        resumed_from=resumed_from,
        wall_before=counters.wall_time_s,
    )


def load_run_config(run_dir: Path) -> tuple[RunConfig, Any, AlgoSpec]:
    """Read config.yaml back into typed configs (for --resume and eval)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise TandemError(
            f"{run_dir} is not a Tandem run directory (no config.yaml): pass a runs/<name> folder"
        )
    data = read_run_yaml(path)
    data.pop("framework", None)
    algo_config = data.pop("algo_config", {}) or {}
    spec = get_algo(data["algo"])
    run = RunConfig()
    known = {f.name for f in dataclasses.fields(RunConfig)}
    split_overrides(run, spec.config_cls(), {k: v for k, v in data.items() if k in known}, "config.yaml")
    algo_cfg = spec.config_cls()
    split_overrides(RunConfig(), algo_cfg, dict(algo_config), "config.yaml")
    return run, algo_cfg, spec
