"""The synchronous on-policy driver: collect -> update -> broadcast -> discard."""

from __future__ import annotations

import time
from typing import Any

from tandem.core.protocols import WorkerGroup, WorkerLost
from tandem.core.types import Rollout, concat_rollouts
from tandem.runner.assembly import BatchAssembler
from tandem.runner.session import Session


def collect_batch(group: WorkerGroup, fragments: int, *args: Any) -> list[Rollout]:
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


def train_on_policy(s: Session) -> None:
    """One loop, in the algorithm's order. Each iteration's batch is used by exactly one
    ``learner.update`` (which may reuse it for several epochs) and then dropped."""
    run, cfg = s.run_cfg, s.algo_cfg
    learner = s.learner
    group = s.start_workers()
    c = s.counters
    try:
        weights = group.publish(learner.get_weights())  # one object, shared by all workers
        with s.reporter() as rep:
            while c.env_steps < run.total_steps and not s.should_stop():
                progress = c.env_steps / run.total_steps
                # 1. collect a fresh batch of the run's nominal size from the live workers
                rollouts = collect_batch(
                    group, group.nominal, cfg.fragment_length, weights, c.version, progress
                )
                for r in rollouts:
                    s.record_fragment(rep, r.worker_index, r.num_steps, r.episode_returns, r.policy_version)
                batch = concat_rollouts(rollouts)
                # 2. update
                learner.set_progress(progress)
                result = learner.update(batch)
                c.record_update(result)
                # 3. broadcast the new weights
                c.version += 1
                weights = group.publish(learner.get_weights())
                # 4. the batch is thrown away when it goes out of scope
                del batch, rollouts
                c.iterations += 1
                s.log(rep.row(len(group.alive), {**result.metrics, "worker_restarts": group.restarts}))
                if c.iterations % run.checkpoint_every == 0:
                    s.checkpoint()
    finally:
        group.shutdown()
