"""The ``tandem`` command line, one module for every subcommand: train, eval, dashboard, report and
baseline. A user's mistake prints one line naming the fix, never a traceback. Heavy imports (ray,
torch, playwright) happen inside the commands, so ``tandem --help`` stays fast."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tandem.core.errors import TandemError
from tandem.core.metrics import RETURN_WINDOW
from tandem.dashboard.data import DEFAULT_STALE_S

USER_ERRORS: tuple[type[BaseException], ...] = (TandemError,)


def _user_errors() -> tuple[type[BaseException], ...]:
    try:
        from tandem.replay import ReplayError

        return (TandemError, ReplayError)
    except ImportError:
        return USER_ERRORS


def cmd_train(args: argparse.Namespace) -> int:
    from tandem.runner.config import load_yaml, parse_set
    from tandem.runner.session import load_run_config, resolve_config

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
        ("backend", "backend"),
        ("learner", "learner"),
        ("learner_resources", "learner_resources"),
    ]:
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.replay is None and os.environ.get("TANDEM_REPLAY_URL"):
        overrides["replay"] = os.environ["TANDEM_REPLAY_URL"]
    if args.resume:
        run_dir = Path(args.resume)
        run, algo_cfg, spec = load_run_config(run_dir)
        from tandem.runner.config import split_overrides

        split_overrides(run, algo_cfg, overrides, "--set")
        if run.replay and "***" in run.replay:
            raise TandemError(
                f"{run_dir} used a password-protected replay ({run.replay}); passwords are not stored: "
                "pass --replay URL (or set TANDEM_REPLAY_URL) again to resume"
            )
        run.run_dir = str(run_dir)
        out = _train(run, algo_cfg, spec, resume_dir=run_dir, quiet=args.quiet)
    else:
        if not args.algo or not args.env:
            raise TandemError("train needs --algo and --env (or --resume RUN_DIR)")
        file_overrides = load_yaml(args.config) if args.config else None
        run, algo_cfg, spec = resolve_config(args.algo, args.env, overrides, file_overrides)
        out = _train(run, algo_cfg, spec, quiet=args.quiet)
    print(f"run directory: {out}")
    return 0


def _train(run: Any, algo_cfg: Any, spec: Any, **kw: Any) -> Path:
    """``runner.train.train`` on the backend ``run.backend`` names: Ray actors, or this process."""
    from tandem.runner.train import train

    if run.backend == "ray":
        from tandem.cluster.group import RayBackend

        return train(run, algo_cfg, spec, backend=RayBackend(run.address, run.num_cpus), **kw)
    from tandem.runner.local import LocalBackend

    return train(run, algo_cfg, spec, backend=LocalBackend(), **kw)


def cmd_eval(args: argparse.Namespace) -> int:
    from tandem.runner.evaluate import evaluate

    result = evaluate(Path(args.run_dir), episodes=args.episodes, video=args.video, seed=args.seed)
    print(
        f"{result['episodes']} episodes: mean return {result['return_mean']:.2f} "
        f"(std {result['return_std']:.2f}, min {result['return_min']:.2f}, max {result['return_max']:.2f})"
    )
    if result.get("video_dir"):
        print(f"videos: {result['video_dir']}")
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, not {port}")
    return port


def _resources(text: str) -> dict[str, float]:
    """``--learner-resources '{"GPU": 1}'``: a JSON object of Ray resource amounts."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value.values()
    ):
        raise argparse.ArgumentTypeError(
            f"""expected a JSON object of resource amounts like '{{"GPU": 1}}', not {text!r}"""
        )
    return {str(k): float(v) for k, v in value.items()}


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, not {v}")
    return v


def _fail(cmd: str, message: str, code: int = 2) -> int:
    print(f"tandem {cmd}: error: {message}", file=sys.stderr)
    return code


def register_dashboard(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dashboard`` and ``report`` subcommands."""
    p = subparsers.add_parser(
        "dashboard",
        help="live web dashboard over run directories",
        description="Serve a live, offline dashboard of the runs under RUNS_DIR (default: runs). "
        "New runs and metric rows appear without a reload.",
    )
    p.add_argument(
        "runs_dirs",
        nargs="*",
        default=["runs"],
        metavar="RUNS_DIR",
        help="a run directory or a parent of run directories (default: runs)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=_port, default=8050, help="port (default: 8050; 0 picks a free one)")
    p.add_argument(
        "--smooth",
        type=_positive_int,
        default=RETURN_WINDOW,
        help=f"episodes in the rolling mean of the return curve (default: {RETURN_WINDOW})",
    )
    p.add_argument(
        "--stale-s",
        type=float,
        default=DEFAULT_STALE_S,
        help="a running run silent this long shows as crashed (default: %(default)s)",
    )
    p.set_defaults(func=cmd_dashboard)

    p = subparsers.add_parser(
        "report",
        help="self-contained static HTML report (plots inline, opens offline)",
        description="Write one HTML file with the dashboard's plots and plotly.js inlined.",
    )
    p.add_argument("runs_dirs", nargs="+", metavar="RUNS_DIR", help="run directories or their parents")
    p.add_argument("-o", "--output", default="report.html", help="output HTML file (default: report.html)")
    p.add_argument(
        "--png",
        action="store_true",
        help="also save one PNG per panel next to the HTML (needs playwright and chromium)",
    )
    p.add_argument(
        "--smooth",
        type=_positive_int,
        default=RETURN_WINDOW,
        help=f"episodes in the rolling mean of the return curve (default: {RETURN_WINDOW})",
    )
    p.set_defaults(func=cmd_report, error_prefix="tandem report")


def cmd_dashboard(args: argparse.Namespace) -> int:
    from tandem.dashboard.server import make_server

    missing = [d for d in args.runs_dirs if not Path(d).exists()]
    for d in missing:
        print(
            f"tandem dashboard: warning: runs dir {d!r} does not exist yet; the page will show runs "
            "as they appear",
            file=sys.stderr,
        )
    try:
        server = make_server(args.runs_dirs, args.host, args.port, smooth=args.smooth, stale_s=args.stale_s)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return _fail("dashboard", f"port {args.port} on {args.host} is in use; pick another with --port")
        return _fail("dashboard", f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    n = len(server.store.runs)
    print(
        f"tandem dashboard: {n} run(s) from {', '.join(args.runs_dirs)} at {server.url} (Ctrl-C to stop)",
        flush=True,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"tandem dashboard: warning: listening on {args.host}: anyone who can reach it can read "
            "these runs",
            file=sys.stderr,
        )
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("tandem dashboard: stopped")
    finally:
        server.server_close()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tandem.dashboard.report import write_report

    out = write_report(args.runs_dirs, args.output, png=args.png, smooth=args.smooth)
    print(f"tandem report: wrote {out}")
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
        "--backend",
        choices=("ray", "local"),
        help="where the rollout workers run: ray actors (default) | local, in this process (to debug)",
    )
    t.add_argument(
        "--learner",
        choices=("local", "actor", "auto"),
        help="where updates run: local, in the driver | actor, a Ray actor with its own resources | "
        "auto (default): actor when joining a cluster, local on an embedded Ray",
    )
    t.add_argument(
        "--learner-resources",
        type=_resources,
        metavar="JSON",
        help="""Ray resources of the learner actor, e.g. '{"GPU": 1}' (CPUs: --set learner_cpus=N)""",
    )
    t.add_argument(
        "--replay",
        help="off-policy replay: memory | redis://[:pw@]host:port/db | rediss://... (or TANDEM_REPLAY_URL) "
        "(default: a managed local redis-server)",
    )
    t.add_argument(
        "--stop-return",
        type=float,
        help=f"stop once the mean of the last return_window (default {RETURN_WINDOW}) episode returns "
        "reaches this",
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

    register_dashboard(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="tandem: %(message)s")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        # The one place a user's mistake (a TandemError) becomes a one-line message.
        print(f"{getattr(args, 'error_prefix', 'tandem')}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "tandem: interrupted; the last checkpoint is kept (resume with --resume RUN_DIR)", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
