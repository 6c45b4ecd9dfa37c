"""The interfaces that the drivers compose. Structural (``typing.Protocol``): no base classes.

The drivers call these methods and nothing else: no ``hasattr`` probing, no ``ray.*``. A method
that means nothing for one implementation is still there, as a documented no-op (a Q-learner's
``set_progress``, an in-memory buffer's ``sync``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class RolloutInfo:
    """What the on-policy driver counts of one worker fragment the learner trained on (the
    fragment itself stays with the learner)."""

    worker_index: int
    """The worker that collected it."""
    env_steps: int
    """Env steps in it: T * N."""
    episode_returns: np.ndarray
    """Undiscounted returns of the episodes that finished in it."""
    policy_version: int
    """The weights version that acted."""


@dataclass(frozen=True)
class LearnerStep:
    """What the learner reports to the driver after one on-policy update or one off-policy
    learning slice (zero or more updates): the counter increments, the last metrics, and
    whether the acting weights changed. The driver adds the increments to the run's counters."""

    metrics: Mapping[str, float] = field(default_factory=dict)
    """The last update's metrics (empty when no update ran)."""
    updates: int = 0
    """``Learner.update`` calls made."""
    grad_steps: int = 0
    """Optimizer steps taken, summed over those calls."""
    samples_trained: int = 0
    """Transitions consumed, counted with repetition, summed over those calls."""
    samples_model: int = 0
    """Model-generated transitions trained on (Dyna learners), summed over those calls."""
    version_bumps: int = 0
    """Weight versions published (the driver's ``version`` grows by this)."""
    weights: Any = None
    """The newly published weights object (a Ray ObjectRef put by the learner actor), or None:
    ask :meth:`LearnerService.publish`."""
    replay_short: bool = False
    """Off-policy: the replay held fewer than ``min_size`` transitions when the slice ended (a
    Redis mirror still catching up with the workers' writes); the driver waits a little."""
    replay: Mapping[str, Any] = field(default_factory=dict)
    """Off-policy, from a learner actor: ``replay_size`` and ``replay/*`` as of a recent slice
    (empty otherwise: the driver asks :meth:`LearnerService.replay_stats`)."""
    rollouts: Sequence[RolloutInfo] = ()
    """On-policy: the fragments trained on, in worker order."""
    lost: Sequence[tuple[int, str]] = ()
    """On-policy: ``(worker index, cause)`` of workers whose fragment never arrived (died)."""


@runtime_checkable
class LearnerService(Protocol):
    """Where the updates run: in the driver's process (``--learner local``), or in a Ray actor
    with its own resources (``--learner actor``), which reads the rollouts or the replay itself.

    Usage, on-policy (the fragments go from the workers to the learner, not through the driver)::

        step = learner.collect_and_update(group, group.nominal, (T, weights, version, progress), progress)
        weights = learner.publish(group)

    off-policy (the driver forwards fragments only for an in-memory replay)::

        learner.add(fragment.batch)
        handle = learner.learn(inserted, progress, budget_s=0.5)
        step = learner.poll(handle, timeout=0)   # None while an actor is still learning
    """

    where: str
    """``local`` or ``actor``."""

    def publish(self, group: WorkerGroup) -> Any:
        """The current acting weights as an object to pass to worker calls (published once)."""

    def collect_and_update(
        self, group: WorkerGroup, nominal: int, sample_args: Sequence[Any], progress: float
    ) -> LearnerStep:
        """One on-policy iteration: ``nominal`` fragments of ``sample(*sample_args)`` from the live
        workers (however many live), then one update on them. Lost workers are parked (in
        ``lost`` when the learner, not the driver, saw them die)."""

    def replay_inserted(self) -> int:
        """Off-policy, Redis: the replay's insert cursor (rows ever inserted), caught up first."""

    def add(self, batch: Batch) -> None:
        """A fragment for an in-memory replay (a Redis replay is written by the workers)."""

    def learn(self, inserted: int, progress: float, budget_s: float) -> Any:
        """Start one off-policy slice: update while the rate limiter allows, for at most
        ``budget_s`` seconds, given ``inserted`` transitions so far. Returns a handle."""

    def poll(self, handle: Any, timeout: float, wake: Sequence[Any] = ()) -> LearnerStep | None:
        """The slice's outcome once done, else None after ``timeout`` seconds, or as soon as one
        of the worker calls ``wake`` finishes (so the driver waits on both at once)."""

    def replay_stats(self, sync: bool = False) -> dict[str, Any]:
        """``replay_size`` and the replay's ``replay/*`` statistics (an actor's: as of its last
        slice, unless ``sync``, which first catches the replay up with every write)."""

    def sync_to(self, learner: Learner) -> None:
        """Copy the learner's state into ``learner`` (the copy that checkpoints read); a no-op
        when the service runs that very learner."""

    def close(self) -> None:
        """Release the learner's process, replay reader and threads."""


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

    def learner_placement(self, requested: str) -> str:
        """``--learner`` (``local``, ``actor`` or ``auto``) resolved for this backend: ``local`` or
        ``actor``; a TandemError where an actor is impossible. Called after :meth:`start`."""

    def make_learner(
        self, host_kwargs: dict[str, Any], cpus: float, resources: Mapping[str, float]
    ) -> LearnerService:
        """A learner in a process of its own, built as ``LearnerHost.build(**host_kwargs)``, with
        ``cpus`` CPUs and ``resources`` (e.g. ``{"GPU": 1}``) reserved for it."""

    def shutdown(self) -> None:
        """Undo :meth:`start` where that is this backend's job."""
