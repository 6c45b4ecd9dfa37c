"""RLlib reference runs written in Tandem's run-directory format.

``run_rllib("ppo", "CartPole-v1", 200_000, seed=0, run_dir=...)`` trains RLlib's own
algorithm (new API stack: RLModule, Learner, EnvRunner) with the hyperparameters of RLlib's
tuned examples and writes ``config.yaml`` (``framework: rllib``), ``metrics.jsonl`` (one
row per ``algo.train()`` iteration, the fields of :data:`core.metrics.METRIC_FIELDS`) and
``status.json``, so the dashboard, the report and the benchmarks read it like a Tandem run.

How each field is obtained, and where it is an approximation:

====================  ==================================================================
field                 source
====================  ==================================================================
episode_returns       exact: an ``on_episode_end`` callback logs every finished
                      episode's return (``reduce="item_series"``), so the row lists the
                      returns of the episodes finished during that iteration
episode_return_mean   mean of those returns (None if none finished); RLlib's own
                      ``env_runners/episode_return_mean`` (a 100-episode window) is kept
                      as ``rllib/episode_return_mean``
env_steps, episodes   ``env_runners/num_env_steps_sampled_lifetime``, ``num_episodes_lifetime``
wall_time_s           seconds since before ``ray.init`` (start-up and algorithm build count,
                      as they do for Tandem's runs)
samples_trained       ``learners/__all_modules__/num_module_steps_trained_lifetime``: rows
                      fed to the loss, counted with repetition (PPO: about epochs x batch;
                      RLlib cycles minibatches, so PPO's ratio is a little above num_epochs)
grad_updates          approximate: the sum over iterations of
                      num_module_steps_trained / module_train_batch_size_mean, i.e.
                      minibatch (PPO) or train-batch (DQN, SAC) updates; RLlib's new stack
                      reports no update counter
policy_lag            learner ``weights_seq_no`` minus the env runners' ``weights_seq_no``
                      (weight versions, not gradient steps)
replay_size           not reported: RLlib's episode replay buffers expose no size in the
                      result; ``replay/*`` uses histograms are absent too (RLlib does not
                      count per-transition uses), so the dashboard shows only the mean
worker_env_steps_per_s  absent: RLlib aggregates env-runner metrics before they reach the
                      driver
====================  ==================================================================

``stop_return`` uses the same rule as Tandem's driver and ``benchmarks.common``: stop once
the mean of the last 20 episode returns (at least 20 episodes) reaches it. The check runs
after each ``train()`` iteration, so a run can overshoot by up to one iteration's steps
(PPO CartPole: 4000); the benchmarks score time-to-threshold from the rows, per episode.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tandem.core.errors import TandemError
from tandem.core.metrics import RETURN_WINDOW, MetricsRow, finite_float
from tandem.learners.registry import get_algo
from tandem.runner.progress import window_reached
from tandem.runner.rundir import RunDir, default_run_dir, write_status

EPISODE_RETURNS_KEY = "tandem_episode_returns"
"""The per-episode list our callback adds to ``result["env_runners"]``."""


class BaselineError(TandemError):
    """A bad request (unknown algo, env that RLlib cannot build, used run dir): one line."""


# Hyperparameters of RLlib's tuned examples (ray-project/ray, rllib/tuned_examples), by section
# of the AlgorithmConfig they go to. "model" goes to DefaultModelConfig.
TUNED: dict[str, dict[str, Any]] = {
    # rllib/tuned_examples/ppo/cartpole_ppo.py
    "ppo": {
        "source": "rllib/tuned_examples/ppo/cartpole_ppo.py",
        "training": {
            "gamma": 0.99,
            "lr": 0.0003,
            "num_epochs": 6,
            "vf_loss_coeff": 0.01,
            "use_kl_loss": True,
        },
        "model": {"fcnet_hiddens": [32], "fcnet_activation": "linear", "vf_share_layers": True},
    },
    # rllib/tuned_examples/dqn/cartpole_dqn.py: dueling, double Q, n-step (2..5), prioritized replay
    "dqn": {
        "source": "rllib/tuned_examples/dqn/cartpole_dqn.py",
        "training": {
            "lr": 0.0005,
            "train_batch_size_per_learner": 32,
            "replay_buffer_config": {
                "type": "PrioritizedEpisodeReplayBuffer",
                "capacity": 50000,
                "alpha": 0.6,
                "beta": 0.4,
            },
            "n_step": (2, 5),
            "double_q": True,
            "dueling": True,
            "epsilon": [(0, 1.0), (10000, 0.02)],
        },
        "model": {
            "fcnet_hiddens": [256],
            "fcnet_activation": "tanh",
            "fcnet_bias_initializer": "zeros_",
            "head_fcnet_bias_initializer": "zeros_",
            "head_fcnet_hiddens": [256],
        },
    },
    # rllib/tuned_examples/sac/pendulum_sac.py (kernel initializers dropped: they are torch
    # callables in the example and do not survive config.yaml)
    "sac": {
        "source": "rllib/tuned_examples/sac/pendulum_sac.py",
        "training": {
            "initial_alpha": 1.001,
            "actor_lr": 2e-4,
            "critic_lr": 8e-4,
            "alpha_lr": 9e-4,
            "lr": None,
            "target_entropy": "auto",
            "n_step": (2, 5),
            "tau": 0.005,
            "train_batch_size_per_learner": 256,
            "target_network_update_freq": 1,
            "replay_buffer_config": {
                "type": "PrioritizedEpisodeReplayBuffer",
                "capacity": 100000,
                "alpha": 1.0,
                "beta": 0.0,
            },
            "num_steps_sampled_before_learning_starts": 256,
        },
        "model": {
            "fcnet_hiddens": [256, 256],
            "fcnet_activation": "relu",
            "head_fcnet_hiddens": [],
            "head_fcnet_activation": None,
            "head_fcnet_kernel_initializer": "orthogonal_",
            "head_fcnet_kernel_initializer_kwargs": {"gain": 0.01},
        },
        "reporting": {"metrics_num_episodes_for_smoothing": 5},
    },
}

# A stronger PPO than the tuned example's linear 32-unit net: RLlib's default nets (256x256 tanh,
# separate value net) with a larger batch and more epochs. Measured here: 475 on CartPole at
# 32k-40k env steps with 1 env runner, against about 124k for the tuned example.
PPO_STRONG: dict[str, Any] = {
    "source": "RLlib defaults, batch 4000, minibatch 128, 10 epochs, lr 3e-4 (no tuned example)",
    "training": {
        "gamma": 0.99,
        "lr": 0.0003,
        "num_epochs": 10,
        "train_batch_size_per_learner": 4000,
        "minibatch_size": 128,
    },
    "model": {},
}
PRESETS: dict[str, dict[str, Any]] = {"tuned": {}, "strong": {"ppo": PPO_STRONG}}
"""``--preset``: ``tuned`` is RLlib's tuned example per algorithm; ``strong`` replaces it where a
stronger configuration is known (PPO)."""

# rllib/tuned_examples/sac/halfcheetah_sac.py: MuJoCo locomotion differs from Pendulum.
SAC_MUJOCO_TRAINING = {
    "initial_alpha": 1.001,
    "actor_lr": 3e-4,
    "critic_lr": 3e-4,
    "alpha_lr": 3e-4,
    "lr": None,
    "n_step": 1,
    "replay_buffer_config": {
        "type": "PrioritizedEpisodeReplayBuffer",
        "capacity": 100000,
        "alpha": 0.6,
        "beta": 0.4,
    },
    "num_steps_sampled_before_learning_starts": 10000,
}
MUJOCO_PREFIXES = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer", "Reacher")

_SECTIONS = ("training", "model", "env_runners", "reporting")


def tuned_hyperparameters(
    algo: str, env_id: str, overrides: Mapping[str, Any] | None = None, preset: str = "tuned"
) -> dict:
    """The sections of hyperparameters for ``algo`` on ``env_id``, with ``overrides`` applied.

    ``preset`` picks RLlib's tuned example (``tuned``) or a stronger known config (``strong``,
    where one exists). ``overrides`` is flat (``{"lr": 1e-3}`` goes to ``training``) or names a
    section (``{"model": {"fcnet_hiddens": [64, 64]}}``, ``{"env_runners": {...}}``).
    """
    if algo not in TUNED:
        raise BaselineError(f"unknown RLlib baseline algo {algo!r}: choose one of {', '.join(TUNED)}")
    if preset not in PRESETS:
        raise BaselineError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    hp = copy.deepcopy(PRESETS[preset].get(algo, TUNED[algo]))
    if algo == "sac" and env_id.startswith(MUJOCO_PREFIXES):
        hp["source"] = "rllib/tuned_examples/sac/halfcheetah_sac.py"
        hp["training"].update(copy.deepcopy(SAC_MUJOCO_TRAINING))
        hp["reporting"]["min_sample_timesteps_per_iteration"] = 1000
    for key, value in (overrides or {}).items():
        if key in _SECTIONS and isinstance(value, Mapping):
            hp.setdefault(key, {}).update(value)
        else:
            hp.setdefault("training", {})[key] = value
    return hp


def _make_callbacks():
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class EpisodeReturns(RLlibCallback):
        """Logs each finished episode's return, so rows carry the raw per-episode list."""

        def on_episode_end(self, *, episode, prev_episode_chunks=None, metrics_logger=None, **kwargs) -> None:
            if metrics_logger is None:
                return
            # Off-policy runners sample in fragments: the episode's earlier chunks hold the
            # rest of its reward (RLlib sums them the same way for its own episode_return).
            ret = episode.get_return() + sum(c.get_return() for c in prev_episode_chunks or [])
            metrics_logger.log_value(EPISODE_RETURNS_KEY, float(ret), reduce="item_series")

    return EpisodeReturns


def build_config(
    algo: str, env_id: str, seed: int, workers: int, hp: dict, envs_per_worker: int = 1
):  # -> AlgorithmConfig
    """RLlib's AlgorithmConfig (new API stack) for the hyperparameter sections ``hp``."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig as Config
    elif algo == "dqn":
        from ray.rllib.algorithms.dqn import DQNConfig as Config
    else:
        from ray.rllib.algorithms.sac import SACConfig as Config
    training = {k: (list(v) if isinstance(v, list) else v) for k, v in hp.get("training", {}).items()}
    for k in ("n_step",):
        if isinstance(training.get(k), list):
            training[k] = tuple(training[k])
    if isinstance(training.get("epsilon"), list):
        training["epsilon"] = [tuple(e) for e in training["epsilon"]]
    config = (
        Config()
        .environment(env_id)
        .env_runners(
            num_env_runners=workers, num_envs_per_env_runner=envs_per_worker, **hp.get("env_runners", {})
        )
        .training(**training)
        .rl_module(model_config=DefaultModelConfig(**hp.get("model", {})))
        .callbacks(_make_callbacks())
        .debugging(seed=seed)
    )
    if hp.get("reporting"):
        config = config.reporting(**hp["reporting"])
    return config


def _get(d: Mapping, path: str, default=None):
    for part in path.split("/"):
        if not isinstance(d, Mapping) or part not in d:
            return default
        d = d[part]
    return d


class _RowMaker:
    """Turns ``algo.train()`` results into metrics rows (see the module docstring)."""

    def __init__(self, workers: int, t_start: float, window: int = RETURN_WINDOW):
        self.workers = workers
        self.window = window
        self.t_start = t_start
        self.grad_updates = 0.0
        self.last_t = t_start
        self.last_steps = 0.0
        self.last_updates = 0.0
        self.recent: list[float] = []

    def row(self, result: Mapping) -> dict:
        now = time.perf_counter()
        env = result.get("env_runners", {}) or {}
        learners = result.get("learners", {}) or {}
        steps = finite_float(env.get("num_env_steps_sampled_lifetime")) or finite_float(
            result.get("num_env_steps_sampled_lifetime")
        )
        steps = steps or 0.0
        rets = env.get(EPISODE_RETURNS_KEY)
        # A single logged item comes back as a bare number, none as NaN or missing.
        rets = [rets] if not isinstance(rets, (list, tuple)) else rets
        rets = [r for r in (finite_float(x) for x in rets) if r is not None]
        self.recent = (self.recent + rets)[-self.window :]
        trained = finite_float(_get(learners, "__all_modules__/num_module_steps_trained_lifetime")) or 0.0
        for mid, m in learners.items():
            if mid == "__all_modules__" or not isinstance(m, Mapping):
                continue
            n, bs = (
                finite_float(m.get("num_module_steps_trained")),
                finite_float(m.get("module_train_batch_size_mean")),
            )
            if n and bs:
                self.grad_updates += n / bs
        lag = None
        seq_env = finite_float(env.get("weights_seq_no"))
        seq_learn = [
            finite_float(m.get("weights_seq_no")) for k, m in learners.items() if isinstance(m, Mapping)
        ]
        seq_learn = [s for s in seq_learn if s is not None]
        if seq_env is not None and seq_learn:
            lag = max(seq_learn) - seq_env
        dt = max(now - self.last_t, 1e-9)
        extra: dict[str, Any] = {
            "return_mean_window": statistics.fmean(self.recent) if self.recent else None,
            "rllib/episode_return_mean": finite_float(env.get("episode_return_mean")),
            "rllib/iteration": int(result.get("training_iteration", 0)),
        }
        row = MetricsRow(
            env_steps=int(steps),
            episodes=int(finite_float(env.get("num_episodes_lifetime")) or 0),
            wall_time_s=round(now - self.t_start, 3),
            episode_return_mean=statistics.fmean(rets) if rets else None,
            episode_returns=[round(r, 4) for r in rets],
            grad_updates=int(round(self.grad_updates)),
            samples_trained=int(trained),
            replay_ratio=trained / steps if steps else 0.0,
            env_steps_per_s=round((steps - self.last_steps) / dt, 2),
            updates_per_s=round((self.grad_updates - self.last_updates) / dt, 2),
            workers=int(finite_float(_get(result, "fault_tolerance/num_healthy_workers")) or self.workers),
            policy_lag=lag if lag is not None else 0.0,
            extra=extra,
        ).to_json()
        for mid, m in learners.items():
            if mid == "__all_modules__" or not isinstance(m, Mapping):
                continue
            for k in (
                "policy_loss",
                "vf_loss",
                "entropy",
                "mean_kl_loss",
                "qf_loss",
                "alpha_loss",
                "alpha_value",
            ):
                v = finite_float(m.get(k))
                if v is not None:
                    row[f"loss/{k}" if "loss" in k else f"stats/{k}"] = v
        self.last_t, self.last_steps, self.last_updates = now, steps, self.grad_updates
        return row

    def reached(self, stop_return: float | None) -> bool:
        return window_reached(self.recent, self.window, stop_return)


def _plain(obj):
    """YAML-safe copy (tuples -> lists, other objects -> str)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def run_rllib(
    algo: str,
    env_id: str,
    total_steps: int,
    seed: int,
    run_dir: str | os.PathLike | None,
    workers: int = 1,
    stop_return: float | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    envs_per_worker: int = 1,
    return_window: int = RETURN_WINDOW,
    max_wall_s: float | None = None,
    preset: str = "tuned",
) -> Path:
    """Train RLlib's ``algo`` on ``env_id`` and write a Tandem run directory; returns its path.

    ``run_dir`` is the run directory itself (created; default ``runs/<algo>-<env>-<time>``).
    ``workers`` is RLlib's ``num_env_runners``. Ray is started with ``num_cpus`` (default
    ``workers + 1``, at least 2) unless it is already running or ``address`` names a cluster.
    Training stops at ``total_steps`` env steps, when the mean of the last ``return_window``
    episode returns reaches ``stop_return``, or after ``max_wall_s`` seconds (counted from the
    call, like the rows' wall time), whichever comes first. ``preset`` and ``config_overrides``
    choose and change the hyperparameters (see :func:`tuned_hyperparameters`).

    On an error during training the run is marked crashed (with the error) and the error
    propagates; a request RLlib cannot build (unknown env, bad override) raises
    :class:`BaselineError`.
    """
    t_start = time.perf_counter()  # before ray.init: start-up counts, as for Tandem's runs
    hp = tuned_hyperparameters(algo, env_id, config_overrides, preset)
    if total_steps <= 0:
        raise BaselineError(f"total_steps must be positive, not {total_steps}")
    if workers < 0:
        raise BaselineError(f"workers must be >= 0, not {workers}")
    try:
        import gymnasium as gym

        gym.spec(env_id)
    except Exception as e:  # noqa: BLE001 - gymnasium's NameNotFound, VersionNotFound, ...
        raise BaselineError(f"unknown gymnasium env {env_id!r}: {e}") from None
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(algo, env_id)
    if (run_dir / "metrics.jsonl").exists():
        raise BaselineError(f"run directory {run_dir} already holds a run; choose another --run-dir")

    import ray

    from tandem.cluster.group import init_ray

    started_ray = False
    algorithm = None
    rundir: RunDir | None = None
    try:
        if not ray.is_initialized():
            # The same start-up as Tandem's runs: a fresh loopback-only Ray, or the given cluster.
            init_ray(address, num_cpus or max(2, workers + 1))
            started_ray = True
        config_doc = {
            "algo": algo,
            "env_id": env_id,
            "seed": seed,
            "workers": workers,
            "envs_per_worker": envs_per_worker,
            "total_steps": total_steps,
            "stop_return": stop_return,
            "return_window": return_window,
            "max_wall_s": max_wall_s,
            "on_policy": get_algo(algo).on_policy,
            "framework": "rllib",
            "preset": preset,
            "rllib_version": ray.__version__,
            "hyperparameters_from": hp.get("source"),
            "algo_config": _plain({k: v for k, v in hp.items() if k != "source"}),
        }
        rundir = RunDir(run_dir, config_doc)
        rundir.attach_telemetry()  # TensorBoard; RLlib keeps its own Ray metrics
        try:
            algorithm = build_config(algo, env_id, seed, workers, hp, envs_per_worker).build_algo()
        except Exception as e:  # noqa: BLE001 - RLlib raises many kinds for a bad env or config
            root = e
            while root.__cause__ is not None or root.__context__ is not None:
                root = root.__cause__ or root.__context__
            lines = str(root).strip().splitlines()
            why = f"{root.__class__.__name__}: {lines[-1][:300]}" if lines else root.__class__.__name__
            raise BaselineError(f"RLlib cannot build {algo} on {env_id}: {why}") from e
        rows = _RowMaker(workers, t_start, return_window)
        while True:
            row = rows.row(algorithm.train())
            rundir.log(row)
            out_of_time = max_wall_s is not None and time.perf_counter() - t_start >= max_wall_s
            if row["env_steps"] >= total_steps or rows.reached(stop_return) or out_of_time:
                break
        rundir.close("finished")
    except BaseException as e:
        msg = f"{e.__class__.__name__}: {e}".strip()
        error = msg.splitlines()[0][:500] if msg else e.__class__.__name__
        if rundir is not None:
            rundir.close("crashed", error)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_status(run_dir, "crashed", error)
        raise
    finally:
        if algorithm is not None:
            try:
                algorithm.stop()
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        if started_ray:
            ray.shutdown()
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.rllib_baseline --algo ppo --env CartPole-v1 --total-steps 100000``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.rllib_baseline",
        description="Run RLlib (new API stack) and write metrics.jsonl, config.yaml and status.json "
        "in Tandem's format, so the dashboard and report show it beside Tandem's runs.",
    )
    p.add_argument("--algo", choices=sorted(TUNED), required=True)
    p.add_argument("--env", required=True, dest="env_id", metavar="ENV_ID", help="gymnasium id")
    p.add_argument("--total-steps", type=int, required=True, help="env steps to collect")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tuned", help="tuned example or stronger")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<algo>-<env>-<timestamp>)")
    p.add_argument("--workers", type=int, default=1, help="RLlib env runners (default: 1)")
    p.add_argument("--stop-return", type=float, default=None, help="stop once the trailing mean reaches this")
    p.add_argument("--return-window", type=int, default=RETURN_WINDOW, help="episodes in the trailing mean")
    p.add_argument("--max-wall-s", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--address", default=None, help="Ray address to join (default: start a local Ray)")
    args = p.parse_args(argv)
    try:
        run_dir = run_rllib(
            args.algo,
            args.env_id,
            args.total_steps,
            args.seed,
            args.run_dir,
            workers=args.workers,
            stop_return=args.stop_return,
            address=args.address,
            return_window=args.return_window,
            max_wall_s=args.max_wall_s,
            preset=args.preset,
        )
    except BaselineError as e:
        print(f"rllib_baseline: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
