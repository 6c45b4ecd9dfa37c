"""EnvPool against Gymnasium as a worker's vector env: raw env steps/s on one core. Prints JSON.

Both backends are what a worker builds (``runner.envs.make_vector_env``): Gymnasium's
SyncVectorEnv in same-step autoreset mode, and ``runner.envpool_env.EnvPoolVectorEnv`` (one C++
thread, the same-step resets included). Random actions, drawn before the clock starts; the
clock is this process's CPU time (EnvPool's thread is in it), so other load on the machine
moves the figures less. The two backends alternate, ``--repeats`` times, and the medians are
reported with their ratio. ``vector_env=auto`` takes EnvPool for an env only from the sub-env
count where this ratio is above 1, and only where ``tests/integration/test_envpool.py`` found the
same transitions.

Usage:
    python -m benchmarks.envpool -o benchmarks/results/envpool.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

ENVS = ("CartPole-v1", "InvertedPendulum-v5", "HalfCheetah-v5", "Hopper-v5", "Swimmer-v5")


def raw_rate(env_id: str, num_envs: int, backend: str, seconds: float) -> float:
    """Env steps per CPU second of ``num_envs`` sub-envs on ``backend`` with random actions."""
    from tandem.runner.envs import make_vector_env

    env = make_vector_env(env_id, num_envs, None, backend)
    env.reset(seed=list(range(num_envs)))
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(256)]
    for a in actions[:16]:
        env.step(a)
    n, c0 = 0, time.process_time()
    while time.process_time() - c0 < seconds:
        env.step(actions[n % 256])
        n += 1
    rate = n * num_envs / (time.process_time() - c0)
    env.close()
    return rate


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", nargs="+", default=list(ENVS))
    ap.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16], help="sub-envs per vector env")
    ap.add_argument("--seconds", type=float, default=1.5, help="CPU seconds per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args(argv)
    import envpool

    from tandem.runner.envpool_env import ENVPOOL_AUTO

    out: dict[str, Any] = {
        "benchmark": "raw vector-env steps per CPU second, Gymnasium SyncVectorEnv vs EnvPool (1 thread)",
        "envpool": envpool.__version__,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "repeats": args.repeats,
        "results": {},
    }
    for env_id in args.envs:
        row: dict[str, Any] = {"auto_uses_envpool_from_sub_envs": ENVPOOL_AUTO.get(env_id)}
        for n in args.num_envs:
            rates: dict[str, list[float]] = {"gymnasium": [], "envpool": []}
            for _ in range(args.repeats):
                for backend in rates:
                    rates[backend].append(raw_rate(env_id, n, backend, args.seconds))
            g, e = (statistics.median(rates[b]) for b in ("gymnasium", "envpool"))
            row[str(n)] = {
                "gymnasium_steps_per_s": round(g),
                "envpool_steps_per_s": round(e),
                "envpool_over_gymnasium": round(e / g, 2),
                "runs": {b: [round(r) for r in v] for b, v in rates.items()},
            }
            print(f"{env_id:>20} x{n:<3} gymnasium {g:>9.0f}  envpool {e:>9.0f}  ({e / g:.2f}x)", flush=True)
        out["results"][env_id] = row
    out["loadavg_end"] = os.getloadavg()
    text = json.dumps(out, indent=1)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    return out


if __name__ == "__main__":
    main()
