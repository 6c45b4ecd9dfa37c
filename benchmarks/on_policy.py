"""On-policy benchmark (issue: foundation). Prints one JSON object.

- CartPole-v1, PPO, 2 workers: env steps and wall time to a mean return of 475 (target: within
  50,000 steps, and at most half of RLlib PPO's wall time on the same machine).
- CartPole-v1, pg with a baseline: >= 475 within 500,000 steps.
- InvertedPendulum-v5, PPO: >= 900 within 150,000 steps.
- RLlib's PPO on CartPole-v1 with the same worker count, in the same run, twice: its tuned example
  (``--preset tuned``, a linear 32-unit net) and the stronger config (``--preset strong``: default
  nets, batch 4000, minibatch 128, 10 epochs, lr 3e-4), each with its own wall-time ratio.

Medians over seeds (default 3). Usage:
    python -m benchmarks.on_policy [--seeds 3] [--skip-rllib] [--only ppo_cartpole]
        [--rllib-presets tuned strong]
"""

from __future__ import annotations

import argparse
import json

from benchmarks.common import rolling_threshold, run_rllib, run_tandem, summarize

CASES = {
    "ppo_cartpole": dict(algo="ppo", env_id="CartPole-v1", threshold=475.0, budget=50_000, workers=2),
    "pg_cartpole": dict(algo="pg", env_id="CartPole-v1", threshold=475.0, budget=500_000, workers=2),
    "ppo_invertedpendulum": dict(
        algo="ppo", env_id="InvertedPendulum-v5", threshold=900.0, budget=150_000, workers=2
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=list(CASES))
    ap.add_argument("--skip-rllib", action="store_true")
    ap.add_argument("--rllib-presets", nargs="+", default=["tuned", "strong"], choices=["tuned", "strong"])
    args = ap.parse_args()
    out: dict = {}
    for name in args.only:
        case = CASES[name]
        results = []
        for seed in range(args.seeds):
            run_dir, secs = run_tandem(
                case["algo"], case["env_id"], seed, case["budget"], case["threshold"], workers=case["workers"]
            )
            res = rolling_threshold(run_dir, case["threshold"])
            res.update(process_s=round(secs, 2), run_dir=str(run_dir))
            results.append(res)
        summary = summarize(results)
        summary["target_env_steps"] = case["budget"]
        steps = summary["median_env_steps_to_threshold"]
        summary["meets_step_target"] = steps is not None and steps <= case["budget"]
        out[name] = summary
    for preset in [] if args.skip_rllib or "ppo_cartpole" not in out else args.rllib_presets:
        results = []
        for seed in range(args.seeds):
            run_dir, secs = run_rllib("ppo", "CartPole-v1", seed, 200_000, 475.0, workers=2, preset=preset)
            res = rolling_threshold(run_dir, 475.0)
            res.update(process_s=round(secs, 2), run_dir=str(run_dir))
            results.append(res)
        key = "rllib_ppo_cartpole" + ("" if preset == "tuned" else f"_{preset}")
        out[key] = summarize(results)
        ours = out["ppo_cartpole"]["median_wall_s_to_threshold"]
        theirs = out[key]["median_wall_s_to_threshold"]
        if ours and theirs:
            out[f"ppo_wall_time_ratio_tandem_over_{key}"] = round(ours / theirs, 3)
            out[f"meets_half_of_{key}_wall_time"] = ours <= 0.5 * theirs
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
