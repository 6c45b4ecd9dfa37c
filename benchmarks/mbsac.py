"""MBSAC beside plain SAC, in one run: env steps (and wall time) to the thresholds.

    PYTHONPATH=$PWD python benchmarks/mbsac.py --seeds 3 --out benchmarks/results/mbsac.json

Tasks (benchmarks/off_policy.py's SAC cases): Pendulum-v1 ≥ -200 (20-episode mean, 15k budget)
and InvertedPendulum-v5 ≥ 950 (5-episode mean, 30k budget). Both sides get SAC's env presets.
MBSAC keeps as many real rows per env step as SAC (real_ratio · UTD = 1: by default 0.25 and 4
gradient steps per env step, ``samples_per_insert`` = 1024 with batch 256) and adds three times
as many model rows. Runs through :func:`benchmarks.direct.drive` (serial, in-process), 8 sub-envs.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.direct import drive, median_steps
from tandem.learners.mbsac import MBSACConfig
from tandem.learners.sac import ENV_PRESETS, SACConfig

TASKS = {
    "pendulum": dict(env_id="Pendulum-v1", threshold=-200.0, window=20, budget=15_000),
    "invertedpendulum": dict(env_id="InvertedPendulum-v5", threshold=950.0, window=5, budget=30_000),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--algos", nargs="*", default=["mbsac", "sac"], choices=["mbsac", "sac"])
    ap.add_argument("--real-ratio", type=float, default=MBSACConfig.real_ratio)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out: dict = {"note": "serial in-process loop (benchmarks/direct.py), 8 sub-envs, shared CPU"}
    for task in args.tasks:
        case = TASKS[task]
        preset = ENV_PRESETS.get(case["env_id"], {})
        cfgs = {
            "sac": replace(SACConfig(), **preset),
            "mbsac": replace(
                MBSACConfig(),
                **preset,
                real_ratio=args.real_ratio,
                samples_per_insert=256.0 / args.real_ratio,
            ),
        }
        entry: dict = {**case}
        for seed in range(args.seeds):  # seeds outermost: both sides progress together
            for algo in args.algos:
                t0 = time.time()
                r = drive(
                    algo,
                    case["env_id"],
                    cfgs[algo],
                    seed=seed,
                    budget=case["budget"],
                    threshold=case["threshold"],
                    window=case["window"],
                    metric_keys=("stats/model_mse",) if algo == "mbsac" else (),
                )
                r["process_wall_s"] = round(time.time() - t0, 1)
                print(task, algo, f"seed={seed}", r, flush=True)
                side = entry.setdefault(algo, {"per_seed": []})
                side["per_seed"].append(r)
                side["reached"] = sum(x["reached"] for x in side["per_seed"])
                side["median_env_steps_to_threshold"] = median_steps(side["per_seed"])
                out[task] = entry
                if args.out:
                    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
