"""Learner speed: updates/s of DQN, SAC and TD3 and PPO's epoch time, on cpu and on cuda,
against a FLOP-count bound.

    python -m benchmarks.learner_speed          # cpu and cuda (cuda: "not run here" without a GPU)
    python -m benchmarks.learner_speed --devices cuda --repeats 5

Each learner is the real one from the registry, with its preset's batch size and network
(DQN: CartPole-v1; SAC, TD3 and PPO: HalfCheetah-v5's 17-D observation and 6-D action; PPO
also on CartPole-v1), fed synthetic batches of the env's shapes and dtypes.

The bound. FLOPs per update are counted by ``torch.utils.flop_counter.FlopCounterMode``
over real updates (the matmuls of forward and backward passes). The rate is a matmul of
the learner's own shape, [batch, hidden] @ [hidden, hidden] + bias, timed on the same
device and thread count just before each repetition, so both sides see the same contention:

    bound (updates/s) = matmul FLOP/s / FLOPs per update,   fraction = measured / bound

A fraction of 1 would mean the update is nothing but matmuls at full speed; the rest of an
update is elementwise work, optimizer steps and Python. On cuda, small matmuls are
launch-bound, so there the fraction says little; updates/s is the figure to read.

CUDA timing calls ``torch.cuda.synchronize()`` around each timed window; the learners copy
each batch to the GPU in one pinned, non-blocking transfer (agents.offpolicy.batch_to_tensors).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from tandem.core.types import Batch, Rollout
from tandem.learners.registry import get_algo

RESULTS = Path(__file__).resolve().parent / "results"

# Spaces of the preset envs, built by hand so that the script needs no MuJoCo.
CARTPOLE = (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))
HALFCHEETAH = (
    gym.spaces.Box(-np.inf, np.inf, (17,), np.float64),
    gym.spaces.Box(-1.0, 1.0, (6,), np.float32),
)

# (name, algo, env id for the preset, spaces, workers x envs per worker for on-policy batches)
CASES: list[tuple[str, str, str, tuple[gym.Space, gym.Space], int]] = [
    ("dqn", "dqn", "CartPole-v1", CARTPOLE, 0),
    ("sac", "sac", "HalfCheetah-v5", HALFCHEETAH, 0),
    ("td3", "td3", "HalfCheetah-v5", HALFCHEETAH, 0),
    ("ppo-cartpole", "ppo", "CartPole-v1", CARTPOLE, 2 * 4),
    ("ppo-halfcheetah", "ppo", "HalfCheetah-v5", HALFCHEETAH, 2 * 4),
]


def make_config(algo: str, env_id: str, spaces, device: str, overrides: dict[str, Any]):
    """The algorithm's config with its env preset applied, as ``tandem train`` builds it."""
    spec = get_algo(algo)
    cfg = spec.config_cls()
    preset = spec.preset(*spaces, env_id) if spec.preset else {}
    for key, value in {**preset, **overrides, "device": device}.items():
        if key in {f.name for f in dataclasses.fields(cfg)} or key == "device":
            setattr(cfg, key, value)
    return spec, cfg


def sample(space: gym.Space, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), size=shape).astype(np.int64)
    low = np.where(np.isfinite(space.low), space.low, -3.0)
    high = np.where(np.isfinite(space.high), space.high, 3.0)
    return rng.uniform(low, high, size=(*shape, *space.shape)).astype(space.dtype)


def replay_batch(spaces, n: int, prioritized: bool, rng: np.random.Generator) -> Batch:
    """A batch as replay returns it: the env's dtypes, ~1% terminal rows, IS weights if prioritized."""
    obs_space, act_space = spaces
    n_step = isinstance(act_space, gym.spaces.Discrete)  # DQN's preset folds 3 steps
    extras = {"discount": np.full(n, 0.99**3, np.float32)} if n_step else {}
    return Batch(
        obs=sample(obs_space, (n,), rng),
        actions=sample(act_space, (n,), rng),
        rewards=rng.normal(size=n).astype(np.float32),
        next_obs=sample(obs_space, (n,), rng),
        terminated=rng.random(n) < 0.01,
        truncated=np.zeros(n, bool),
        extras=extras,
        weights=rng.uniform(0.5, 1.0, n).astype(np.float32) if prioritized else None,
    )


def rollout(spaces, T: int, N: int, rng: np.random.Generator) -> Rollout:
    obs_space, act_space = spaces
    obs = sample(obs_space, (T, N), rng)
    return Rollout(
        obs=obs,
        actions=sample(act_space, (T, N), rng),
        rewards=rng.normal(size=(T, N)).astype(np.float32),
        next_obs=np.concatenate([obs[1:], sample(obs_space, (1, N), rng)]),
        terminated=rng.random((T, N)) < 0.01,
        truncated=np.zeros((T, N), bool),
        extras={"logp": rng.normal(-1.0, 0.1, (T, N)).astype(np.float32)},
        episode_returns=np.zeros(0, np.float32),
        episode_lengths=np.zeros(0, np.int64),
        policy_version=0,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> float:
    """CPU time of this process for cpu runs, wall time for cuda.

    The machine this was written on has 2 cores shared with other jobs: a wall-clock window
    there measures the scheduler as much as the learner. With one torch thread, the process's
    CPU time is the time the update really ran, so matmul rate and update rate are both taken
    on that clock (wall-clock rates are reported beside them). A GPU works asynchronously to
    the CPU, so cuda runs use wall time between ``torch.cuda.synchronize`` calls. With
    ``--threads`` above 1 the CPU time adds up all threads, so ``per_s`` is then work per
    CPU-second and ``per_wall_s`` is the speed.
    """
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def timed_rate(step: Callable[[int], Any], device: torch.device, seconds: float) -> tuple[float, float]:
    """(calls per second on :func:`clock`, calls per wall-clock second) of ``step(i)``, over at
    least ``seconds`` of wall time."""
    sync(device)
    n, w0, c0 = 0, time.perf_counter(), clock(device)
    while time.perf_counter() - w0 < seconds:
        step(n)
        n += 1
    sync(device)
    return n / (clock(device) - c0), n / (time.perf_counter() - w0)


def matmul_gflops(batch: int, hidden: int, device: torch.device, seconds: float) -> float:
    """GFLOP/s (on :func:`clock`) of ``bias + x @ W``, x [batch, hidden], W [hidden, hidden]:
    2·batch·hidden² FLOPs per call."""
    x = torch.randn(batch, hidden, device=device)
    w = torch.randn(hidden, hidden, device=device)
    b = torch.randn(hidden, device=device)

    def fifty(_: int) -> None:
        for _ in range(50):
            torch.addmm(b, x, w)

    fifty(0)
    rate, _ = timed_rate(fifty, device, seconds)
    return rate * 50 * 2 * batch * hidden * hidden / 1e9


def flops_per_call(step: Callable[[int], Any], calls: int) -> float:
    """Mean FLOPs (matmuls, forward and backward) of ``calls`` consecutive calls of ``step``."""
    with FlopCounterMode(display=False) as counter:
        for i in range(calls):
            step(i)
    return counter.get_total_flops() / calls


def spread(xs: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}


def measure(case, device_name: str, args) -> dict[str, Any]:
    name, algo, env_id, spaces, envs = case
    spec, cfg = make_config(algo, env_id, spaces, device_name, {})
    torch.manual_seed(0)
    learner = spec.make_learner(*spaces, cfg)
    device = getattr(learner, "device", torch.device("cpu"))
    rng = np.random.default_rng(0)
    hidden = max(cfg.hidden)
    row: dict[str, Any] = {"case": name, "algo": algo, "env": env_id, "device": str(device)}
    row["hidden"] = list(cfg.hidden)
    if spec.on_policy:
        ro = rollout(spaces, cfg.fragment_length, envs, rng)
        batch_rows = cfg.fragment_length * envs
        step = lambda i: learner.update(ro)
        per_unit, unit = cfg.epochs, "epoch"
        mm_batch = batch_rows // cfg.num_minibatches
        row.update(batch_size=batch_rows, minibatch_size=mm_batch, epochs=cfg.epochs)
        step(0)
    else:
        batches = [replay_batch(spaces, cfg.batch_size, cfg.prioritized, rng) for _ in range(8)]
        step = lambda i: learner.update(batches[i % len(batches)])
        per_unit, unit = 1, "update"
        mm_batch = cfg.batch_size
        row.update(batch_size=cfg.batch_size)
        for i in range(args.warmup):
            step(i)
    # TD3's actor runs every 2nd update: count FLOPs over a whole cycle.
    flops = flops_per_call(step, 2 if not spec.on_policy else 1) / per_unit
    rates, wall_rates, gflops = [], [], []
    for _ in range(args.repeats):
        gflops.append(matmul_gflops(mm_batch, hidden, device, args.matmul_seconds))
        rate, wall_rate = timed_rate(step, device, args.seconds)
        rates.append(rate * per_unit)
        wall_rates.append(wall_rate * per_unit)
    bound = [g * 1e9 / flops for g in gflops]
    row.update(
        unit=unit,
        flops_per_unit=flops,
        clock="wall" if device.type == "cuda" else "process cpu time",
        per_s=spread(rates),
        per_wall_s=spread(wall_rates),
        matmul_shape=[mm_batch, hidden, hidden],
        matmul_gflops=spread(gflops),
        bound_per_s=spread(bound),
        fraction_of_bound=spread([r / b for r, b in zip(rates, bound, strict=True)]),
    )
    if spec.on_policy:
        row["epoch_time_ms"] = spread([1e3 / r for r in rates])
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", default="cpu,cuda", help="comma-separated: cpu, cuda, cuda:N")
    p.add_argument("--cases", default=",".join(c[0] for c in CASES))
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the learner's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="timed window per repetition")
    p.add_argument("--matmul-seconds", type=float, default=1.0)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--out", default=str(RESULTS / "learner_speed.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted = set(args.cases.split(","))
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "loadavg_start": os.getloadavg(),
        },
        "results": [],
        "not_run": [],
    }
    for dev in args.devices.split(","):
        if dev.startswith("cuda") and not torch.cuda.is_available():
            out["not_run"].append({"device": dev, "reason": "not run here: torch sees no CUDA GPU"})
            print(f"{dev}: not run here (torch sees no CUDA GPU)")
            continue
        for case in CASES:
            if case[0] not in wanted:
                continue
            row = measure(case, dev, args)
            out["results"].append(row)
            r, f = row["per_s"], row["fraction_of_bound"]
            print(
                f"{row['case']:16s} {row['device']:7s} batch {row['batch_size']:5d}  "
                f"{r['median']:8.1f} {row['unit']}s/s (min {r['min']:.1f}, max {r['max']:.1f}; "
                f"wall {row['per_wall_s']['median']:.1f})  "
                f"{row['flops_per_unit'] / 1e9:.3f} GFLOP/{row['unit']}  "
                f"matmul {row['matmul_gflops']['median']:.1f} GFLOP/s  "
                f"bound {row['bound_per_s']['median']:.1f}/s  fraction {f['median']:.2f} "
                f"({f['min']:.2f}-{f['max']:.2f})"
                + (f"  epoch {row['epoch_time_ms']['median']:.1f} ms" if "epoch_time_ms" in row else ""),
                flush=True,
            )
    out["machine"]["loadavg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
