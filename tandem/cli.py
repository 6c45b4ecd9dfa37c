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


def check_new_run_dir(run_dir: str | None) -> None:
    """Refuse a --run-dir that already holds a run before Ray starts (not after, which left a
    crashed run behind)."""
    if run_dir is None:
        return
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise TandemError(f"--run-dir {path} is a file: choose a directory path")
    if any((path / name).exists() for name in ("metrics.jsonl", "config.yaml")):
        raise TandemError(
            f"run directory {path} already holds a run: pass --resume {path} to continue it, "
            "or choose another --run-dir"
        )


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
        ("replay_shards", "replay_shards"),
        ("num_cpus", "num_cpus"),
        ("stop_return", "stop_return"),
        ("backend", "backend"),
        ("device", "device"),
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
        check_new_run_dir(run.run_dir)
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


def _workers(text: str) -> int | str:
    """``--workers``: N stays an int (the old meaning); MIN:MAX and auto stay text. Both are
    checked with the rest of the config (one ``tandem: error`` line, before Ray starts)."""
    text = text.strip().lower()
    return int(text) if text.isdigit() else text


def cmd_scale(args: argparse.Namespace) -> int:
    """``tandem scale RUN_DIR --workers N``: change a live run's target worker count."""
    from tandem.cluster.control import request_scale

    address = request_scale(Path(args.run_dir), args.workers)
    print(f"asked {args.run_dir} (cluster {address}) for {args.workers} workers")
    return 0


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


SWEEP_RUN_FLAGS = (
    "workers",
    "envs_per_worker",
    "total_steps",
    "stop_return",
    "backend",
    "address",
    "num_cpus",
    "device",
)
"""``tandem sweep`` flags that set a run config key of every trial (as ``tandem train``'s do)."""


def cmd_sweep(args: argparse.Namespace) -> int:
    """Expand the grid x seeds, check every trial's config here, then run them all on Ray Tune."""
    from tandem.runner.config import parse_set
    from tandem.runner.session import resolve_config
    from tandem.runner.sweep import (
        SweepError,
        build_spec,
        default_sweep_name,
        expand,
        format_table,
        load_sweep_file,
        parse_grid,
        read_spec,
        trial_overrides,
        write_spec,
    )

    if args.resume:
        sweep_dir = Path(args.resume)
        given = [f for f in ("sweep_file", "algo", "env", "seeds", "grid", "set", "name") if getattr(args, f)]
        if given:
            raise SweepError(
                f"--resume continues {sweep_dir} as it was started: drop {given[0].replace('_', '-')}"
            )
        spec, trials = read_spec(sweep_dir)
    else:
        overrides = parse_set(args.set or [])
        overrides.update({k: getattr(args, k) for k in SWEEP_RUN_FLAGS if getattr(args, k) is not None})
        spec = build_spec(
            load_sweep_file(args.sweep_file) if args.sweep_file else None,
            algo=args.algo,
            env=args.env,
            name=args.name,
            seeds=args.seeds,
            grid=parse_grid(args.grid or []),
            overrides=overrides,
            driver_cpus=args.driver_cpus,
            worker_cpus=args.worker_cpus,
            max_concurrent=args.max_concurrent,
        )
        spec.name = spec.name or default_sweep_name(spec.algo, spec.env)
        sweep_dir = Path(args.runs_root) / spec.name
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            raise SweepError(
                f"{sweep_dir} already holds a sweep: pass --resume {sweep_dir} to continue it, "
                "or choose another --name"
            )
        trials = expand(spec)
    # Every trial's config is resolved now (defaults, preset, range checks), so a typo in one
    # grid value stops the sweep before Ray starts rather than failing that trial later.
    layouts, first = {}, None
    for t in trials:
        run, _, _ = resolve_config(spec.algo, spec.env, trial_overrides(spec, t, sweep_dir / t.name))
        if run.learner == "actor":
            raise TandemError(
                f"trial {t.name}: a sweep trial's learner runs in its driver, on the trial's first "
                "bundle (size it with --driver-cpus): drop learner=actor from the sweep"
            )
        layouts[t.name] = (run.workers, run.backend)
        first = first or run
    assert first is not None  # expand() yields at least one trial (parse_seeds refuses none)
    if not args.resume:
        write_spec(sweep_dir, spec, trials)
    print(f"tandem sweep: {len(trials)} trial(s) in {sweep_dir}", flush=True)
    from tandem.cluster.sweep import run_sweep

    rows = run_sweep(
        spec,
        trials,
        sweep_dir,
        layouts=layouts,
        address=first.address,
        num_cpus=first.num_cpus,
        return_window=first.return_window,
        resume=bool(args.resume),
        retry_failed=args.retry_failed,
    )
    print(format_table(rows))
    print(f"summary: {sweep_dir / 'summary.json'} and summary.csv")
    failed = [r for r in rows if r["status"] == "failed"]
    unfinished = [r for r in rows if r["status"] not in ("finished", "failed")]
    if unfinished:
        print(
            f"tandem sweep: {len(unfinished)} of {len(rows)} trial(s) were interrupted; continue them with "
            f"tandem sweep --resume {sweep_dir}",
            file=sys.stderr,
        )
    if failed:
        print(
            f"tandem sweep: {len(failed)} of {len(rows)} trial(s) failed; "
            f"rerun them with tandem sweep --resume {sweep_dir} --retry-failed",
            file=sys.stderr,
        )
    return 1 if failed or unfinished else 0


def register_sweep(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` subcommand."""
    p = subparsers.add_parser(
        "sweep",
        help="a grid x seeds of runs, concurrently on Ray Tune",
        description="Run every combination of --grid values for every seed in --seeds as its own run "
        "directory runs/<name>/<trial>/, concurrently on the Ray cluster (Ray Tune). A failed trial is "
        "reported and the others go on; the summary is runs/<name>/summary.json and .csv.",
    )
    p.add_argument(
        "sweep_file", nargs="?", help="YAML sweep file (name, algo, env, seeds, grid, set); flags win"
    )
    p.add_argument("--algo", help="pg | ppo | qlearn | qeval | dqn | sac | td3")
    p.add_argument("--env", help="Gymnasium env id, e.g. CartPole-v1")
    p.add_argument("--seeds", help="START:END (end excluded, 0:5 is 5 seeds) or 0,1,2 (default 0)")
    p.add_argument(
        "--grid",
        action="append",
        metavar="KEY=[V1,V2]",
        help="a swept config key and its values (repeatable)",
    )
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="a config key for every trial (repeatable)"
    )
    p.add_argument(
        "--name", help="sweep name: trials go to RUNS_ROOT/NAME/ (default <algo>-<env>-sweep-<time>)"
    )
    p.add_argument("--runs-root", default="runs", help="parent of the sweep directory (default: runs)")
    p.add_argument("--workers", type=int, help="rollout workers per trial (default 2)")
    p.add_argument("--envs-per-worker", type=int, help="sub-envs per worker (default 4)")
    p.add_argument("--total-steps", type=int, help="env-step budget of each trial")
    p.add_argument(
        "--stop-return", type=float, help="stop a trial once its trailing mean return reaches this"
    )
    p.add_argument(
        "--backend", choices=("ray", "local"), help="each trial's workers: ray actors (default) | local"
    )
    p.add_argument("--device", help="each trial's learner device: cpu | cuda | cuda:N | auto")
    p.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs for the embedded local Ray")
    p.add_argument(
        "--driver-cpus", type=float, help="CPUs reserved per trial for its driver+learner (default 1)"
    )
    p.add_argument("--worker-cpus", type=float, help="CPUs reserved per rollout worker (default 1)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as fit)")
    p.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep (runs/<name>)")
    p.add_argument("--retry-failed", action="store_true", help="with --resume: run failed trials again")
    p.set_defaults(func=cmd_sweep, error_prefix="tandem sweep")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tandem", description="Distributed actor-learner RL on Ray.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an agent (pg, ppo, qlearn, qeval, dqn, sac, td3)")
    t.add_argument("--algo", help="pg | ppo | qlearn | qeval | dqn | sac | td3")
    t.add_argument("--env", help="Gymnasium env id, e.g. CartPole-v1")
    t.add_argument(
        "--workers",
        type=_workers,
        help="rollout workers: N (default 2) | MIN:MAX (start with what fits, grow toward MAX as CPUs "
        "appear, shrink when nodes go) | auto (1:the cluster's CPUs)",
    )
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
        help="off-policy replay: memory | redis://[:pw@]host:port/db | rediss://... (or TANDEM_REPLAY_URL); "
        "several URLs, comma-separated, shard it (default: managed redis-server(s) on the learner's node)",
    )
    t.add_argument(
        "--replay-shards",
        type=int,
        metavar="K",
        help="spread the Redis replay over K servers (managed: K redis-servers on the learner's node; "
        "given: one --replay URL each, comma-separated); writers go to shard (worker index mod K)",
    )
    t.add_argument(
        "--stop-return",
        type=float,
        help=f"stop once the mean of the last return_window (default {RETURN_WINDOW}) episode returns "
        "reaches this",
    )
    t.add_argument("--device", help="the learner's torch device: cpu | cuda | cuda:N | auto (default cpu)")
    t.add_argument("--config", help="YAML file of config keys")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    t.add_argument("--run-dir", help="output directory (default runs/<algo>-<env>-<time>)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress display")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="run a trained policy greedily")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=_positive_int, default=10)
    e.add_argument("--seed", type=int, default=12345)
    e.add_argument("--video", action="store_true", help="record videos into RUN_DIR/videos")
    e.set_defaults(func=cmd_eval)

    sc = sub.add_parser("scale", help="change a live run's worker count (from another shell)")
    sc.add_argument("run_dir", help="the running run's directory")
    sc.add_argument("--workers", type=_positive_int, required=True, help="the new target worker count")
    sc.set_defaults(func=cmd_scale)

    register_dashboard(sub)
    register_sweep(sub)
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
