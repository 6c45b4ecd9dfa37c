"""Off-policy benchmark (issue: off-policy learners). Prints one JSON object.

For each task: env steps to the threshold, wall time (process start-up included), final return
and the data-reuse figure samples_trained / env_steps, median over seeds, Tandem beside RLlib on
the same machine and budget (RLlib has DQN and SAC; TD3 and tabular Q-learning have no RLlib
counterpart on its new API stack, so they run alone).

    python -m benchmarks.off_policy                       # every task, 3 seeds (hours on 2 cores)
    python -m benchmarks.off_policy --only dqn_cartpole sac_pendulum --seeds 3
    python -m benchmarks.off_policy --skip-rllib --replay memory

Each Tandem seed stops at the threshold (``--full-budget`` runs the whole budget). Each RLlib
seed stops at the threshold, at the budget, or after ``--rllib-wall-factor`` times Tandem's
median wall time to the threshold: the issue's bar is Tandem <= 0.5x RLlib's wall time, so a
cap of 2.5x decides it, and a capped seed gives an upper bound on the ratio.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.common import rolling_threshold, run_rllib, run_tandem, summarize
from tandem.core.metrics import RETURN_WINDOW

# algo, env, threshold, env-step budget, RLlib algo (None: no counterpart), episodes in the score
CASES: dict[str, dict] = {
    "dqn_cartpole": dict(algo="dqn", env_id="CartPole-v1", threshold=475.0, budget=50_000, rllib="dqn"),
    "sac_pendulum": dict(algo="sac", env_id="Pendulum-v1", threshold=-200.0, budget=15_000, rllib="sac"),
    "sac_invertedpendulum": dict(
        algo="sac", env_id="InvertedPendulum-v5", threshold=950.0, budget=30_000, rllib="sac", window=5
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
    ap.add_argument("--only", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--skip-rllib", action="store_true")
    ap.add_argument("--rllib-seeds", type=int, default=None, help="RLlib seeds (default: --seeds)")
    ap.add_argument(
        "--rllib-wall-factor",
        type=float,
        default=2.5,
        help="stop each RLlib seed after this many times Tandem's median wall time to the threshold "
        "(the target is Tandem <= 0.5x RLlib, so 2.5 settles it either way); 0: no cap",
    )
    ap.add_argument(
        "--skip-tandem",
        action="store_true",
        help="RLlib only (give its wall-time cap with --rllib-wall-cap-s, e.g. from an earlier Tandem run)",
    )
    ap.add_argument("--rllib-wall-cap-s", type=float, default=None, help="RLlib wall-time cap in seconds")
    ap.add_argument("--replay", default=None, help="memory | redis://... (default: managed local Redis)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--full-budget",
        action="store_true",
        help="run the whole env-step budget instead of stopping at the threshold",
    )
    ap.add_argument("--set", action="append", default=[], help="extra Tandem --set KEY=VALUE")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    out: dict = {}
    for name in args.only:
        entry = run_case(name, CASES[name], args)
        out[name] = entry
        print(json.dumps({name: entry}), flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


def score(name: str, side: str, seed: int, run_dir, secs: float, threshold: float, window: int) -> dict:
    """One seed's result (the shared threshold rule), printed as soon as it is known."""
    res = rolling_threshold(run_dir, threshold, window)
    res.update(process_s=round(secs, 2), run_dir=str(run_dir))
    print(json.dumps({name: {f"{side}_seed": seed, **res}}), flush=True)
    return res


def run_case(name: str, case: dict, args: argparse.Namespace) -> dict:
    """Tandem's seeds, then RLlib's seeds capped at a multiple of Tandem's wall time."""
    window = case.get("window", RETURN_WINDOW)
    stop = None if args.full_budget else case["threshold"]
    extra = ["--replay", args.replay] if args.replay else []
    entry: dict = {"threshold": case["threshold"], "budget": case["budget"], "window": window}
    ours_wall = None
    if not args.skip_tandem:
        ours = []
        for seed in range(args.seeds):
            run_dir, secs = run_tandem(
                case["algo"],
                case["env_id"],
                seed,
                case["budget"],
                stop,
                workers=args.workers,
                envs_per_worker=1,
                sets=[f"return_window={window}", *args.set],
                extra=extra,
            )
            ours.append(score(name, "tandem", seed, run_dir, secs, case["threshold"], window))
        t = entry["tandem"] = summarize(ours)
        entry["meets_step_target"] = (
            t["median_env_steps_to_threshold"] is not None
            and t["median_env_steps_to_threshold"] <= case["budget"]
        )
        ours_wall = t["median_wall_s_to_threshold"] or t["median_process_s"]
    if not case["rllib"] or args.skip_rllib:
        return entry
    cap = args.rllib_wall_cap_s
    if cap is None and ours_wall is not None and args.rllib_wall_factor > 0:
        cap = args.rllib_wall_factor * ours_wall
    theirs = []
    for seed in range(args.rllib_seeds or args.seeds):
        run_dir, secs = run_rllib(
            case["rllib"],
            case["env_id"],
            seed,
            case["budget"],
            stop,
            workers=1,
            return_window=window,
            max_wall_s=cap,
        )
        theirs.append(score(name, "rllib", seed, run_dir, secs, case["threshold"], window))
    r = entry["rllib"] = summarize(theirs)
    entry["rllib_wall_cap_s"] = cap
    theirs_wall = r["median_wall_s_to_threshold"]
    if ours_wall is None:
        return entry
    if theirs_wall is not None:
        entry["wall_ratio_tandem_over_rllib"] = round(ours_wall / theirs_wall, 3)
    else:
        # RLlib's median seed was stopped (cap or budget) before the threshold, so its time to
        # the threshold is longer than the wall time it ran: the ratio is an upper bound.
        ran = max(x["wall_s"] or 0.0 for x in theirs)
        entry["wall_ratio_tandem_over_rllib_at_most"] = round(ours_wall / ran, 3) if ran else None
    return entry


if __name__ == "__main__":
    main()
