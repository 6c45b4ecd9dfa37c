"""The learner as a Ray actor (``--learner actor``): ``runner.learner_host.LearnerHost`` in a
process of its own, with its own CPUs and GPUs, on whichever node has them.

On-policy, the driver hands the actor the worker calls' object refs (nested in a list, so that
Ray does not resolve them in the driver); the actor fetches the fragments itself. Off-policy,
the actor opens its own replay reader and runs slices of the update loop. Either way, new
weights leave the actor as one ``ray.put`` of CPU numpy arrays, and the driver passes that
ref to the workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from tandem.cluster.group import worker_error
from tandem.core.errors import TandemError
from tandem.core.protocols import Learner, LearnerStep, WorkerGroup, WorkerLost
from tandem.core.types import Batch
from tandem.runner.learner_host import LearnerHost

log = logging.getLogger("tandem")

MIRROR_WAIT_S = 0.05
"""How long a slice waits for the Redis mirror when the replay is still below ``min_size``."""
STATS_EVERY_S = 0.5
"""Slices carry the replay statistics at most this often (they cost about a millisecond)."""


class LearnerActor:
    """What runs in the learner's process: a ``LearnerHost`` that takes and gives object refs."""

    def __init__(self, **host_kwargs: Any):
        self.host = LearnerHost.build(**host_kwargs)
        self._stats_at = float("-inf")
        self._held: list[Any] = []  # this iteration's fragments, while lost ones are re-collected

    def ready(self) -> bool:
        return True

    def publish(self) -> ray.ObjectRef:
        """The current weights, put once into the object store by this process (its owner)."""
        return ray.put(self.host.get_weights())

    def _published(self, step: LearnerStep) -> LearnerStep:
        return replace(step, weights=self.publish()) if step.version_bumps else step

    def update_from_refs(self, calls: list[list[tuple[int, ray.ObjectRef]]], progress: float) -> LearnerStep:
        """One on-policy update from the fragments behind ``calls[0]`` (``(worker, ref)`` pairs).

        A worker that died before its fragment was made is reported in ``lost`` and no update
        runs: the fragments that did arrive are held, and the driver sends as many calls again
        to the workers left, so that every batch keeps the run's nominal size. Any other error
        (a bug in the worker) reaches the driver as it is.
        """
        lost = []
        for i, ref in calls[0]:
            try:
                self._held.append(ray.get(ref))
            except RayActorError as e:
                lost.append((i, type(e).__name__))
        if lost:
            return LearnerStep(lost=lost)
        rollouts, self._held = self._held, []
        return self._published(self.host.update_rollouts(rollouts, progress))

    def learn(self, inserted: int, batches: list[Batch], progress: float, budget_s: float) -> LearnerStep:
        """One off-policy slice (after adding ``batches``, for an in-memory replay)."""
        self.host.add(batches)
        step = self._published(self.host.learn(inserted, progress, budget_s, wait_s=MIRROR_WAIT_S))
        if time.monotonic() - self._stats_at >= STATS_EVERY_S:
            self._stats_at = time.monotonic()
            step = replace(step, replay=self.host.replay_stats())
        return step

    def replay_stats(self, batches: list[Batch], sync: bool = False) -> dict[str, Any]:
        """The replay's statistics after adding ``batches`` (those the driver still held)."""
        self.host.add(batches)
        return self.host.replay_stats(sync)

    def replay_inserted(self) -> int:
        return self.host.replay_inserted()

    def state_dict(self) -> dict[str, Any]:
        """The learner's state with every tensor on the CPU: the driver's copy (which checkpoints
        read) may sit on a node without the learner's GPU."""
        return _to_cpu(self.host.state_dict())

    def close(self) -> None:
        self.host.close()


def _to_cpu(value: Any) -> Any:
    """``value`` with every torch tensor inside (dicts, lists, tuples) moved to the CPU."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _get(ref: Any) -> Any:
    """``ray.get`` of a learner actor call; the actor's death becomes a one-line error, and an
    error raised in it (or in a worker whose fragment it fetched) reaches the driver as raised."""
    try:
        return ray.get(ref)
    except RayTaskError as e:
        raise worker_error(e) from None
    except RayActorError as e:
        raise TandemError(
            f"the learner actor died ({str(e).splitlines()[0][:160]}): continue the run from its last "
            "checkpoint with `tandem train --resume RUN_DIR`"
        ) from None


class RayLearner:
    """The driver's handle on a :class:`LearnerActor` (``core.protocols.LearnerService``)."""

    where = "actor"

    def __init__(self, actor: Any):
        self.actor = actor
        self._weights: ray.ObjectRef | None = None
        self._batches: list[Batch] = []
        self._stats: dict[str, Any] = {}

    def publish(self, group: WorkerGroup) -> ray.ObjectRef:
        """The ref of the actor's latest weights (no copy passes through the driver)."""
        if self._weights is None:
            self._weights = _get(self.actor.publish.remote())
        return self._weights

    def _take(self, step: LearnerStep) -> LearnerStep:
        if step.weights is not None:
            self._weights = step.weights
        if step.replay:
            self._stats = dict(step.replay)
        return step

    def collect_and_update(
        self, group: WorkerGroup, nominal: int, sample_args: Sequence[Any], progress: float
    ) -> LearnerStep:
        """``nominal`` sample calls spread round-robin over the live workers (a worker may get
        two; Ray queues them), their refs handed to the actor, which fetches the fragments. The
        workers it reports lost are parked here, and their fragments asked again of the others
        (same weights), until the actor holds ``nominal`` and updates."""
        owed = nominal
        while True:
            group.maintain()
            while not group.alive:
                time.sleep(0.2)  # every worker parked: wait for a restart or new capacity
                group.maintain()
            alive = sorted(group.alive)
            calls = [(alive[k % len(alive)], None) for k in range(owed)]
            calls = [(i, group.submit(i, "sample", *sample_args)) for i, _ in calls]
            try:
                step = self._take(_get(self.actor.update_from_refs.remote([calls], progress)))
            finally:
                # The actor fetched them; the group must not keep them (and their fragments) alive.
                group.forget([ref for _, ref in calls])
            for i, cause in step.lost:
                group.park(i, WorkerLost(i, cause))  # a second call of the same worker is a no-op
            if not step.lost:
                return step
            owed = len(step.lost)  # the actor holds the rest; the workers left owe these

    def replay_inserted(self) -> int:
        return int(_get(self.actor.replay_inserted.remote()))

    def add(self, batch: Batch) -> None:
        """Held here until the next slice carries it to the actor's in-memory replay."""
        self._batches.append(batch)

    def learn(self, inserted: int, progress: float, budget_s: float) -> ray.ObjectRef:
        batches, self._batches = self._batches, []
        return self.actor.learn.remote(inserted, batches, progress, budget_s)

    def poll(self, handle: ray.ObjectRef, timeout: float, wake: Sequence[Any] = ()) -> LearnerStep | None:
        ready, _ = ray.wait([handle, *wake], num_returns=1, timeout=timeout)
        if not ready:
            return None
        done, _ = ray.wait([handle], timeout=0)
        return self._take(_get(handle)) if done else None

    def replay_stats(self, sync: bool = False) -> dict[str, Any]:
        """As of the last slice that carried them (asking the actor would wait for the slice in
        progress); ``sync`` or none yet: from the actor, after the batches held here."""
        if sync or not self._stats:
            batches, self._batches = self._batches, []
            self._stats = _get(self.actor.replay_stats.remote(batches, sync))
        return self._stats

    def sync_to(self, learner: Learner) -> None:
        learner.load_state_dict(_get(self.actor.state_dict.remote()))

    def close(self) -> None:
        try:
            ray.get(self.actor.close.remote(), timeout=30)
        except (RayActorError, RayTaskError, GetTimeoutError) as e:
            log.warning("the learner actor did not close cleanly (%s)", type(e).__name__)
        ray.kill(self.actor, no_restart=True)


def ray_options(cpus: float, resources: Mapping[str, Any]) -> dict[str, Any]:
    """``ray.remote`` options for the learner actor from ``learner_cpus`` and
    ``learner_resources`` (Ray takes GPUs as ``num_gpus``, not as a custom resource)."""
    bad = {
        k: v for k, v in resources.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0
    }
    if bad or cpus < 0:
        raise TandemError(
            f"learner resources must be non-negative numbers, got {bad or {'learner_cpus': cpus}}: "
            """e.g. --learner-resources '{"GPU": 1}' --set learner_cpus=4"""
        )
    rest = {k: float(v) for k, v in resources.items() if k not in ("CPU", "GPU")}
    opts: dict[str, Any] = {"num_cpus": float(resources.get("CPU", cpus)), "max_restarts": 0}
    if resources.get("GPU"):
        opts["num_gpus"] = float(resources["GPU"])
    if rest:
        opts["resources"] = rest
    return opts


def start_learner_actor(
    host_kwargs: dict[str, Any], cpus: float, resources: Mapping[str, Any], timeout_s: float = 600
) -> RayLearner:
    """Place a :class:`LearnerActor` and wait until its learner is built.

    A request that no node can meet waits (an autoscaler may add the node), with a warning
    after 10 s and a one-line error after ``timeout_s``.
    """
    opts = ray_options(cpus, resources)
    actor = ray.remote(**opts)(LearnerActor).remote(**host_kwargs)
    ready = actor.ready.remote()
    want = {"CPU": opts["num_cpus"], "GPU": opts.get("num_gpus", 0), **opts.get("resources", {})}
    want = {k: v for k, v in want.items() if v}
    try:
        try:
            ray.get(ready, timeout=min(10, timeout_s))
            return RayLearner(actor)
        except GetTimeoutError:
            log.warning(
                "the learner actor is not up after 10 s: waiting for a node with %s free (the cluster "
                "has %s free now), or for its process to start",
                want,
                {k: ray.available_resources().get(k, 0.0) for k in want},
            )
        ray.get(ready, timeout=max(timeout_s - 10, 1))
        return RayLearner(actor)
    except GetTimeoutError:
        ray.kill(actor, no_restart=True)
        raise TandemError(
            f"no node of the Ray cluster could give the learner actor {want} within {timeout_s:.0f} s: "
            "add such a node, or lower --learner-resources / learner_cpus, or use --learner local"
        ) from None
    except (RayTaskError, RayActorError) as e:
        ray.kill(actor, no_restart=True)
        why = e.cause if isinstance(e, RayTaskError) else str(e).splitlines()[0]
        raise TandemError(f"the learner actor failed to start: {why}") from None
