"""``train``: the entry point that the CLI, the benchmarks and the tests call. It opens a session
on a backend and hands it to the algorithm's driver."""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tandem.core.errors import TandemError
from tandem.core.protocols import Backend
from tandem.learners.registry import AlgoSpec
from tandem.runner.config import RunConfig
from tandem.runner.local import LocalBackend
from tandem.runner.off_policy import train_off_policy
from tandem.runner.on_policy import train_on_policy
from tandem.runner.session import open_session

log = logging.getLogger("tandem")


def train(
    run: RunConfig,
    algo_cfg: Any,
    spec: AlgoSpec,
    resume_dir: Path | None = None,
    quiet: bool = False,
    backend: Backend | None = None,
) -> Path:
    """Run a whole training job on ``backend``; returns the run directory.

    ``backend`` None means ``run.backend``, which this layer can only build for ``local``: Ray's
    backend lives in ``cluster`` (``tandem.cluster.group.RayBackend``), and the CLI passes it.
    """
    t_start = time.perf_counter()
    if backend is None:
        if run.backend != "local":
            raise TandemError(
                f"backend {run.backend!r} must be passed in: train(..., backend=RayBackend(run.address, "
                "run.num_cpus)) from tandem.cluster.group, or set backend=local"
            )
        backend = LocalBackend()
    run.backend = backend.name
    import torch

    torch.set_num_threads(max(1, run.learner_threads))
    backend.start()
    try:
        # Before the run directory exists: an impossible --learner is a one-line error, not a crashed run.
        where = backend.learner_placement(run.learner)
        log.info("learner: %s (--learner %s)", where, run.learner)
        # With a learner actor, the driver's learner only holds state for checkpoints: on the
        # CPU, so that --device cuda asks for a GPU on the actor's node, not the driver's.
        s = open_session(run, algo_cfg, spec, backend, resume_dir, quiet, cpu_learner=where == "actor")
        s.t_start = t_start
        s.rundir.attach_telemetry([backend.metrics_sink(s.rundir.path.name, run.algo, run.env_id)])
        if s.resumed_from:
            log.warning(
                "resuming %s from %s at %d env steps", run.run_dir, s.resumed_from.name, s.counters.env_steps
            )
        try:
            with terminate_as_interrupt():
                (train_on_policy if spec.on_policy else train_off_policy)(s)
                s.checkpoint()
        except Terminated as e:
            s.checkpoint()
            s.rundir.close("crashed", f"{e}: resume with --resume {s.rundir.path}")
            log.warning("%s: checkpoint saved; resume with --resume %s", e, s.rundir.path)
            raise SystemExit(128 + e.signum) from None
        except KeyboardInterrupt:
            s.checkpoint()
            s.rundir.close("crashed", "interrupted by the user")
            raise
        except BaseException as e:
            # The last good checkpoint stays as it is: the learner may hold what broke the run.
            s.rundir.close("crashed", one_line(e))
            raise
        s.rundir.close("finished")
        return Path(s.rundir.path)
    finally:
        backend.shutdown()


class Terminated(KeyboardInterrupt):
    """SIGTERM (Kubernetes, systemd, ``kill``) arrived: stop like Ctrl-C, exit 128 + 15.

    A ``KeyboardInterrupt`` so that everything that already unwinds cleanly on Ctrl-C (the
    drivers' ``finally``, the workers' shutdown, the managed Redis) does the same here."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` in the main thread; the previous
    handler (Ray installs one that aborts with a native stack dump) is restored after it.
    A no-op off the main thread, where Python cannot install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def one_line(e: BaseException, limit: int = 300) -> str:
    """``e`` as status.json's one line: a TandemError's own message, otherwise ``Type: message``;
    the first non-empty line only, ANSI colour codes removed (Ray colours its tracebacks)."""
    text = _ANSI.sub("", str(e))
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = first if isinstance(e, TandemError) else f"{type(e).__name__}: {first}".rstrip(": ")
    return line[:limit]
