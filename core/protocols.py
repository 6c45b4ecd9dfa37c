"""The interfaces that the drivers compose. Structural (``typing.Protocol``): no base classes.

The drivers call these methods and nothing else: no ``hasattr`` probing, no ``ray.*``. A method
that means nothing for one implementation is still there, as a documented no-op (a Q-learner's
``set_progress``, an in-memory buffer's ``sync``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tandem.core.types import Batch, UpdateResult

Weights = dict[str, np.ndarray]


@runtime_checkable
class Policy(Protocol):
    """What a rollout worker acts with."""

    def act(self, obs: np.ndarray, explore: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Actions for a [N, *obs] batch, plus per-step extras (e.g. ``logp``, ``value``)."""

    def set_weights(self, weights: Weights, version: int) -> None:
        """Load numpy weights published by the learner under ``version``."""

    def get_weights(self) -> Weights:
        """The policy's parameters as numpy arrays (what crosses process boundaries)."""

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1] for acting schedules (ε); a no-op without any."""


@runtime_checkable
class Learner(Protocol):
    """One algorithm's update rule. No I/O: the driver owns processes, files and sockets."""

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1] (env steps / budget) for schedules; a no-op without any."""

    def update(self, batch: Any) -> UpdateResult:
        """One update from ``batch`` (a ``Rollout`` on-policy, a replay ``Batch`` off-policy):
        metrics, gradient steps, samples trained and, for prioritized replay, new priorities."""

    def get_weights(self) -> Weights:
        """Acting weights for the workers."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimizers, counters."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


@runtime_checkable
class ReplayBuffer(Protocol):
    """Storage that off-policy learners sample many times. In-memory and Redis share it."""

    @property
    def prioritized(self) -> bool:
        """Whether :meth:`update_priorities` changes what :meth:`sample` draws."""

    def add(self, batch: Batch) -> None:
        """Append a whole fragment (one round trip for remote storage)."""

    def sample(self, n: int) -> Batch:
        """``n`` transitions with ``indices`` and importance ``weights`` set."""

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """New priorities (e.g. |TD error|) for sampled slots; a no-op for uniform replay."""

    def sync(self) -> int:
        """Catch up with writes made elsewhere (a Redis mirror); returns the size. In memory: no-op."""

    def stats(self) -> dict[str, float | list]:
        """``replay/*`` reuse statistics for the metrics row."""

    def close(self) -> None:
        """Release connections and threads; a no-op in memory."""

    def __len__(self) -> int:
        """Transitions currently stored."""


class WorkerLost(Exception):
    """A worker process died while running a call. Its group restarts it; the driver parks the
    worker (:meth:`WorkerGroup.park`) and carries on with the others."""

    def __init__(self, worker: int, cause: str):
        super().__init__(f"worker {worker} died: {cause}")
        self.worker = worker
        self.cause = cause


@runtime_checkable
class WorkerGroup(Protocol):
    """N rollout workers (``runner.worker.RolloutWorker``), wherever they run.

    Calls are asynchronous: :meth:`submit` returns a handle at once, :meth:`wait` says which
    handles have finished, :meth:`result` gives a finished call's value. Ray runs the calls in
    actor processes; the in-process group runs each one when it is waited on.
    """

    num_workers: int
    """Workers in the group, alive or not."""

    @property
    def alive(self) -> list[int]:
        """Indices of workers that can take work now (re-admits restarted ones)."""

    @property
    def restarts(self) -> int:
        """Worker deaths seen so far (each one restarted)."""

    @property
    def nominal(self) -> int:
        """The run's batch size in workers, fixed for the run (N, or MAX of MIN:MAX): an on-policy
        batch holds this many fragments however many workers are alive."""

    def maintain(self) -> None:
        """Between iterations: replace lost workers where capacity returned, grow or shrink toward
        the target (``tandem scale``). Never blocks; a group that cannot change is a no-op."""

    def publish(self, weights: Weights) -> Any:
        """Make ``weights`` available to every worker once; pass the returned object to calls."""

    def submit(self, i: int, method: str, *args: Any) -> Any:
        """Start ``worker_i.method(*args)``; returns a handle."""

    def wait(self, handles: Sequence[Any], timeout: float) -> list[Any]:
        """Handles among ``handles`` that have finished: at least one, unless ``timeout`` seconds
        pass first (0: only those finished already). Empty ``handles``: returns []."""

    def result(self, handle: Any) -> Any:
        """The value of a finished call. Raises :class:`WorkerLost` if its worker died."""

    def cancel(self, handles: Sequence[Any]) -> None:
        """Give up on calls that have not finished (at shutdown)."""

    def call_all(self, method: str, *args: Any) -> list[Any]:
        """Call ``method`` on every live worker and return the answers of those that did not die;
        blocks until at least one worker answers."""

    def park(self, i: int, err: BaseException) -> None:
        """Take worker ``i`` out of :attr:`alive` until its restarted incarnation answers."""

    def shutdown(self) -> None:
        """Stop every worker and release their resources."""


@runtime_checkable
class MetricsSink(Protocol):
    """Somewhere a metrics row goes besides metrics.jsonl and TensorBoard (Prometheus via Ray)."""

    def record(self, row: dict[str, Any]) -> None:
        """Take one metrics row; must never raise into the training loop."""


@runtime_checkable
class Backend(Protocol):
    """Where a run's workers live: Ray actors (``cluster``), or objects in this process (``runner``)."""

    name: str
    """``ray`` or ``local``: what ``--backend`` names."""

    def start(self) -> None:
        """Join or start the runtime (ray.init); called once, before the session opens."""

    def make_group(self, num_workers: int, **worker_kwargs: Any) -> WorkerGroup:
        """Start ``num_workers`` rollout workers built with ``RolloutWorker(**worker_kwargs)``."""

    def single_host(self) -> bool:
        """Whether every worker runs on this machine (and so can reach its loopback Redis)."""

    def node_address(self) -> str:
        """This process's node address as the other nodes reach it (where a managed replay binds)."""

    def metrics_sink(self, run: str, algo: str, env: str) -> MetricsSink | None:
        """An extra sink for the run's metrics rows, or None."""

    def shutdown(self) -> None:
        """Undo :meth:`start` where that is this backend's job."""
