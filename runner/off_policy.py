"""The asynchronous off-policy driver: workers write to the replay without waiting, the learner
samples from it as fast as the rate limiter allows, and new weights flow back every K updates."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from tandem.core.errors import TandemError
from tandem.core.protocols import ReplayBuffer, WorkerLost
from tandem.core.types import Fragment
from tandem.learners.config import PrioritizedReplayConfig
from tandem.runner.rundir import Counters
from tandem.runner.session import Session

log = logging.getLogger("tandem")


def open_replay(s: Session) -> tuple[ReplayBuffer, dict[str, Any] | None, Any]:
    """The learner's replay, the spec workers use to write to it (None: send batches to the
    driver), and the managed Redis servers if Tandem started them (an object with ``stop()``).

    No ``--replay``: ``replay_shards`` managed redis-servers on this process's node (the
    learner's), kept in the run directory with AOF on so that ``--resume`` restarts them on
    the same data. On one machine they listen on loopback; on a multi-node cluster on this
    node's Ray address, so every node reaches them. Each gets a fresh password either way; the
    URLs reach the workers inside the spec, which Ray hands to the worker actors' constructors
    (never argv, never a log line), and config.yaml records only ``replay_managed: true``.
    ``--replay URL[,URL...]``: one given Redis per shard."""
    from tandem.replay import make_replay
    from tandem.replay.shards import ManagedServers, parse_urls, start_managed_shards

    run, cfg = s.run_cfg, s.algo_cfg
    name = run.replay_name or Path(run.run_dir).name
    run.replay_name = name
    # Tabular configs have no priority fields: they sample uniformly, as the base's defaults do.
    prio = cfg if isinstance(cfg, PrioritizedReplayConfig) else PrioritizedReplayConfig()
    opts = dict(
        capacity=cfg.replay_capacity,
        prioritized=prio.prioritized,
        alpha=prio.priority_alpha,
        beta=prio.priority_beta,
        seed=run.seed,
    )
    if run.replay == "memory":
        if run.replay_shards != 1:
            raise TandemError(
                f"--replay-shards {run.replay_shards} shards a Redis replay, not --replay memory: "
                "drop one of the two"
            )
        if s.resumed_from is not None:
            log.warning(
                "--replay memory: the replay buffer is not kept across runs, resuming with an empty one"
            )
        return make_replay("memory", name=name, **opts), None, None
    k = run.replay_shards
    servers: list[Any] = []
    if run.replay is None:
        host = "127.0.0.1" if s.backend.single_host() else s.backend.node_address()
        servers = start_managed_shards(k, run.run_dir, host=host)
        urls = [srv.url for srv in servers]
    else:
        urls = parse_urls(run.replay)
        if k not in (1, len(urls)):
            raise TandemError(
                f"--replay-shards {k} needs {k} Redis URLs in --replay (comma-separated), got "
                f"{len(urls)}: list one URL per shard, or drop --replay for managed shards"
            )
    stop = ManagedServers(servers)
    try:
        if len(urls) == 1:
            buffer: ReplayBuffer = make_replay(urls[0], name=name, **opts)
            return buffer, {"url": urls[0], "name": name, "capacity": cfg.replay_capacity}, stop
        # Each shard is its own FIFO ring of an equal part of the capacity.
        buffer = make_replay(",".join(urls), name=name, **opts)
        cap = -(-cfg.replay_capacity // len(urls))
        return buffer, {"urls": urls, "name": name, "capacity": cap}, stop
    except BaseException:
        stop.stop()
        raise


DRAIN_TIMEOUT_S = 60.0
"""How long the end of a run waits for the fragments still in flight."""


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
    run, cfg, c, learner = s.run_cfg, s.algo_cfg, s.counters, s.learner
    from tandem.replay import RateLimiter

    # A buffer named after the run is this run's alone; one the user named may be shared with
    # other runs, whose inserts its cursor counts too: only reported fragments count there.
    own_replay = not run.replay_name
    buffer, writer_spec, server = open_replay(s)
    own_replay = own_replay and writer_spec is not None
    steps_per_call = cfg.fragment_length
    chunk = steps_per_call * run.envs_per_worker
    # The slack must cover one sample batch plus one worker fragment's worth of samples, or
    # neither side could ever move (the learner waits for data, the workers for the learner).
    slack = 1.5 * (cfg.batch_size + chunk * cfg.samples_per_insert)
    limiter = RateLimiter(
        min_size=cfg.min_size, samples_per_insert=cfg.samples_per_insert, error_buffer=slack
    )
    if own_replay:
        buffer.sync()
        count_unacknowledged(c, buffer.inserted)
    if c.env_steps:  # resumed: the ratio continues from the checkpointed counters
        limiter.observe_inserted(c.env_steps)
        limiter.record_sample(c.samples_trained)
    group = None
    inflight: dict[Any, int] = {}  # call handle -> worker index
    try:
        group = s.start_workers(replay=writer_spec)
        weights = group.publish(learner.get_weights())
        idle: set[int] = set(group.alive)
        # Rows that workers wrote to a remote replay and that came back acknowledged, and calls
        # lost in flight (each may have written one fragment that nobody acknowledged): the
        # node-loss accounting compares these with what the replay holds.
        acked = lost_inflight = 0
        last_report = time.monotonic()
        metrics: dict[str, float] = {}
        bs = cfg.batch_size

        def row():
            """A metrics row: the learner's last losses, the replay's reuse statistics and size."""
            extra = {
                "replay_size": len(buffer),
                "worker_restarts": group.restarts,
                "transitions_acked": acked,
                "calls_lost": lost_inflight,
            }
            return rep.row(len(group.alive), {**metrics, **buffer.stats(), **extra})

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
                buffer.add(frag.batch)
            limiter.record_insert(frag.env_steps)
            s.record_fragment(rep, i, frag.env_steps, frag.episode_returns, frag.policy_version)

        with s.reporter() as rep:
            while c.env_steps < run.total_steps and not s.should_stop():
                group.maintain()  # replace lost workers, grow or shrink toward the target
                # 1. keep every worker busy unless the learner has fallen behind (rate limiter)
                # (alive, not idle-set membership: a shrink may have retired an idle worker)
                for i in sorted(set(group.alive) - set(inflight.values())):
                    if not limiter.can_insert(chunk):
                        idle.add(i)
                        continue
                    idle.discard(i)
                    progress = c.env_steps / run.total_steps
                    inflight[group.submit(i, "collect", steps_per_call, weights, c.version, progress)] = i
                # 2. take in finished fragments; block only when the learner may not sample
                starved = not limiter.can_sample(bs) or len(buffer) < cfg.min_size
                if inflight:
                    ready = group.wait(list(inflight), timeout=1.0 if starved else 0)
                else:
                    # Nothing to wait on (the Redis mirror is still catching up with what the
                    # workers wrote, or every worker is parked): wait([]) would return at once.
                    ready = []
                    if starved:
                        time.sleep(0.01)
                for handle in ready:
                    take_in(handle)
                # 3. learn as far as the rate limiter allows, then go back to the workers
                t_learn = time.monotonic()
                while (
                    limiter.can_sample(bs)
                    and len(buffer) >= cfg.min_size
                    and time.monotonic() - t_learn < 0.5
                ):
                    learner.set_progress(c.env_steps / run.total_steps)
                    batch = buffer.sample(bs)
                    result = learner.update(batch)
                    metrics = dict(result.metrics)
                    if buffer.prioritized and result.priorities is not None:
                        buffer.update_priorities(batch.indices, result.priorities)
                    limiter.record_sample(result.samples_trained)
                    published_every = cfg.weights_publish_interval
                    before = c.grad_updates
                    c.record_update(result)
                    if c.grad_updates // published_every > before // published_every:
                        c.version += 1
                        weights = group.publish(learner.get_weights())
                # 4. report
                if time.monotonic() - last_report >= run.report_interval_s:
                    last_report = time.monotonic()
                    c.iterations += 1
                    s.log(row())
                    if c.iterations % run.checkpoint_every == 0:
                        s.checkpoint()
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
            buffer.sync()
            if own_replay:
                count_unacknowledged(c, buffer.inserted)
            s.log(row())
    finally:
        if group is not None:
            group.cancel(list(inflight))
            group.shutdown()
        buffer.close()
        if server is not None:
            server.stop()
