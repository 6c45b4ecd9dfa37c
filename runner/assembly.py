"""On-policy batch assembly: a batch is always ``nominal`` fragments, however many workers live.

PPO's and PG's hyperparameters (minibatch count, epochs, learning rate) are tuned for a batch of
``workers * envs_per_worker * fragment_length`` samples. When workers are lost or added, the
batch keeps that size: the live workers are handed fragments until ``nominal`` have come back, so
with fewer workers some collect two fragments in a row (each one a complete T-step trajectory
bootstrapped at its end, so two from one worker are as valid as one each from two workers).
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Iterable
from typing import Any

from tandem.core.protocols import WorkerGroup, WorkerLost


class BatchAssembler:
    """Tracks one on-policy batch: which worker to hand a fragment to, and what came back.

    Pure bookkeeping (no I/O): the driver submits the calls, waits, and reports each outcome.
    Invariant: fragments in hand + fragments in flight <= ``fragments``, so no worker samples a
    fragment the batch would throw away.
    """

    def __init__(self, fragments: int):
        if fragments < 1:
            raise ValueError("a batch needs at least one fragment")
        self.fragments = fragments
        self.rollouts: list[Any] = []
        self.inflight: dict[Hashable, int] = {}  # call handle -> worker index

    @property
    def done(self) -> bool:
        return len(self.rollouts) >= self.fragments

    def to_submit(self, alive: Iterable[int]) -> list[int]:
        """Idle live workers to give one fragment each, up to the fragments still missing:
        ``min(idle, fragments - in hand - in flight)`` of them, lowest index first."""
        busy = set(self.inflight.values())
        room = self.fragments - len(self.rollouts) - len(self.inflight)
        idle = [i for i in sorted(alive) if i not in busy]
        return idle[: max(room, 0)]

    def submitted(self, handle: Hashable, worker: int) -> None:
        self.inflight[handle] = worker

    def finished(self, handle: Hashable, rollout: Any) -> None:
        """A fragment came back; extra ones (never submitted by this assembler) are an error."""
        self.inflight.pop(handle)
        self.rollouts.append(rollout)

    def failed(self, handle: Hashable) -> int:
        """The call's worker was lost: its fragment is owed again. Returns the worker's index."""
        return self.inflight.pop(handle)

    def batch(self) -> list[Any]:
        """The fragments, ordered by worker index (stable), so a fixed worker set repeats exactly."""
        return sorted(self.rollouts, key=lambda r: getattr(r, "worker_index", 0))


def collect_batch(group: WorkerGroup, fragments: int, *args: Any) -> list[Any]:
    """``fragments`` rollouts of ``sample(*args)`` from whichever workers are alive: a lost
    worker's fragment goes to another, and with every worker down this waits (1 s at a time,
    letting the group replace them) instead of blocking on a dead one."""
    asm = BatchAssembler(fragments)
    while not asm.done:
        group.maintain()
        for i in asm.to_submit(group.alive):
            asm.submitted(group.submit(i, "sample", *args), i)
        if not asm.inflight:
            time.sleep(0.2)  # every worker parked: wait for a restart or new capacity
            continue
        for handle in group.wait(list(asm.inflight), timeout=1.0):
            try:
                rollout = group.result(handle)
            except WorkerLost as e:
                group.park(asm.failed(handle), e)
                continue
            asm.finished(handle, rollout)
    return asm.batch()
