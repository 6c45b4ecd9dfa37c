"""A training session: the resolved config, the learner, the counters and the run directory,
shared by the two drivers. ``train`` is the entry point that the CLI and the tests call."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.core.errors import TandemError
from tandem.learners.registry import AlgoSpec, get_algo
from tandem.runner.config import RunConfig, read_run_yaml, split_overrides, to_yaml_dict
from tandem.runner.envs import env_spaces
from tandem.runner.progress import Reporter, window_reached
from tandem.runner.rundir import Counters, RunDir, default_run_dir, load_checkpoint, set_rng_state

log = logging.getLogger("tandem")


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
    if run.workers < 1 or run.envs_per_worker < 1:
        raise TandemError("--workers and --envs-per-worker must be at least 1")
    if run.total_steps < 1:
        raise TandemError("--total-steps must be positive")
    if run.return_window < 1:
        raise TandemError("return_window must be at least 1 episode: --set return_window=20")
    return run, algo_cfg, spec


@dataclass
class Session:
    run_cfg: RunConfig
    algo_cfg: Any
    spec: AlgoSpec
    learner: Any
    rundir: RunDir
    counters: Counters
    quiet: bool = False
    t_start: float = 0.0
    """perf_counter() when train() began: wall time includes start-up."""
    resumed_from: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def worker_seed(self) -> int:
        # A resumed run must not replay the episodes it already saw: salt by progress.
        return (
            self.run_cfg.seed
            if self.counters.iterations == 0
            else self.run_cfg.seed + 7919 * self.counters.iterations
        )

    def start_workers(self, replay: dict[str, Any] | None = None):
        """The run's rollout workers on Ray (``replay``: where they write, for off-policy)."""
        from tandem.cluster.group import WorkerGroup

        run = self.run_cfg
        return WorkerGroup(
            run.workers,
            env_id=run.env_id,
            num_envs=run.envs_per_worker,
            algo=run.algo,
            algo_config=self.algo_cfg,
            seed=self.worker_seed,
            env_kwargs=run.env_kwargs,
            replay=replay,
        )

    def log(self, row: dict[str, Any]) -> None:
        self.rundir.log(row)

    def checkpoint(self) -> Path:
        return self.rundir.save_checkpoint(self.learner.state_dict(), self.counters)

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
    run: RunConfig, algo_cfg: Any, spec: AlgoSpec, resume_dir: Path | None = None, quiet: bool = False
) -> Session:
    obs_space, act_space = env_spaces(run.env_id, run.env_kwargs)
    learner = spec.make_learner(obs_space, act_space, algo_cfg)
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
        counters = Counters(**state["counters"])
        set_rng_state(state["rng"])
        rundir = RunDir(resume_dir, resume=True)
    else:
        path = Path(run.run_dir) if run.run_dir else default_run_dir(run.algo, run.env_id)
        run.run_dir = str(path)
        rundir = RunDir(path, to_yaml_dict(run, algo_cfg))
    return Session(run, algo_cfg, spec, learner, rundir, counters, quiet=quiet, resumed_from=resumed_from)


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


def train(
    run: RunConfig, algo_cfg: Any, spec: AlgoSpec, resume_dir: Path | None = None, quiet: bool = False
) -> Path:
    """Run a whole training job; returns the run directory. Joins or starts Ray."""
    from tandem.cluster.group import init_ray

    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(max(1, run.learner_threads))
    init_ray(run.address, run.num_cpus)
    s = open_session(run, algo_cfg, spec, resume_dir, quiet)
    s.t_start = t_start
    s.rundir.attach_telemetry(run.algo, run.env_id)
    if s.resumed_from:
        log.warning(
            "resuming %s from %s at %d env steps", run.run_dir, s.resumed_from.name, s.counters.env_steps
        )
    try:
        if spec.on_policy:
            from tandem.runner.on_policy import train_on_policy

            train_on_policy(s)
        else:
            from tandem.runner.off_policy import train_off_policy

            train_off_policy(s)
        s.checkpoint()
    except KeyboardInterrupt:
        s.checkpoint()
        s.rundir.close("crashed", "interrupted by the user")
        raise
    except BaseException as e:
        s.rundir.close("crashed", f"{type(e).__name__}: {str(e)[:300]}")
        raise
    s.rundir.close("finished")
    return Path(s.rundir.path)
