"""DQN on MountainCar-v0 with and without the SimHash count bonus, side by side.

    PYTHONPATH=$PWD python benchmarks/exploration.py --seeds 3 --bonus count none \\
        --out benchmarks/results/exploration_mountaincar.json

Target (issue 14, item 5): a 20-episode mean of -120 within 150k env steps on at least 2 of 3
seeds with ``exploration_bonus=count``; the same config with ``none`` beside it. The DQN
settings are rl-baselines3-zoo's MountainCar-v0 ones carried over (256x256, lr 4e-3, batch
128, 10k replay, γ 0.98, ε 1 -> 0.07 over 20%, 8 gradient steps per 16 env steps = 64 sampled
per insert); the bonus adds β = 0.1, 48-bit SimHash codes (≈ 400 cells over the state box).

Runs through :func:`benchmarks.direct.drive` (serial, in-process), 4 sub-envs.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.direct import drive, median_steps
from tandem.learners.dqn import DQNConfig

MOUNTAINCAR = DQNConfig(
    fragment_length=4,
    gamma=0.98,
    lr=4e-3,
    hidden=(256, 256),
    dueling=False,
    double_q=True,
    n_step=1,
    target_update_interval=300,
    epsilon_end=0.07,
    exploration_fraction=0.2,
    batch_size=128,
    replay_capacity=10_000,
    min_size=1_000,
    prioritized=False,
    samples_per_insert=64.0,
    bonus_beta=0.1,
    simhash_bits=48,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=150_000)
    ap.add_argument("--bonus", nargs="*", default=["count", "none"], choices=["count", "none"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out: dict = {"env_id": "MountainCar-v0", "threshold": -120.0, "window": 20, "budget": args.budget}
    out["config"] = {k: v for k, v in vars(MOUNTAINCAR).items() if k != "exploration_bonus"}
    t_start = time.time()
    for bonus in args.bonus:
        per_seed = []
        for seed in range(args.seeds):
            r = drive(
                "dqn",
                "MountainCar-v0",
                replace(MOUNTAINCAR, exploration_bonus=bonus),
                seed=seed,
                budget=args.budget,
                threshold=-120.0,
                window=20,
                num_envs=4,
                metric_keys=("stats/bonus_mean",),
            )
            print(f"bonus={bonus}", f"seed={seed}", r, flush=True)
            per_seed.append(r)
            out[bonus] = {
                "reached": sum(r["reached"] for r in per_seed),
                "seeds": len(per_seed),
                "median_env_steps_to_threshold": median_steps(per_seed),
                "per_seed": per_seed,
            }
            out["total_wall_s"] = round(time.time() - t_start, 1)
            if args.out:  # after every seed, so a cut-short run still leaves its figures
                args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
