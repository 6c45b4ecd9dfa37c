"""Rollout throughput against the worker count, Tandem beside RLlib. Prints (and writes) one JSON object.

Two modes:

``real`` (CartPole-v1, HalfCheetah-v5, ...). What is timed (Tandem): ``WorkerGroup.call_all("sample",
T, weights_ref, version)`` in a loop, exactly the collection step of ``runner.on_policy`` minus the
learner update. Each call steps every worker's vector env (``--envs-per-worker`` sub-envs) ``T``
times with the PPO policy of the env's preset, ships the ``[T, N]`` rollouts back to the driver and
blocks until all of them arrived (a synchronous barrier, as in training). The weights are what
``WorkerGroup.publish`` gives training (by value under 90 KB, else one stored object), passed on
every call with a constant version, so workers receive them but skip reloading: the figure is
sampling throughput, not the cost of a weight broadcast. Each worker count gets a fresh
``WorkerGroup``, a warm-up (actor start, first weight load, torch/gym first-call costs), then
``--seconds`` of timed calls. Beside it, the raw rate of the same vector env stepped with random
actions in this one process (one core, no policy, no Ray):
``efficiency_vs_raw = measured / (min(workers, cores) x raw)``.

``latency`` (``benchmarks/latency_env.py``: each env step sleeps ``--step-ms`` and uses no CPU).
1 to 64 workers fit on 2 cores, and the ideal throughput is ``workers x envs / step_time``; the
shortfall is orchestration cost. Both of Tandem's paths are timed on one group of the largest
worker count (a count of n uses workers 0..n-1; the others idle):

- on-policy: ``sample`` on n workers, one barrier per call (as ``runner.on_policy``);
- off-policy: ``collect`` with every worker writing its fragments into a Redis replay (a private
  redis-server on loopback) and the driver re-issuing each worker's next call as soon as its
  last one returns (as ``runner.off_policy``, without the learner and the rate limiter).

RLlib (unless ``--frameworks tandem``): the same shape with RLlib's new API stack. A PPO (on-policy)
or DQN (off-policy) ``Algorithm`` with ``num_env_runners=N``, ``num_envs_per_env_runner`` and the same
hidden sizes; ``env_runner_group.foreach_env_runner(lambda r: r.sample(num_timesteps=T * envs))`` on
the remote runners, the episodes shipped back to the driver, no training and no weight sync. In
latency mode one Algorithm of the largest count is built and counts use ``remote_worker_ids``
1..n. Algorithm build time is not counted for either framework.

Both share one local Ray (``init_ray``-style, ``num_cpus = os.cpu_count()``); each worker / env
runner asks for ``min(1, cpus / N)`` CPUs, so counts above the core count oversubscribe.

Usage:
    python -m benchmarks.scaling real                                  # CartPole-v1, 1..16 workers
    python -m benchmarks.scaling real --envs CartPole-v1 HalfCheetah-v5 --workers 1 2 3 4
    python -m benchmarks.scaling latency --step-ms 2 --paths on off -o benchmarks/results/scaling_latency.json
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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKER_COUNTS = (1, 2, 4, 8, 16)
LATENCY_WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64)


def ideal_rate(workers: int, envs_per_worker: int, step_time_s: float) -> float:
    """Env steps/s if orchestration cost nothing: ``workers x envs / step_time``."""
    return workers * envs_per_worker / step_time_s


def efficiency(measured: float, ideal: float) -> float:
    """``measured / ideal``: 1.0 is perfect scaling."""
    return measured / ideal if ideal > 0 else float("nan")


def make_group(env_id: str, workers: int, envs_per_worker: int, algo: str = "ppo", **kw: Any):
    """A WorkerGroup with ``algo``'s policy for ``env_id``'s preset, and its published weights."""
    from tandem.cluster.group import RayWorkerGroup
    from tandem.learners.registry import get_algo
    from tandem.runner.envs import env_spaces
    from tandem.runner.session import resolve_config

    run, cfg, spec = resolve_config(algo, env_id, {"workers": workers, "envs_per_worker": envs_per_worker})
    obs_space, act_space = env_spaces(env_id)
    group = RayWorkerGroup(
        workers, env_id=env_id, num_envs=envs_per_worker, algo=algo, algo_config=cfg, seed=run.seed, **kw
    )
    weights_ref = group.publish(get_algo(algo).make_learner(obs_space, act_space, cfg).get_weights())
    return group, weights_ref, cfg


def time_loop(step: Callable[[], int], warmup_s: float, seconds: float) -> dict[str, float]:
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


def on_policy_step(group: Any, n: int, fragment: int, weights_ref: Any) -> Callable[[], int]:
    """One synchronous collection over workers 0..n-1 (the on-policy driver's barrier)."""
    import ray

    version = 1  # != the workers' initial 0: the first call loads the weights, later calls skip it

    def step() -> int:
        rollouts = ray.get([group.call(i, "sample", fragment, weights_ref, version) for i in range(n)])
        return sum(r.num_steps for r in rollouts)

    return step


def off_policy_step(group: Any, n: int, fragment: int, weights_ref: Any) -> Callable[[], int]:
    """Keep one ``collect`` in flight per worker 0..n-1; each step takes in what has finished and
    re-issues those workers at once (the off-policy driver's loop without the learner)."""
    import ray

    inflight: dict[Any, int] = {}

    def issue(i: int) -> None:
        inflight[group.call(i, "collect", fragment, weights_ref, 1, 0.5)] = i

    def step() -> int:
        for i in set(range(n)) - set(inflight.values()):
            issue(i)
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=10.0)
        ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
        steps = 0
        for ref in ready:
            i = inflight.pop(ref)
            steps += ray.get(ref).env_steps
            issue(i)
        return steps

    def drain() -> None:
        ray.get(list(inflight))
        inflight.clear()

    step.drain = drain  # type: ignore[attr-defined]
    return step


def inprocess_worker_rate(env_id: str, envs: int, fragment: int, seconds: float) -> float:
    """Env steps/s of one ``RolloutWorker`` sampling ``fragment``-step calls in this process with
    the PPO preset's policy: the worker's inner loop (inference, env, bookkeeping) without Ray."""
    from tandem.learners.registry import get_algo
    from tandem.runner.envs import env_spaces
    from tandem.runner.session import resolve_config
    from tandem.runner.worker import RolloutWorker

    run, cfg, _ = resolve_config("ppo", env_id, {"envs_per_worker": envs})
    obs_space, act_space = env_spaces(env_id)
    weights = get_algo("ppo").make_learner(obs_space, act_space, cfg).get_weights()
    worker = RolloutWorker(env_id, envs, "ppo", cfg, seed=run.seed)
    worker.sample(fragment, weights, 1)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += worker.sample(fragment, weights, 1).num_steps
    rate = n / (time.perf_counter() - t0)
    worker.close()
    return round(rate, 1)


def raw_env_rate(env_id: str, envs: int, seconds: float, env_kwargs: dict | None = None) -> float:
    """Env steps/s of ``envs`` sub-envs stepped with random actions in this process (one core)."""
    from tandem.runner.envs import make_vector_env

    env = make_vector_env(env_id, envs, env_kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        env.step(env.action_space.sample())
        n += envs
    rate = n / (time.perf_counter() - t0)
    env.close()
    return round(rate, 1)


def rllib_algo(
    algo: str,
    env_id: str,
    runners: int,
    envs: int,
    fragment: int,
    hidden: tuple[int, ...],
    env_kwargs: dict[str, Any] | None = None,
):
    import ray
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    cpus = float(ray.cluster_resources().get("CPU", 1))
    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig

        config = PPOConfig().training(
            # Not trained here, but PPOConfig checks that the batch is a whole number of fragments.
            train_batch_size_per_learner=fragment * envs * runners,
            minibatch_size=min(128, fragment * envs * runners),
        )
    else:
        from ray.rllib.algorithms.dqn import DQNConfig

        config = DQNConfig()
    config = (
        config.environment(env_id, env_config=dict(env_kwargs or {}))
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=envs,
            rollout_fragment_length=fragment,
            num_cpus_per_env_runner=min(1.0, cpus / runners),
        )
        .learners(num_learners=0)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=list(hidden)))
        .debugging(log_level="ERROR")
    )
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return config.build_algo()


def rllib_step(algo: Any, n: int, steps_per_runner: int) -> Callable[[], int]:
    ids = list(range(1, n + 1))

    def step() -> int:
        results = algo.env_runner_group.foreach_env_runner(
            lambda r: r.sample(num_timesteps=steps_per_runner), local_env_runner=False, remote_worker_ids=ids
        )
        return sum(len(ep) for episodes in results for ep in episodes)

    return step


def error_row(e: Exception) -> dict[str, str]:
    return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}


def with_speedup(rows: dict[int, dict[str, Any]]) -> dict[str, Any]:
    base = rows.get(1, {}).get("env_steps_per_s")
    for r in rows.values():
        if "env_steps_per_s" in r:
            r["speedup_vs_1"] = round(r["env_steps_per_s"] / base, 2) if base else None
    return {str(k): v for k, v in rows.items()}


# ---- latency mode ------------------------------------------------------------------------------


def run_latency(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from tandem.benchmarks.latency_env import ENV_ID

    step_s = args.step_ms / 1000.0
    env_kwargs = {"step_time_s": step_s}
    counts = sorted(set(args.workers or LATENCY_WORKER_COUNTS))
    n_max, envs, T = counts[-1], args.envs_per_worker, args.fragment
    raw = raw_env_rate(ENV_ID, 1, 2.0, env_kwargs)
    out.update(
        env=ENV_ID,
        step_ms=args.step_ms,
        fragment_length=T,
        raw_single_env_steps_per_s=raw,
        raw_note="one latency env stepped in this process: 1/step_time if sleep were exact",
        ideal="workers x envs_per_worker / step_time",
    )
    out["sleep_cost"] = sleep_cpu_us(step_s)
    if args.ceiling:
        ceiling: dict[str, Any] = {}
        for n in counts:
            rate = process_ceiling(n, envs, env_kwargs, T, args.seconds)
            eff = round(efficiency(rate, ideal_rate(n, envs, step_s)), 3)
            ceiling[str(n)] = {"env_steps_per_s": rate, "efficiency": eff}
            log(f"ceiling {n:>3} plain processes: {rate:>9.1f} steps/s, efficiency {eff:.3f}")
        out["process_ceiling"] = ceiling
        out["process_ceiling_note"] = (
            "n plain processes running the worker's sampling loop at once, no Ray: the machine's ceiling"
        )
        save_partial(args, out)
    paths = {"on": ("ppo", on_policy_step), "off": ("dqn", off_policy_step)}
    hidden = (64, 64)
    for path in args.paths:
        out["results"][f"{path}-policy"] = {"rllib_algo": paths[path][0]}
    if "tandem" in args.frameworks:
        # One group serves both paths: starting 64 torch processes takes minutes on 2 busy cores,
        # so the workers are started once. They run DQN's Q-network policy (same hidden sizes as
        # PPO's actor-critic here) and write to a Redis replay when ``collect`` is called; the
        # on-policy path calls ``sample`` on the same workers.
        from tandem.replay import make_replay
        from tandem.replay.server import ManagedRedis

        server = ManagedRedis()
        name = f"scaling-{uuid.uuid4().hex[:8]}"
        replay = make_replay(server.url, name=name, capacity=args.replay_capacity, prefetch=False)
        kw: dict[str, Any] = {
            "start_timeout_s": args.start_timeout,
            "env_kwargs": env_kwargs,
            "replay": {"url": server.url, "name": name, "capacity": args.replay_capacity},
        }
        t0 = time.perf_counter()
        try:
            group, weights_ref, _ = make_group_latency("dqn", n_max, envs, env_kwargs, hidden, kw)
            out["tandem_workers"] = "dqn policy (hidden 64,64), Redis replay writer, one group for both paths"
            out["tandem_group_start_s"] = round(time.perf_counter() - t0, 1)
            log(f"tandem: {n_max} workers up in {out['tandem_group_start_s']} s")
            try:
                for path in args.paths:
                    make_step = paths[path][1]
                    rows: dict[int, dict[str, Any]] = {}
                    for n in counts:
                        step = make_step(group, n, T, weights_ref)
                        try:
                            row = time_loop(step, args.warmup, args.seconds)
                        finally:
                            getattr(step, "drain", lambda: None)()
                        ideal = ideal_rate(n, envs, step_s)
                        row.update(
                            ideal_steps_per_s=round(ideal, 1),
                            efficiency=round(efficiency(row["env_steps_per_s"], ideal), 3),
                            efficiency_vs_raw_env=round(
                                efficiency(row["env_steps_per_s"], n * envs * raw), 3
                            ),
                        )
                        top = out.get("process_ceiling", {}).get(str(n), {}).get("env_steps_per_s")
                        if top:
                            row["of_process_ceiling"] = round(row["env_steps_per_s"] / top, 3)
                        rows[n] = row
                        log(
                            f"tandem {path}-policy {n:>3} workers: {row['env_steps_per_s']:>9.1f} steps/s, "
                            f"efficiency {row['efficiency']:.3f}"
                        )
                    out["results"][f"{path}-policy"]["tandem"] = with_speedup(rows)
                    save_partial(args, out)
            finally:
                group.shutdown()
        finally:
            out["tandem_replay_size_at_end"] = len(replay)
            server.stop()
    for path in args.paths:
        algo = paths[path][0]
        res = out["results"][f"{path}-policy"]
        if "rllib" in args.frameworks:
            rl: dict[int, dict[str, Any]] = {}
            rl_counts = [n for n in counts if n <= args.rllib_max_workers]
            try:
                t0 = time.perf_counter()
                algo_obj = rllib_algo(algo, ENV_ID, rl_counts[-1], envs, T, hidden, env_kwargs)
                res["rllib_build_s"] = round(time.perf_counter() - t0, 1)
            except Exception as e:  # report it, keep the other figures
                res["rllib"] = error_row(e)
                algo_obj = None
            if algo_obj is not None:
                try:
                    for n in rl_counts:
                        try:
                            row = time_loop(rllib_step(algo_obj, n, T * envs), args.warmup, args.seconds)
                        except Exception as e:
                            rl[n] = error_row(e)
                            continue
                        ideal = ideal_rate(n, envs, step_s)
                        row.update(
                            ideal_steps_per_s=round(ideal, 1),
                            efficiency=round(efficiency(row["env_steps_per_s"], ideal), 3),
                        )
                        rl[n] = row
                        log(
                            f"rllib  {path}-policy {n:>3} runners: {row['env_steps_per_s']:>9.1f} steps/s, "
                            f"efficiency {row['efficiency']:.3f}"
                        )
                finally:
                    algo_obj.stop()
                res["rllib"] = with_speedup(rl)
                skipped = [n for n in counts if n > args.rllib_max_workers]
                if skipped:
                    res["rllib_skipped_counts"] = skipped
        if "tandem" in res and isinstance(res.get("rllib"), dict):
            res["tandem_over_rllib"] = {
                k: round(v["env_steps_per_s"] / res["rllib"][k]["env_steps_per_s"], 2)
                for k, v in res["tandem"].items()
                if "env_steps_per_s" in res["rllib"].get(k, {})
            }
        out["results"][f"{path}-policy"] = res
        save_partial(args, out)


def make_group_latency(algo, n, envs, env_kwargs, hidden, kw):
    """A group of ``n`` workers on the latency env with ``hidden`` sizes."""
    from tandem.benchmarks.latency_env import ENV_ID
    from tandem.cluster.group import RayWorkerGroup
    from tandem.runner.envs import env_spaces
    from tandem.runner.session import resolve_config

    run, cfg, spec = resolve_config(
        algo,
        ENV_ID,
        {"workers": n, "envs_per_worker": envs, "hidden": list(hidden), "env_kwargs": env_kwargs},
    )
    obs_space, act_space = env_spaces(ENV_ID, env_kwargs)
    group = RayWorkerGroup(n, env_id=ENV_ID, num_envs=envs, algo=algo, algo_config=cfg, seed=run.seed, **kw)
    weights_ref = group.publish(spec.make_learner(obs_space, act_space, cfg).get_weights())
    return group, weights_ref, cfg


def latency_worker(algo: str, envs: int, env_kwargs: dict) -> tuple[Any, dict]:
    """A plain ``RolloutWorker`` on the latency env with ``algo``'s 64x64 policy, and its weights."""
    from tandem.benchmarks.latency_env import ENV_ID
    from tandem.runner.envs import env_spaces
    from tandem.runner.session import resolve_config
    from tandem.runner.worker import RolloutWorker

    _, cfg, spec = resolve_config(algo, ENV_ID, {"hidden": [64, 64], "env_kwargs": env_kwargs})
    weights = spec.make_learner(*env_spaces(ENV_ID, env_kwargs), cfg).get_weights()
    return RolloutWorker(ENV_ID, envs, algo, cfg, env_kwargs=env_kwargs), weights


def _ceiling_process(q: Any, start: Any, envs: int, env_kwargs: dict, fragment: int, seconds: float) -> None:
    """One plain process of :func:`process_ceiling`: the Tandem worker loop, no Ray."""
    worker, weights = latency_worker("dqn", envs, env_kwargs)
    worker.sample(fragment, weights, 1)
    q.put(None)
    start.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += worker.sample(fragment, weights, 1).num_steps
    q.put(n / (time.perf_counter() - t0))


def process_ceiling(n: int, envs: int, env_kwargs: dict, fragment: int, seconds: float) -> float:
    """Env steps/s of ``n`` plain OS processes, each running a worker's own sampling loop on the
    latency env, all at once: no Ray, no driver, no replay, no results shipped. Whatever this
    misses of the ideal is the machine's (a sleep's wake-up, process switches on 2 cores), so
    ``Tandem / this`` is the part of the shortfall that orchestration costs."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after ray.init is unsafe; spawn imports afresh
    q, start = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_ceiling_process, args=(q, start, envs, env_kwargs, fragment, seconds))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        q.get(timeout=900)
    start.set()
    total = sum(q.get(timeout=seconds + 120) for _ in procs)
    for p in procs:
        p.join()
    return round(total, 1)


def sleep_cpu_us(step_s: float, seconds: float = 2.0) -> dict[str, float]:
    """What one ``time.sleep(step_s)`` costs this machine: CPU microseconds and wall overshoot."""
    n, c0, t0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        time.sleep(step_s)
        n += 1
    return {
        "cpu_us_per_sleep": round(1e6 * (time.process_time() - c0) / n, 1),
        "wall_ms_per_sleep": round(1e3 * (time.perf_counter() - t0) / n, 3),
    }


def worker_cpu_per_step(algo: str, seconds: float = 3.0, fragment: int = 64) -> dict[str, float]:
    """CPU milliseconds one worker spends per env step on a 0 ms latency env (policy forward,
    env, bookkeeping; no Ray): ``process_time / steps``, so other load on the machine does not
    count. A worker at step time ``t`` then needs ``c / (t + c)`` of a core, and ``cores / c``
    steps/s is the most the machine can give, whatever the orchestration."""
    worker, weights = latency_worker(algo, 1, {"step_time_s": 0.0})
    worker.sample(fragment, weights, 1)
    c0, t0, n = time.process_time(), time.perf_counter(), 0
    while time.process_time() - c0 < seconds:
        n += worker.sample(fragment, weights, 1).num_steps
    worker.close()
    return {
        "cpu_ms_per_step": round(1e3 * (time.process_time() - c0) / n, 3),
        "wall_ms_per_step": round(1e3 * (time.perf_counter() - t0) / n, 3),
    }


# ---- real-env mode -----------------------------------------------------------------------------


def run_real(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from tandem.runner.session import resolve_config

    counts = sorted(set(args.workers or [n for n in WORKER_COUNTS if n <= args.max_workers]))
    cores = os.cpu_count() or 1
    for env_id in args.envs:
        _, cfg, _ = resolve_config("ppo", env_id)
        frag = args.fragment or cfg.fragment_length
        raw = raw_env_rate(env_id, args.envs_per_worker, args.raw_seconds)
        inproc = inprocess_worker_rate(env_id, args.envs_per_worker, frag, args.raw_seconds)
        res: dict[str, Any] = {
            "fragment_length": frag,
            "hidden": list(cfg.hidden),
            "raw_env_steps_per_s": raw,
            "raw_note": f"{args.envs_per_worker} sub-envs, random actions, this process, one core",
            "inprocess_worker_steps_per_s": inproc,
            "inprocess_worker_vs_raw": round(inproc / raw, 3),
            "inprocess_note": "one RolloutWorker in this process (no Ray): the inner loop alone",
        }
        log(f"{env_id}: raw single-core rate {raw:.0f} steps/s, one worker in-process {inproc:.0f}")
        tandem: dict[int, dict[str, Any]] = {}
        rllib: dict[int, dict[str, Any]] = {}
        if "tandem" in args.frameworks:
            for n in counts:
                group, weights_ref, _ = make_group(env_id, n, args.envs_per_worker)
                try:
                    row = time_loop(on_policy_step(group, n, frag, weights_ref), args.warmup, args.seconds)
                finally:
                    group.shutdown()
                row.update(
                    vs_raw_single_core=round(row["env_steps_per_s"] / raw, 3),
                    efficiency_vs_raw=round(efficiency(row["env_steps_per_s"], min(n, cores) * raw), 3),
                )
                tandem[n] = row
                log(f"tandem {env_id} {n} workers: {row['env_steps_per_s']:.0f} steps/s")
            res["tandem"] = with_speedup(tandem)
        if "rllib" in args.frameworks:
            for n in counts:
                try:
                    algo = rllib_algo("ppo", env_id, n, args.envs_per_worker, frag, tuple(cfg.hidden))
                    try:
                        row = time_loop(
                            rllib_step(algo, n, frag * args.envs_per_worker), args.warmup, args.seconds
                        )
                    finally:
                        algo.stop()
                    row.update(vs_raw_single_core=round(row["env_steps_per_s"] / raw, 3))
                    rllib[n] = row
                except Exception as e:  # report it, keep the other figures
                    rllib[n] = error_row(e)
            ok = {k: v for k, v in rllib.items() if "env_steps_per_s" in v}
            res["rllib"] = {**with_speedup(ok), **{str(k): v for k, v in rllib.items() if k not in ok}}
            if tandem:
                res["tandem_over_rllib"] = {
                    str(n): round(tandem[n]["env_steps_per_s"] / ok[n]["env_steps_per_s"], 2) for n in ok
                }
        out["results"][env_id] = res


def save_partial(args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Write what is measured so far (``"partial": true``): 64 RLlib runners can exhaust memory,
    and a killed run should keep the figures it had."""
    if args.output:
        args.output.write_text(json.dumps({**out, "partial": True}, indent=2) + "\n")


def log(msg: str) -> None:
    print(f"[scaling {time.strftime('%H:%M:%S')}] {msg}", file=__import__("sys").stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    cpu = sub.add_parser("cpu", help="CPU ms per env step of one worker on a 0 ms latency env, no Ray")
    cpu.add_argument("-o", "--output", type=Path, help="also write the JSON here")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--workers", type=int, nargs="+", help="explicit worker counts")
    common.add_argument("--seconds", type=float, default=5.0, help="timed seconds per point")
    common.add_argument("--warmup", type=float, default=2.0, help="untimed seconds per point, after start-up")
    common.add_argument(
        "--frameworks",
        nargs="+",
        choices=["tandem", "rllib"],
        default=["tandem", "rllib"],
        help="what to time",
    )
    common.add_argument("-o", "--output", type=Path, help="also write the JSON here")
    real = sub.add_parser("real", parents=[common], help="real envs, raw single-core env rate beside")
    real.add_argument("--envs", nargs="+", default=["CartPole-v1"], help="env ids")
    real.add_argument("--max-workers", type=int, default=16, help="largest of 1, 2, 4, 8, 16")
    real.add_argument("--envs-per-worker", type=int, default=4)
    real.add_argument("--fragment", type=int, help="steps per sub-env per call (default: the PPO preset's)")
    real.add_argument("--raw-seconds", type=float, default=3.0, help="seconds to time the raw env rate")
    lat = sub.add_parser("latency", parents=[common], help="a sleeping env: orchestration cost only")
    lat.add_argument("--step-ms", type=float, default=2.0, help="each env step sleeps this long")
    lat.add_argument("--envs-per-worker", type=int, default=1)
    lat.add_argument("--fragment", type=int, default=64, help="steps per sub-env per call")
    lat.add_argument("--paths", nargs="+", choices=["on", "off"], default=["on", "off"])
    lat.add_argument("--rllib-max-workers", type=int, default=64, help="skip RLlib above this count (memory)")
    lat.add_argument("--start-timeout", type=float, default=900, help="seconds for the workers to start")
    lat.add_argument("--replay-capacity", type=int, default=200_000, help="off-policy Redis ring size")
    lat.add_argument(
        "--no-ceiling",
        dest="ceiling",
        action="store_false",
        help="skip the machine's ceiling (the worker loop in n plain processes, no Ray)",
    )
    args = ap.parse_args(argv)
    if args.mode == "cpu":
        res = {
            "benchmark": "worker CPU per env step (process_time), latency env at 0 ms, 1 env, hidden 64x64",
            "loadavg_1m": round(os.getloadavg()[0], 2),
            **{algo: worker_cpu_per_step(algo) for algo in ("ppo", "dqn")},
        }
        text = json.dumps(res, indent=2)
        if args.output:
            args.output.write_text(text + "\n")
        print(text)
        return

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    logging.getLogger("ray").setLevel(logging.ERROR)
    import ray

    from tandem.benchmarks.latency_env import SETUP_HOOK
    from tandem.cluster.group import init_ray

    # Tandem's own embedded Ray (loopback only), with the latency env registered in every worker.
    init_ray("local", os.cpu_count(), runtime_env={"worker_process_setup_hook": SETUP_HOOK})
    out: dict[str, Any] = {
        "benchmark": f"rollout throughput vs worker count ({args.mode})",
        "cpu_count": os.cpu_count(),
        "ray_cpus": ray.cluster_resources().get("CPU"),
        "machine": platform.machine(),
        # Other processes compete for the cores: a 1-minute load average above cpu_count means the
        # figures measure contention as much as Tandem or RLlib.
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "envs_per_worker": args.envs_per_worker,
        "seconds_per_point": args.seconds,
        "warmup_s": args.warmup,
        "frameworks": args.frameworks,
        "results": {},
    }
    t0 = time.perf_counter()
    (run_latency if args.mode == "latency" else run_real)(args, out)
    out["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    ray.shutdown()
    text = json.dumps(out, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
