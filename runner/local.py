"""The in-process backend (``--backend local``): the rollout workers are plain ``RolloutWorker``
objects in the driver's process, behind the same ``WorkerGroup`` interface as the Ray actors.

Nothing runs concurrently: a call runs when the driver waits on it, so a breakpoint anywhere (the
env, the policy, the learner, the replay) stops the whole training loop in one debugger. It is
also the backend of the learning tests, which run the real drivers without starting Ray.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tandem.core.errors import TandemError
from tandem.core.protocols import MetricsSink, Weights
from tandem.runner.worker import RolloutWorker


@dataclass(eq=False)
class LocalCall:
    """One submitted call: run on the first wait that includes it, then holds its outcome."""

    worker: int
    """Index of the worker to call."""
    method: str
    """``RolloutWorker`` method name (``sample``, ``collect``, ``ping``)."""
    args: tuple[Any, ...]
    """Positional arguments."""
    done: bool = False
    """Whether the call has run."""
    value: Any = None
    """Its return value, once done."""
    error: BaseException | None = field(default=None, repr=False)
    """The exception it raised, once done; re-raised by ``result``."""


class LocalWorkerGroup:
    """``num_workers`` rollout workers in this process, called one at a time.

    Workers share the process's global torch and numpy RNGs with the learner, so a local run
    does not draw the same numbers as a Ray run of the same seed. The on-policy loop repeats
    exactly for a seed; the off-policy loop still interleaves by the clock (report interval,
    0.5 s learning slices), as it does on Ray.
    A worker whose call raises is a bug, not a lost process: the exception reaches the driver.
    """

    def __init__(self, num_workers: int, **worker_kwargs: Any):
        self.num_workers = num_workers
        threads = torch.get_num_threads()
        self.workers = [
            RolloutWorker(worker_index=i, num_workers=num_workers, **worker_kwargs)
            for i in range(num_workers)
        ]
        # RolloutWorker pins torch to one thread for its own process; here that is the learner's.
        torch.set_num_threads(threads)

    @property
    def alive(self) -> list[int]:
        return list(range(self.num_workers))

    @property
    def nominal(self) -> int:
        """The fixed worker count: on-policy batches hold this many fragments."""
        return self.num_workers

    def maintain(self) -> None:
        """Nothing to replace or resize: in-process workers neither die nor scale."""

    @property
    def restarts(self) -> int:
        """Always 0: an in-process worker cannot die without taking the driver with it."""
        return 0

    def publish(self, weights: Weights) -> Weights:
        """The weights themselves: the workers copy them into their policies on the next call."""
        return weights

    def submit(self, i: int, method: str, *args: Any) -> LocalCall:
        return LocalCall(i, method, args)

    def _run(self, call: LocalCall) -> None:
        try:
            call.value = getattr(self.workers[call.worker], call.method)(*call.args)
        except Exception as e:  # noqa: BLE001 - handed to the driver by result()
            call.error = e
        call.done = True

    def wait(self, handles: Sequence[LocalCall], timeout: float) -> list[LocalCall]:
        """The finished handles; if none is, the oldest pending one is run now (``timeout`` is
        irrelevant: an in-process call is never still running elsewhere)."""
        done = [h for h in handles if h.done]
        if not done and handles:
            self._run(handles[0])
            done = [handles[0]]
        return done

    def result(self, handle: LocalCall) -> Any:
        if not handle.done:
            self._run(handle)
        if handle.error is not None:
            raise handle.error
        return handle.value

    def cancel(self, handles: Sequence[LocalCall]) -> None:
        """Nothing to stop: a call that was never waited on never ran."""

    def call_all(self, method: str, *args: Any) -> list[Any]:
        return [self.result(self.submit(i, method, *args)) for i in self.alive]

    def park(self, i: int, err: BaseException) -> None:
        """Unreachable in practice (``result`` raises the worker's own error, never WorkerLost)."""
        raise err

    def shutdown(self) -> None:
        for w in self.workers:
            w.close()


class LocalBackend:
    """Workers in this process; no runtime to start, no metrics exporter."""

    name = "local"

    def start(self) -> None:
        pass

    def make_group(
        self,
        num_workers: int,
        max_workers: int | None = None,
        run_dir: str | None = None,
        **worker_kwargs: Any,
    ) -> LocalWorkerGroup:
        """``max_workers`` workers (MIN:MAX starts MAX here: in-process workers need no CPUs of
        their own; 0, ``auto``: this machine's CPUs). No control channel (``run_dir`` unused)."""
        if max_workers == 0:  # auto
            max_workers = os.cpu_count() or 1
        return LocalWorkerGroup(max(num_workers, max_workers or 0), **worker_kwargs)

    def single_host(self) -> bool:
        return True

    def node_address(self) -> str:
        """Loopback: every worker is in this process."""
        return "127.0.0.1"

    def metrics_sink(self, run: str, algo: str, env: str) -> MetricsSink | None:
        return None

    def learner_placement(self, requested: str) -> str:
        """Always ``local``: an in-process run has no other process to put the learner in."""
        if requested == "actor":
            raise TandemError(
                "--learner actor needs the Ray backend: drop --backend local, or use --learner local"
            )
        return "local"

    def make_learner(self, host_kwargs: dict[str, Any], cpus: float, resources: Mapping[str, float]) -> Any:
        """Unreachable: :meth:`learner_placement` never answers ``actor``."""
        raise TandemError(
            "--learner actor needs the Ray backend: drop --backend local, or use --learner local"
        )

    def shutdown(self) -> None:
        pass
