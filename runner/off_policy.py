"""The asynchronous off-policy driver: workers write to the replay without waiting, the learner
samples from it as fast as the rate limiter allows, and new weights flow back every K updates.

The learner (``runner.learner_host``) runs in this process or in a learner actor that reads the
replay itself; this loop only dispatches worker calls, counts their fragments, starts learning
slices and logs. With a local learner each slice runs as soon as it is started, so the loop is
the same serial loop as before the split; with an actor the slice runs while the loop goes on.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tandem.core.protocols import LearnerStep, WorkerLost
from tandem.core.types import Fragment
from tandem.runner.learner_host import SLICE_S, make_limiter, open_learner, replay_plan, sync_quietly
from tandem.runner.rundir import Counters
from tandem.runner.session import Session

log = logging.getLogger("tandem")


DRAIN_TIMEOUT_S = 60.0
"""How long the end of a run waits for the fragments still in flight."""


def may_collect(limiter: Any, chunk: int, batch_size: int, busy: int, replay_short: bool) -> bool:
    """Whether an idle worker may collect another ``chunk`` transitions now; ``busy`` counts the
    collect calls and the learning slice in flight.

    The rate limiter says so, or nothing else could move the run: nothing is in flight, and the
    learner cannot sample (the limiter's slack is used up between one insert and one batch,
    ``chunk · samples_per_insert > 2 · error_buffer``, or the replay holds fewer than min_size
    rows, as when rwr's workers hold unfinished episodes back). Holding every worker back then
    would deadlock; one call at a time goes on, so a replay that merely lags (a Redis mirror)
    cannot let the workers run far ahead of the ratio.
    """
    if limiter.can_insert(chunk):
        return True
    return busy == 0 and (replay_short or not limiter.can_sample(batch_size))


def count_unacknowledged(c: Counters, inserted: int) -> int:
    """Count the transitions that the shared replay holds but no fragment result reported.

    Invariant: ``c.env_steps == inserted - c.replay_base`` whenever no worker is writing. Each
    worker writes its fragment to Redis itself, then reports it to the driver, which counts it;
    a report can be lost after its write was acknowledged: the driver was killed (SIGKILL, OOM)
    or interrupted, or the worker died between writing and replying. Those transitions are real
    env steps and sit in the replay, so they are counted here, from Redis' insert cursor (rows
    ever inserted; idempotent per writer and sequence number, so a retried write is one row):

        uncounted = inserted - replay_base - env_steps

    It runs where no worker of this run can write: when the run attaches to the replay (a resume
    after a crash; the old workers died with their driver) and at the end, after the fragments
    in flight were waited for; and only on a buffer that is this run's alone (the default name,
    the run directory's): a buffer shared by name with other runs holds their inserts too.
    The unreported fragments' episode returns are unknown and are not counted. A first call
    (``replay_base`` -1) records the base: the cursor before this run's first insert.
    Returns the transitions added to ``env_steps`` (negative: the replay holds fewer than
    counted, which only a replay restored from an older snapshot explains; nothing is changed).
    """
    if c.replay_base < 0:
        c.replay_base = inserted - c.env_steps if c.env_steps else inserted
        return 0
    uncounted = inserted - c.replay_base - c.env_steps
    if uncounted > 0:
        c.env_steps += uncounted
        log.warning(
            "counted %d transitions that reached the replay without a report (a killed driver "
            "or worker): env_steps is now %d",
            uncounted,
            c.env_steps,
        )
    elif uncounted < 0:
        log.warning(
            "the replay holds %d fewer transitions than this run counted: was it restored from an "
            "older snapshot?",
            -uncounted,
        )
    return uncounted


def train_off_policy(s: Session) -> None:
    run, cfg, c = s.run_cfg, s.algo_cfg, s.counters
    # A buffer named after the run is this run's alone; one the user named may be shared with
    # other runs, whose inserts its cursor counts too: only reported fragments count there.
    own_replay = not run.replay_name
    plan, writer_spec, server = replay_plan(s)
    own_replay = own_replay and writer_spec is not None
    steps_per_call = cfg.fragment_length
    chunk = steps_per_call * run.envs_per_worker
    # The driver's copy of the learner's rate limiter: the same inserts and samples are counted
    # on both sides, so this one decides when workers may run ahead and when a slice may start.
    limiter = make_limiter(plan)
    bs = cfg.batch_size
    learner = group = None
    inflight: dict[Any, int] = {}  # call handle -> worker index
    try:
        learner = open_learner(s, plan)
        if own_replay:
            count_unacknowledged(c, learner.replay_inserted())
            limiter.observe_inserted(c.env_steps)  # rows counted just now are inserts too
        group = s.start_workers(replay=writer_spec)
        weights = learner.publish(group)
        idle: set[int] = set(group.alive)
        # Rows that workers wrote to a remote replay and that came back acknowledged, and calls
        # lost in flight (each may have written one fragment that nobody acknowledged): the
        # node-loss accounting compares these with what the replay holds.
        acked = lost_inflight = 0
        last_report = time.monotonic()
        metrics: dict[str, float] = {}
        pending: Any = None  # the learning slice in progress
        replay_short = True  # the last slice found fewer than min_size transitions in the replay

        def take(step: LearnerStep) -> None:
            """Count a finished slice and pick up the weights it published."""
            nonlocal metrics, weights, replay_short
            limiter.record_sample(step.samples_trained)
            c.record_update(step)
            if step.updates:
                metrics = dict(step.metrics)
            if step.version_bumps:
                c.version += step.version_bumps
                weights = learner.publish(group)
            replay_short = step.replay_short

        def drain() -> None:
            """Wait for the slice in progress, so that counters and learner state agree."""
            nonlocal pending
            while pending is not None:
                step = learner.poll(pending, timeout=1.0)
                if step is not None:
                    pending = None
                    take(step)

        def row(stats: dict[str, Any]):
            """A metrics row: the learner's last losses, the replay's reuse statistics and size."""
            extra = {
                "worker_restarts": group.restarts,
                "transitions_acked": acked,
                "calls_lost": lost_inflight,
            }
            return rep.row(len(group.alive), {**metrics, **stats, **extra})

        def take_in(handle: Any) -> None:
            """A finished collect call: its fragment into the counters (and the in-memory replay)."""
            nonlocal acked, lost_inflight
            i = inflight.pop(handle)
            idle.add(i)
            try:
                frag: Fragment = group.result(handle)
            except WorkerLost as e:
                group.park(i, e)
                idle.discard(i)
                lost_inflight += 1
                return
            acked += frag.written
            if frag.batch is not None:
                learner.add(frag.batch)
            limiter.record_insert(frag.env_steps)
            s.record_fragment(rep, i, frag.env_steps, frag.episode_returns, frag.policy_version)

        with s.reporter() as rep:
            while c.env_steps < run.total_steps and not s.should_stop():
                group.maintain()  # replace lost workers, grow or shrink toward the target
                # 1. keep every worker busy unless the learner has fallen behind (rate limiter)
                # (alive, not idle-set membership: a shrink may have retired an idle worker)
                for i in sorted(set(group.alive) - set(inflight.values())):
                    busy = len(inflight) + (pending is not None)  # grows as calls go out
                    if not may_collect(limiter, chunk, bs, busy, replay_short):
                        idle.add(i)
                        continue
                    idle.discard(i)
                    progress = c.env_steps / run.total_steps
                    inflight[group.submit(i, "collect", steps_per_call, weights, c.version, progress)] = i
                # 2. take in finished fragments; block only when the learner may not sample
                starved = not limiter.can_sample(bs) or replay_short
                if pending is not None:
                    # A learner actor is busy: wait for it or for a worker, whichever is first.
                    step = learner.poll(pending, timeout=1.0, wake=list(inflight))
                    if step is not None:
                        pending = None
                        take(step)
                    ready = group.wait(list(inflight), timeout=0) if inflight else []
                elif inflight:
                    ready = group.wait(list(inflight), timeout=1.0 if starved else 0)
                else:
                    # Nothing to wait on (the Redis mirror is still catching up with what the
                    # workers wrote, or every worker is parked): wait([]) would return at once.
                    ready = []
                    if starved:
                        time.sleep(0.01)
                for handle in ready:
                    take_in(handle)
                # 3. learn as far as the rate limiter allows (a local learner: now, for up to
                #    SLICE_S; an actor: in its own process, while this loop goes back to the workers)
                if pending is None and limiter.can_sample(bs):
                    pending = learner.learn(limiter.inserted, c.env_steps / run.total_steps, SLICE_S)
                if pending is not None:
                    step = learner.poll(pending, timeout=0)
                    if step is not None:
                        pending = None
                        take(step)
                # 4. report
                if time.monotonic() - last_report >= run.report_interval_s:
                    last_report = time.monotonic()
                    c.iterations += 1
                    checkpoint = c.iterations % run.checkpoint_every == 0
                    if checkpoint:
                        drain()  # the checkpoint's counters and learner state must agree
                    s.log(row(learner.replay_stats()))
                    if checkpoint:
                        learner.sync_to(s.learner)
                        s.checkpoint()
            drain()
            # Fragments still in flight write to the replay whether or not anyone waits for
            # them: take them in, so that each one is counted (issue 13: 64 uncounted per run).
            # The in-process group runs its pending calls now: at most one fragment per worker
            # past the budget, as on Ray.
            deadline = time.monotonic() + DRAIN_TIMEOUT_S
            while inflight and time.monotonic() < deadline:
                for handle in group.wait(list(inflight), timeout=1.0):
                    take_in(handle)
            lost_inflight += len(inflight)
            c.iterations += 1
            # The learner's Redis mirror trails the workers' writes by up to one poll; the
            # final row reports the buffer as it ends, not as last mirrored.
            stats = learner.replay_stats(sync=True)
            if own_replay:
                count_unacknowledged(c, learner.replay_inserted())
            s.log(row(stats))
            # The run's final checkpoint, written after this returns, reads s.learner.
            learner.sync_to(s.learner)
    except KeyboardInterrupt:
        if learner is not None:
            sync_quietly(learner, s.learner)
        raise
    finally:
        if group is not None:
            group.cancel(list(inflight))
            group.shutdown()
        if learner is not None:
            learner.close()
        if server is not None:
            server.stop()
