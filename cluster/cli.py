"""The ``tandem`` command line: train, eval, and (from cluster.cli_dashboard) dashboard,
report and baseline. A user's mistake prints one line naming the fix, never a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from core.errors import TandemError

USER_ERRORS: tuple[type[BaseException], ...] = (TandemError,)


def _user_errors() -> tuple[type[BaseException], ...]:
    try:
        from replay import ReplayError

        return (TandemError, ReplayError)
    except ImportError:
        return USER_ERRORS


def cmd_train(args: argparse.Namespace) -> int:
    from cluster.config import load_yaml, parse_set
    from cluster.session import load_run_config, resolve_config, train

    overrides: dict[str, Any] = parse_set(args.set or [])
    for flag, key in [
        ("workers", "workers"),
        ("envs_per_worker", "envs_per_worker"),
        ("total_steps", "total_steps"),
        ("seed", "seed"),
        ("address", "address"),
        ("run_dir", "run_dir"),
        ("replay", "replay"),
        ("num_cpus", "num_cpus"),
        ("stop_return", "stop_return"),
    ]:
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.replay is None and os.environ.get("TANDEM_REPLAY_URL"):
        overrides["replay"] = os.environ["TANDEM_REPLAY_URL"]
    if args.resume:
        run_dir = Path(args.resume)
        run, algo_cfg, spec = load_run_config(run_dir)
        from cluster.config import split_overrides

        split_overrides(run, algo_cfg, overrides, "--set")
        if run.replay and "***" in run.replay:
            raise TandemError(
                f"{run_dir} used a password-protected replay ({run.replay}); passwords are not stored: "
                "pass --replay URL (or set TANDEM_REPLAY_URL) again to resume"
            )
        run.run_dir = str(run_dir)
        out = train(run, algo_cfg, spec, resume_dir=run_dir, quiet=args.quiet)
    else:
        if not args.algo or not args.env:
            raise TandemError("train needs --algo and --env (or --resume RUN_DIR)")
        file_overrides = load_yaml(args.config) if args.config else None
        run, algo_cfg, spec = resolve_config(args.algo, args.env, overrides, file_overrides)
        out = train(run, algo_cfg, spec, quiet=args.quiet)
    print(f"run directory: {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from cluster.evaluate import evaluate

    result = evaluate(Path(args.run_dir), episodes=args.episodes, video=args.video, seed=args.seed)
    print(
        f"{result['episodes']} episodes: mean return {result['return_mean']:.2f} "
        f"(std {result['return_std']:.2f}, min {result['return_min']:.2f}, max {result['return_max']:.2f})"
    )
    if result.get("video_dir"):
        print(f"videos: {result['video_dir']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tandem", description="Distributed actor-learner RL on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an agent (pg, ppo, qlearn, qeval, dqn, sac, td3)")
    t.add_argument("--algo", help="pg | ppo | qlearn | qeval | dqn | sac | td3")
    t.add_argument("--env", help="Gymnasium env id, e.g. CartPole-v1")
    t.add_argument("--workers", type=int, help="rollout worker actors (default 2)")
    t.add_argument("--envs-per-worker", type=int, help="sub-envs per worker (default 4)")
    t.add_argument(
        "--total-steps",
        type=int,
        help="env-step budget (default 100k, or the algorithm's tuned budget for the env)",
    )
    t.add_argument("--seed", type=int)
    t.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    t.add_argument("--num-cpus", type=int, help="CPUs for the embedded local Ray")
    t.add_argument(
        "--replay",
        help="off-policy replay: memory | redis://[:pw@]host:port/db | rediss://... (or TANDEM_REPLAY_URL) "
        "(default: a managed local redis-server)",
    )
    t.add_argument(
        "--stop-return",
        type=float,
        help="stop once the mean of the last return_window (default 20) episode returns reaches this",
    )
    t.add_argument("--config", help="YAML file of config keys")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    t.add_argument("--run-dir", help="output directory (default runs/<algo>-<env>-<time>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress display")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="run a trained policy greedily")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=12345)
    e.add_argument("--video", action="store_true", help="record videos into RUN_DIR/videos")
    e.set_defaults(func=cmd_eval)

    try:
        from cluster.cli_dashboard import register
    except ImportError:
        pass
    else:
        register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="tandem: %(message)s")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        print(f"tandem: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "tandem: interrupted; the last checkpoint is kept (resume with --resume RUN_DIR)", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
