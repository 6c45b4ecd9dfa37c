"""``train``: the entry point that the CLI, the benchmarks and the tests call. It opens a session
on a backend and hands it to the algorithm's driver."""

from __future__ import annotations

import logging
import time
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
        log.info("learner: %s (--learner %s)", backend.learner_placement(run.learner), run.learner)
        s = open_session(run, algo_cfg, spec, backend, resume_dir, quiet)
        s.t_start = t_start
        s.rundir.attach_telemetry([backend.metrics_sink(s.rundir.path.name, run.algo, run.env_id)])
        if s.resumed_from:
            log.warning(
                "resuming %s from %s at %d env steps", run.run_dir, s.resumed_from.name, s.counters.env_steps
            )
        try:
            (train_on_policy if spec.on_policy else train_off_policy)(s)
            s.checkpoint()
        except KeyboardInterrupt:
            s.checkpoint()
            s.rundir.close("crashed", "interrupted by the user")
            raise
        except BaseException as e:
            s.rundir.close("crashed", f"{type(e).__name__}: {str(e)[:300]}")
            raise
        s.rundir.close("finished")
        return Path(s.rundir.path)
    finally:
        backend.shutdown()
