"""CLI wiring for ``tandem dashboard``, ``tandem report`` and ``tandem baseline rllib``.

``cluster/cli.py`` calls :func:`register` with its subparsers; each subcommand sets
``func`` to a callable taking the parsed args and returning an exit code. User mistakes
(a missing runs dir for a report, a port in use) print one line and return 2, no traceback.
Heavy imports (ray, playwright) happen inside the commands, so ``tandem --help`` stays fast.

Standalone, before ``cluster/cli.py`` wires it: ``python -m cluster.cli_dashboard dashboard runs/``.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from cluster.dashboard_data import DEFAULT_SMOOTH, DEFAULT_STALE_S

BASELINE_ALGOS = ("ppo", "dqn", "sac")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, not {port}")
    return port


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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dashboard``, ``report`` and ``baseline`` subcommands."""
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
        default=DEFAULT_SMOOTH,
        help=f"episodes in the rolling mean of the return curve (default: {DEFAULT_SMOOTH})",
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
        default=DEFAULT_SMOOTH,
        help=f"episodes in the rolling mean of the return curve (default: {DEFAULT_SMOOTH})",
    )
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser("baseline", help="reference runs of other libraries in Tandem's run format")
    sub = p.add_subparsers(dest="baseline_kind", metavar="{rllib}", required=True)
    q = sub.add_parser(
        "rllib",
        help="run RLlib's algorithm (tuned example hyperparameters) and write a Tandem run dir",
        description="Run RLlib (new API stack) and write metrics.jsonl, config.yaml and status.json "
        "in Tandem's format, so the dashboard and report show it beside Tandem's runs.",
    )
    q.add_argument("--algo", choices=BASELINE_ALGOS, required=True)
    q.add_argument(
        "--env", required=True, dest="env_id", metavar="ENV_ID", help="gymnasium id, e.g. CartPole-v1"
    )
    q.add_argument("--total-steps", type=_positive_int, required=True, help="env steps to collect")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--run-dir", default=None, help="run directory (default: runs/<algo>-<env>-<timestamp>)")
    q.add_argument("--workers", type=_positive_int, default=1, help="RLlib env runners (default: 1)")
    q.add_argument(
        "--stop-return",
        type=float,
        default=None,
        help="stop once the mean of the last --return-window episode returns reaches this",
    )
    q.add_argument(
        "--return-window", type=_positive_int, default=20, help="episodes in the trailing mean (default: 20)"
    )
    q.add_argument("--max-wall-s", type=float, default=None, help="stop after this many seconds")
    q.add_argument("--address", default=None, help="Ray address to join (default: start a local Ray)")
    q.set_defaults(func=cmd_baseline_rllib)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from cluster.dashboard import make_server

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
    from cluster.report import ReportError, write_report

    try:
        out = write_report(args.runs_dirs, args.output, png=args.png, smooth=args.smooth)
    except ReportError as e:
        return _fail("report", str(e))
    print(f"tandem report: wrote {out}")
    return 0


def cmd_baseline_rllib(args: argparse.Namespace) -> int:
    from cluster.baseline_rllib import BaselineError, run_rllib

    try:
        run_dir = run_rllib(
            args.algo,
            args.env_id,
            args.total_steps,
            args.seed,
            args.run_dir,
            workers=args.workers,
            stop_return=args.stop_return,
            address=args.address,
            return_window=args.return_window,
            max_wall_s=args.max_wall_s,
        )
    except BaselineError as e:
        return _fail("baseline rllib", str(e))
    except KeyboardInterrupt:
        return _fail("baseline rllib", "interrupted", code=130)
    print(f"tandem baseline rllib: wrote {run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tandem")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
