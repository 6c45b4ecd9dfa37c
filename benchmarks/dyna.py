"""Dyna-Q: env steps to ``qlearn``'s thresholds against the planning steps k (k = 0 is qlearn).

    PYTHONPATH=$PWD python benchmarks/dyna.py --seeds 3 --out benchmarks/results/dyna_k_curve.json

Two replay ratios, because they answer different questions:

- ``ratio=64`` (qlearn's default: each real transition is replayed ~64 times). Replay alone is
  already a sample model of the visited transitions, so planning has little left to add.
- ``ratio=1`` (classic Dyna-Q: each real transition gets ~one direct update, batches of 16):
  the k model sweeps are what propagate value.

Thresholds: FrozenLake-v1 (slippery) success ≥ 0.7 over 100 training episodes (benchmarks/
off_policy.py's qlearn case); Taxi-v3 mean return ≥ 7.0 over 100 training episodes (no qlearn
Taxi case exists; 7 is ~1 below the optimal mean). Budget 200k env steps, 8 sub-envs.

Runs through :func:`benchmarks.direct.drive` (a serial in-process copy of the off-policy loop),
because the Ray driver on this branch still expects ``update()`` to return a dict.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.direct import drive, median_steps
from tandem.learners.dynaq import DynaQConfig

TASKS = {
    "frozenlake_slippery": dict(env_id="FrozenLake-v1", threshold=0.7, window=100),
    "taxi": dict(env_id="Taxi-v3", threshold=7.0, window=100),
}
RATIOS = {64: dict(samples_per_insert=64.0, batch_size=256), 1: dict(samples_per_insert=1.0, batch_size=16)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--k", type=int, nargs="*", default=[0, 5, 50])
    ap.add_argument("--ratios", type=int, nargs="*", default=list(RATIOS), choices=list(RATIOS))
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--budget", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out: dict = {"budget": args.budget, "note": "serial in-process loop (benchmarks/direct.py), 8 sub-envs"}
    t_start = time.time()
    for task in args.tasks:
        case = TASKS[task]
        for ratio in args.ratios:
            curve = []
            for k in args.k:
                cfg = DynaQConfig(planning_steps=k, **RATIOS[ratio])
                per_seed = []
                for seed in range(args.seeds):
                    r = drive(
                        "dynaq",
                        case["env_id"],
                        cfg,
                        seed=seed,
                        budget=args.budget,
                        threshold=case["threshold"],
                        window=case["window"],
                    )
                    print(task, f"ratio={ratio}", f"k={k}", f"seed={seed}", r, flush=True)
                    per_seed.append(r)
                curve.append(
                    {
                        "k": k,
                        "reached": sum(r["reached"] for r in per_seed),
                        "median_env_steps_to_threshold": median_steps(per_seed),
                        "per_seed": per_seed,
                    }
                )
            out[f"{task}_ratio{ratio}"] = {**case, **RATIOS[ratio], "curve": curve}
            print(
                task,
                f"ratio={ratio}",
                "k -> median env steps:",
                {c["k"]: c["median_env_steps_to_threshold"] for c in curve},
                flush=True,
            )
    out["total_wall_s"] = round(time.time() - t_start, 1)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
