"""Rollout throughput of the on-policy sampling path against the worker count. Prints one JSON object.

What is timed (Tandem): ``WorkerGroup.call_all("sample", T, weights_ref, version)`` in a loop, exactly
the collection step of ``runner.on_policy`` minus the learner update. Each call steps every worker's
vector env (``--envs-per-worker`` sub-envs) ``T`` times with the PPO policy of the env's preset, ships
the ``[T, N]`` rollouts back to the driver and blocks until all of them arrived (a synchronous
barrier, as in training). The weights are one ``ray.put`` object passed on every call with a constant
version, so workers resolve the reference but skip reloading the weights: the figure is sampling
throughput, not the cost of a weight broadcast. Each worker count gets a fresh ``WorkerGroup``, a
warm-up (actor start, first weight load, torch/gym first-call costs), then ``--seconds`` of timed calls.

What is timed (RLlib, unless ``--frameworks tandem``): the same shape with RLlib's new API stack. A PPO
``Algorithm`` with ``num_env_runners=N``, ``num_envs_per_env_runner`` and the same hidden sizes;
``env_runner_group.foreach_env_runner(lambda r: r.sample(num_timesteps=T * envs))`` on the remote
runners, the episodes shipped back to the driver, no training and no weight sync. Algorithm build
time is not counted for either framework.

Both share one local Ray started like Tandem's (``init_ray(None, num_cpus=os.cpu_count())``); each
worker / env runner asks for ``min(1, cpus / N)`` CPUs, so counts above the core count oversubscribe
(they still run: the speedup column then shows contention, not scaling).

Usage:
    python -m benchmarks.scaling                                  # CartPole-v1, 1..16 workers
    python -m benchmarks.scaling --seconds 3 --max-workers 8     # a quick look on a small machine
    python -m benchmarks.scaling --envs CartPole-v1 HalfCheetah-v5 --frameworks tandem
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import time
from typing import Any

WORKER_COUNTS = (1, 2, 4, 8, 16)


def tandem_group(env_id: str, workers: int, envs_per_worker: int) -> tuple[Any, Any, Any]:
    """A WorkerGroup with the PPO policy of ``env_id``'s preset, and one shared weights object."""
    import ray

    from tandem.cluster.group import RayWorkerGroup
    from tandem.learners.ppo import PPOLearner
    from tandem.runner.envs import env_spaces
    from tandem.runner.session import resolve_config

    run, cfg, _ = resolve_config("ppo", env_id, {"workers": workers, "envs_per_worker": envs_per_worker})
    obs_space, act_space = env_spaces(env_id)
    weights_ref = ray.put(PPOLearner(obs_space, act_space, cfg).get_weights())
    group = RayWorkerGroup(
        workers, env_id=env_id, num_envs=envs_per_worker, algo="ppo", algo_config=cfg, seed=run.seed
    )
    return group, weights_ref, cfg


def time_loop(step, warmup_s: float, seconds: float) -> dict[str, float]:
    """Call ``step()`` (returns env steps) for ``warmup_s`` untimed, then ``seconds`` timed."""
    end = time.perf_counter() + warmup_s
    step()  # at least one call: the first one pays for weight loading and lazy imports
    while time.perf_counter() < end:
        step()
    steps = calls = 0
    t0 = time.perf_counter()
    while True:
        steps += step()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    return {
        "env_steps_per_s": round(steps / elapsed, 1),
        "env_steps": steps,
        "calls": calls,
        "seconds": round(elapsed, 3),
    }


def measure_tandem(
    env_id: str, workers: int, envs_per_worker: int, fragment: int, warmup_s: float, seconds: float
) -> dict[str, Any]:
    group, weights_ref, _ = tandem_group(env_id, workers, envs_per_worker)
    T = fragment
    version = 1  # != the workers' initial 0: the first call loads the weights, later calls skip it

    def step() -> int:
        rollouts = group.call_all("sample", T, weights_ref, version)
        return sum(r.num_steps for r in rollouts)

    try:
        out = time_loop(step, warmup_s, seconds)
    finally:
        group.shutdown()
    out.update(steps_per_call=T * envs_per_worker * workers, worker_restarts=group.restarts)
    return out


def measure_rllib(
    env_id: str,
    runners: int,
    envs_per_worker: int,
    fragment: int,
    hidden: tuple[int, ...],
    warmup_s: float,
    seconds: float,
) -> dict[str, Any]:
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    cpus = float(ray.cluster_resources().get("CPU", 1))
    config = (
        PPOConfig()
        .environment(env_id)
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=envs_per_worker,
            rollout_fragment_length=fragment,
            num_cpus_per_env_runner=min(1.0, cpus / runners),
        )
        # Not trained here, but PPOConfig checks that the batch is a whole number of fragments.
        .training(train_batch_size_per_learner=fragment * envs_per_worker * runners, minibatch_size=128)
        .learners(num_learners=0)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(hidden)))
        .debugging(log_level="ERROR")
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        algo = config.build_algo()
    n = fragment * envs_per_worker

    def step() -> int:
        results = algo.env_runner_group.foreach_env_runner(
            lambda r: r.sample(num_timesteps=n), local_env_runner=False
        )
        return sum(len(ep) for episodes in results for ep in episodes)

    try:
        out = time_loop(step, warmup_s, seconds)
    finally:
        algo.stop()
    out.update(steps_per_call=n * runners)
    return out


def with_speedup(rows: dict[int, dict[str, Any]]) -> dict[str, Any]:
    base = rows.get(1, {}).get("env_steps_per_s")
    for r in rows.values():
        r["speedup_vs_1"] = round(r["env_steps_per_s"] / base, 2) if base else None
    return {str(k): v for k, v in rows.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--envs", nargs="+", default=["CartPole-v1"], help="env ids (e.g. CartPole-v1 HalfCheetah-v5)"
    )
    ap.add_argument("--max-workers", type=int, default=16, help="largest worker count of 1, 2, 4, 8, 16")
    ap.add_argument("--workers", type=int, nargs="+", help="explicit worker counts (overrides --max-workers)")
    ap.add_argument("--envs-per-worker", type=int, default=4)
    ap.add_argument("--fragment", type=int, help="steps per sub-env per call (default: the PPO preset's)")
    ap.add_argument("--seconds", type=float, default=10.0, help="timed seconds per point")
    ap.add_argument("--warmup", type=float, default=2.0, help="untimed seconds per point, after start-up")
    ap.add_argument(
        "--frameworks",
        nargs="+",
        choices=["tandem", "rllib"],
        default=["tandem", "rllib"],
        help="what to time",
    )
    ap.add_argument("--skip-rllib", action="store_true", help="same as --frameworks tandem")
    args = ap.parse_args(argv)
    frameworks = [f for f in args.frameworks if not (args.skip_rllib and f == "rllib")]
    counts = sorted(set(args.workers or [n for n in WORKER_COUNTS if n <= args.max_workers]))

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
    from tandem.cluster.group import init_ray
    from tandem.runner.session import resolve_config

    init_ray(None, num_cpus=os.cpu_count())
    import ray

    out: dict[str, Any] = {
        "benchmark": "on-policy rollout throughput vs worker count",
        "cpu_count": os.cpu_count(),
        "ray_cpus": ray.cluster_resources().get("CPU"),
        "machine": platform.machine(),
        # Other processes compete for the cores: a 1-minute load average above cpu_count means the
        # figures measure contention as much as Tandem or RLlib.
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "envs_per_worker": args.envs_per_worker,
        "seconds_per_point": args.seconds,
        "warmup_s": args.warmup,
    }
    if "tandem" in frameworks:
        out["tandem_measures"] = (
            "WorkerGroup.call_all('sample', T, weights_ref, version): env steps/s reaching the driver, "
            "constant version (no weight reload), no learner update"
        )
    if "rllib" in frameworks:
        out["rllib_measures"] = (
            "RLlib PPO (new API stack) EnvRunner.sample(num_timesteps=T*envs_per_worker) on every remote "
            "env runner via env_runner_group.foreach_env_runner, episodes returned to the driver; no "
            "training, no weight sync; same T, envs per runner and hidden sizes"
        )
    out["results"] = {}
    for env_id in args.envs:
        _, cfg, _ = resolve_config("ppo", env_id)
        frag = args.fragment or cfg.fragment_length
        res: dict[str, Any] = {"fragment_length": frag, "hidden": list(cfg.hidden)}
        tandem: dict[int, dict[str, Any]] = {}
        rllib: dict[int, dict[str, Any]] = {}
        if "tandem" in frameworks:
            for n in counts:
                tandem[n] = measure_tandem(env_id, n, args.envs_per_worker, frag, args.warmup, args.seconds)
            res["tandem"] = with_speedup(tandem)
        if "rllib" in frameworks:
            for n in counts:
                try:
                    rllib[n] = measure_rllib(
                        env_id, n, args.envs_per_worker, frag, tuple(cfg.hidden), args.warmup, args.seconds
                    )
                except Exception as e:  # report it, keep the other figures
                    rllib[n] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            ok = {k: v for k, v in rllib.items() if "env_steps_per_s" in v}
            res["rllib"] = {**with_speedup(ok), **{str(k): v for k, v in rllib.items() if k not in ok}}
            if tandem:
                res["tandem_over_rllib"] = {
                    str(n): round(tandem[n]["env_steps_per_s"] / ok[n]["env_steps_per_s"], 2) for n in ok
                }
        out["results"][env_id] = res
    out["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    ray.shutdown()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
