"""The asynchronous off-policy driver: workers write to the replay without waiting, the learner
samples from it as fast as the rate limiter allows, and new weights flow back every K updates."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError

from tandem.agents.offpolicy import PrioritizedReplayConfig
from tandem.core.errors import TandemError
from tandem.core.types import UpdateResult
from tandem.runner.session import Session

log = logging.getLogger("tandem")


def open_replay(s: Session) -> tuple[Any, dict[str, Any] | None, Any]:
    """The learner's replay, the spec workers use to write to it (None: send batches to the
    driver), and the managed Redis server if Tandem started one."""
    from tandem.replay import make_replay

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
        if s.resumed_from is not None:
            log.warning(
                "--replay memory: the replay buffer is not kept across runs, resuming with an empty one"
            )
        return make_replay("memory", name=name, **opts), None, None
    server = None
    url = run.replay
    if url is None:
        from tandem.replay.server import ManagedRedis

        if len([n for n in ray.nodes() if n.get("Alive")]) > 1:
            raise TandemError(
                "the managed local Redis listens on this machine's loopback, which workers on other "
                "nodes cannot reach: pass --replay redis://HOST:PORT (a Redis every node can reach)"
            )

        # Kept inside the run directory with AOF on, so that --resume finds the same buffer.
        server = ManagedRedis(dir=Path(run.run_dir) / "redis", aof=True)
        url = server.url
    buffer = make_replay(url, name=name, **opts)
    return buffer, {"url": url, "name": name, "capacity": cfg.replay_capacity}, server


def train_off_policy(s: Session) -> None:
    run, cfg, c, learner = s.run_cfg, s.algo_cfg, s.counters, s.learner
    from tandem.replay import RateLimiter

    buffer, writer_spec, server = open_replay(s)
    steps_per_call = getattr(cfg, "fragment_length", 16)
    chunk = steps_per_call * run.envs_per_worker
    # The slack must cover one sample batch plus one worker fragment's worth of samples, or
    # neither side could ever move (the learner waits for data, the workers for the learner).
    slack = 1.5 * (cfg.batch_size + chunk * cfg.samples_per_insert)
    limiter = RateLimiter(
        min_size=cfg.min_size, samples_per_insert=cfg.samples_per_insert, error_buffer=slack
    )
    if c.env_steps:  # resumed: the ratio continues from the checkpointed counters
        limiter.observe_inserted(c.env_steps)
        limiter.record_sample(c.samples_trained)
    group = s.start_workers(replay=writer_spec)
    weights = ray.put(learner.get_weights())
    inflight: dict[ray.ObjectRef, int] = {}
    idle: set[int] = set(group.alive)
    last_report = time.monotonic()
    metrics: dict[str, float] = {}
    bs = cfg.batch_size

    def row():
        """A metrics row: the learner's last losses, the replay's reuse statistics and size."""
        extra = {"replay_size": len(buffer), "worker_restarts": group.restarts}
        return rep.row(len(group.alive), {**metrics, **buffer.stats(), **extra})

    try:
        with s.reporter() as rep:
            while c.env_steps < run.total_steps and not s.should_stop():
                # 1. keep every worker busy unless the learner has fallen behind (rate limiter)
                for i in sorted(idle | (set(group.alive) - set(inflight.values()) - idle)):
                    if not limiter.can_insert(chunk):
                        idle.add(i)
                        continue
                    idle.discard(i)
                    ref = group.call(
                        i, "collect", steps_per_call, weights, c.version, c.env_steps / run.total_steps
                    )
                    inflight[ref] = i
                # 2. take in finished fragments; block only when the learner may not sample
                starved = not limiter.can_sample(bs) or len(buffer) < cfg.min_size
                if inflight:
                    ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0 if starved else 0)
                else:
                    # Nothing to wait on (the Redis mirror is still catching up with what the
                    # workers wrote, or every worker is parked): ray.wait([]) would return at once.
                    ready = []
                    if starved:
                        time.sleep(0.01)
                for ref in ready:
                    i = inflight.pop(ref)
                    idle.add(i)
                    try:
                        res = ray.get(ref)
                    except RayActorError as e:
                        group.park(i, e)
                        idle.discard(i)
                        continue
                    if res["batch"] is not None:
                        buffer.add(res["batch"])
                    limiter.record_insert(res["env_steps"])
                    rep.collected(
                        i, res["env_steps"], res["episode_returns"], c.version - res["policy_version"]
                    )
                # 3. learn as far as the rate limiter allows, then go back to the workers
                t_learn = time.monotonic()
                while (
                    limiter.can_sample(bs)
                    and len(buffer) >= cfg.min_size
                    and time.monotonic() - t_learn < 0.5
                ):
                    if hasattr(learner, "set_progress"):
                        learner.set_progress(c.env_steps / run.total_steps)
                    batch = buffer.sample(bs)
                    metrics = learner.update(batch)
                    if isinstance(metrics, UpdateResult):  # shim until every learner returns UpdateResult
                        metrics = dict(metrics.metrics)
                    if getattr(buffer, "prioritized", False) and learner.last_priorities is not None:
                        buffer.update_priorities(batch.indices, learner.last_priorities)
                    limiter.record_sample(bs)
                    c.grad_updates += 1
                    c.samples_trained += bs
                    if c.grad_updates % cfg.weights_publish_interval == 0:
                        c.version += 1
                        weights = ray.put(learner.get_weights())
                # 4. report
                if time.monotonic() - last_report >= run.report_interval_s:
                    last_report = time.monotonic()
                    c.iterations += 1
                    s.log(row())
                    if c.iterations % run.checkpoint_every == 0:
                        s.checkpoint()
            c.iterations += 1
            # The learner's Redis mirror trails the workers' writes by up to one poll; the
            # final row reports the buffer as it ends, not as last mirrored.
            sync = getattr(buffer, "sync", None)
            if sync is not None:
                sync()
            s.log(row())
    finally:
        for ref in inflight:
            ray.cancel(ref, force=False)
        group.shutdown()
        close = getattr(buffer, "close", None)
        if close:
            close()
        if server is not None:
            server.stop()
