"""Off-policy benchmark (issue: off-policy learners). Prints one JSON object.

For each task: env steps to the threshold, wall time (process start-up included), final return
and the data-reuse figure samples_trained / env_steps, median over seeds, Tandem beside RLlib on
the same machine and budget (RLlib has DQN and SAC; TD3 and tabular Q-learning have no RLlib
counterpart on its new API stack, so they run alone).

    python -m benchmarks.off_policy                       # every task, 3 seeds (hours on 2 cores)
    python -m benchmarks.off_policy --only dqn_cartpole sac_pendulum --seeds 3
    python -m benchmarks.off_policy --skip-rllib --replay memory
"""

from __future__ import annotations

import argparse
import json

from benchmarks.common import rolling_threshold, run_rllib, run_tandem, summarize

# name: (algo, env, threshold, env-step budget, rllib algo or None, extra --set, score window)
CASES: dict[str, dict] = {
    "dqn_cartpole": dict(algo="dqn", env_id="CartPole-v1", threshold=475.0, budget=50_000, rllib="dqn"),
    "sac_pendulum": dict(algo="sac", env_id="Pendulum-v1", threshold=-200.0, budget=15_000, rllib="sac"),
    "sac_invertedpendulum": dict(
        algo="sac", env_id="InvertedPendulum-v5", threshold=950.0, budget=30_000, rllib="sac"
    ),
    "sac_halfcheetah": dict(
        algo="sac", env_id="HalfCheetah-v5", threshold=3000.0, budget=100_000, rllib="sac", window=5
    ),
    "td3_halfcheetah": dict(
        algo="td3", env_id="HalfCheetah-v5", threshold=3000.0, budget=100_000, rllib=None, window=5
    ),
    "qlearn_frozenlake_slippery": dict(
        algo="qlearn", env_id="FrozenLake-v1", threshold=0.7, budget=200_000, rllib=None, window=100
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=list(CASES))
    ap.add_argument("--skip-rllib", action="store_true")
    ap.add_argument("--rllib-seeds", type=int, default=None, help="RLlib seeds (default: --seeds)")
    ap.add_argument("--replay", default=None, help="memory | redis://... (default: managed local Redis)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    out: dict = {}
    for name in args.only:
        case = CASES[name]
        window = case.get("window", 20)
        extra = ["--replay", args.replay] if args.replay else []
        ours = []
        for seed in range(args.seeds):
            run_dir, secs = run_tandem(
                case["algo"],
                case["env_id"],
                seed,
                case["budget"],
                None,
                workers=args.workers,
                envs_per_worker=1,
                extra=extra,
            )
            res = rolling_threshold(run_dir, case["threshold"], window)
            res.update(process_s=round(secs, 2), run_dir=str(run_dir))
            ours.append(res)
        entry = {"tandem": summarize(ours), "threshold": case["threshold"], "budget": case["budget"]}
        t = entry["tandem"]
        entry["meets_step_target"] = (
            t["reached"] == args.seeds and t["median_env_steps_to_threshold"] <= case["budget"]
        )
        if case["rllib"] and not args.skip_rllib:
            theirs = []
            for seed in range(args.rllib_seeds or args.seeds):
                run_dir, secs = run_rllib(
                    case["rllib"], case["env_id"], seed, case["budget"], None, workers=1
                )
                res = rolling_threshold(run_dir, case["threshold"], window)
                res.update(process_s=round(secs, 2), run_dir=str(run_dir))
                theirs.append(res)
            entry["rllib"] = summarize(theirs)
            a = t["median_wall_s_to_threshold"]
            b = entry["rllib"]["median_wall_s_to_threshold"]
            # Wall time for the whole budget when a side never reaches the threshold.
            a = a or t["median_process_s"]
            b = b or entry["rllib"]["median_process_s"]
            entry["wall_ratio_tandem_over_rllib"] = round(a / b, 3) if a and b else None
        out[name] = entry
        print(json.dumps({name: entry}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
