"""The learner's side of a run, without Ray: a ``LearnerHost`` owns the learner and, off-policy,
the replay reader, the rate limiter and the update loop. It runs in the driver's process
(``--learner local``: :class:`LocalLearner`) or inside a Ray actor (``--learner actor``:
``cluster.learner_actor``), which wraps the same class, so both modes run one update loop.

Off-policy, the driver keeps the insert count (the workers report their fragments to it) and
hands it to each learning slice; the host's own rate limiter then lets the learner sample up to
``samples_per_insert`` per inserted transition, as the driver's did before the split.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from tandem.core.errors import TandemError
from tandem.core.protocols import Learner, LearnerService, LearnerStep, RolloutInfo, WorkerGroup
from tandem.core.types import Batch, Rollout, concat_rollouts
from tandem.learners.config import PrioritizedReplayConfig
from tandem.learners.registry import get_algo
from tandem.runner.assembly import collect_batch

log = logging.getLogger("tandem")

SLICE_S = 0.5
"""Longest off-policy learning slice (s): the driver reports and checkpoints between slices."""


@dataclass(frozen=True)
class ReplayPlan:
    """How an off-policy learner opens its replay reader and paces its sampling; plain data, so
    that it travels to a learner actor."""

    url: str
    """``memory`` or the Redis URL that the workers write to."""
    name: str
    """Buffer name (the run directory's by default)."""
    capacity: int
    """Replay size in transitions."""
    prioritized: bool
    """Proportional prioritized replay."""
    alpha: float
    """Priority exponent."""
    beta: float
    """Importance-sampling exponent."""
    seed: int
    """Sampling RNG seed."""
    batch_size: int
    """Transitions per update."""
    min_size: int
    """Replay size before the first update."""
    samples_per_insert: float
    """Target sampled / inserted transitions."""
    error_buffer: float
    """Rate-limiter slack, in sampled transitions."""
    publish_every: int
    """Updates between weight versions."""
    inserted: int = 0
    """Transitions inserted before this process (a resumed run's env steps)."""
    sampled: int = 0
    """Transitions sampled before this process (a resumed run's samples_trained)."""
    grad_updates: int = 0
    """Gradient steps before this process (to keep the publish schedule across a resume)."""


def replay_plan(s: Any) -> tuple[ReplayPlan, dict[str, Any] | None, Any]:
    """The learner's replay plan, the spec that workers write with (None: they return their
    batches to the driver, for an in-memory replay), and the managed Redis servers if Tandem
    started them (an object with ``stop()``; they live with the driver, beside the run directory).

    No ``--replay``: ``replay_shards`` managed redis-servers on this process's node (the
    learner's), kept in the run directory with AOF on so that ``--resume`` restarts them on
    the same data. On one machine they listen on loopback; on a multi-node cluster on this
    node's Ray address, so every node reaches them. Each gets a fresh password either way; the
    URLs reach the workers inside the spec, which Ray hands to the worker actors' constructors
    (never argv, never a log line), and config.yaml records only ``replay_managed: true``.
    ``--replay URL[,URL...]``: one given Redis per shard."""
    from tandem.replay.shards import ManagedServers, parse_urls, start_managed_shards

    run, cfg, c = s.run_cfg, s.algo_cfg, s.counters
    name = run.replay_name or Path(run.run_dir).name
    run.replay_name = name
    # Tabular configs have no priority fields: they sample uniformly, as the base's defaults do.
    prio = cfg if isinstance(cfg, PrioritizedReplayConfig) else PrioritizedReplayConfig()
    chunk = cfg.fragment_length * run.envs_per_worker
    plan = ReplayPlan(
        url="memory",
        name=name,
        capacity=cfg.replay_capacity,
        prioritized=prio.prioritized,
        alpha=prio.priority_alpha,
        beta=prio.priority_beta,
        seed=run.seed,
        batch_size=cfg.batch_size,
        min_size=cfg.min_size,
        samples_per_insert=cfg.samples_per_insert,
        # The slack must cover one sample batch plus one worker fragment's worth of samples, or
        # neither side could ever move (the learner waits for data, the workers for the learner).
        error_buffer=1.5 * (cfg.batch_size + chunk * cfg.samples_per_insert),
        publish_every=cfg.weights_publish_interval,
        inserted=c.env_steps,
        sampled=c.samples_trained,
        grad_updates=c.grad_updates,
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
            # An empty buffer warms up again: a limiter that counted the lost inserts would let
            # the workers run ahead until it throttled them while the learner still waited for
            # min_size transitions, and neither side would move again.
            plan = replace(plan, inserted=0, sampled=0)
        return plan, None, None
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
    plan = replace(plan, url=",".join(urls))
    if len(urls) == 1:
        spec: dict[str, Any] = {"url": urls[0], "name": name, "capacity": cfg.replay_capacity}
    else:
        # Each shard is its own FIFO ring of an equal part of the capacity.
        spec = {"urls": urls, "name": name, "capacity": -(-cfg.replay_capacity // len(urls))}
    return plan, spec, ManagedServers(servers)


def versions_crossed(before: int, after: int, every: int) -> int:
    """Publish boundaries passed when the gradient-step count goes from ``before`` to ``after``:
    ``floor(after / K) - floor(before / K)`` for a publish every ``K`` steps (the driver counts at
    most one new weights version per update, as before the split)."""
    return after // every - before // every


def make_limiter(plan: ReplayPlan) -> Any:
    """A rate limiter for ``plan``, continuing a resumed run's counts."""
    from tandem.replay import RateLimiter

    limiter = RateLimiter(
        min_size=plan.min_size, samples_per_insert=plan.samples_per_insert, error_buffer=plan.error_buffer
    )
    if plan.inserted:  # resumed: the ratio continues from the checkpointed counters
        limiter.observe_inserted(plan.inserted)
        limiter.record_sample(plan.sampled)
    return limiter


class LearnerHost:
    """One learner and, off-policy, its replay reader, rate limiter and update loop.

    Args:
        learner: the algorithm's learner.
        replay: the replay plan for an off-policy learner; None on-policy.
    """

    def __init__(self, learner: Learner, replay: ReplayPlan | None = None):
        self.learner = learner
        self.plan = replay
        self.buffer = None
        self.limiter = None
        self._grad_updates = 0
        if replay is not None:
            from tandem.replay import make_replay

            self.buffer = make_replay(
                replay.url,
                name=replay.name,
                capacity=replay.capacity,
                prioritized=replay.prioritized,
                alpha=replay.alpha,
                beta=replay.beta,
                seed=replay.seed,
            )
            self.limiter = make_limiter(replay)
            self._grad_updates = replay.grad_updates

    @classmethod
    def build(
        cls,
        algo: str,
        obs_space: Any,
        act_space: Any,
        algo_cfg: Any,
        state: Mapping[str, Any] | None = None,
        replay: ReplayPlan | None = None,
        threads: int = 1,
    ) -> LearnerHost:
        """A host with a new learner (in a learner actor's process), loaded from ``state`` (the
        driver's learner, so both start from the same weights, or a checkpoint)."""
        torch.set_num_threads(max(1, int(threads)))
        learner = get_algo(algo).make_learner(obs_space, act_space, algo_cfg)
        if state is not None:
            learner.load_state_dict(state)
        return cls(learner, replay)

    # ------------------------------------------------------------------ on-policy

    def update_rollouts(self, rollouts: Sequence[Rollout], progress: float) -> LearnerStep:
        """One update from the fragments of one iteration, joined along the env axis."""
        infos = [
            RolloutInfo(r.worker_index, r.num_steps, r.episode_returns, r.policy_version) for r in rollouts
        ]
        if not rollouts:
            return LearnerStep()
        batch = concat_rollouts(list(rollouts))
        self.learner.set_progress(progress)
        result = self.learner.update(batch)
        return LearnerStep(
            metrics=dict(result.metrics),
            updates=1,
            grad_steps=result.grad_steps,
            samples_trained=result.samples_trained,
            samples_model=result.samples_model,
            version_bumps=1,
            rollouts=infos,
        )

    # ------------------------------------------------------------------ off-policy

    def add(self, batches: Sequence[Batch]) -> None:
        for b in batches:
            self.buffer.add(b)

    def can_sample(self) -> bool:
        return self.limiter.can_sample(self.plan.batch_size) and len(self.buffer) >= self.plan.min_size

    def learn(
        self, inserted: int, progress: float, budget_s: float = SLICE_S, wait_s: float = 0.0
    ) -> LearnerStep:
        """Update while the rate limiter allows, for at most ``budget_s`` seconds.

        ``inserted``: transitions inserted so far (the driver's count). ``wait_s``: how long to
        wait for the Redis mirror to catch up when nothing can be sampled at the start (an
        actor waits a little rather than answer at once and be asked again at once).
        """
        plan, limiter, buffer = self.plan, self.limiter, self.buffer
        limiter.observe_inserted(inserted)
        t0 = time.monotonic()
        while wait_s > 0 and not self.can_sample() and time.monotonic() - t0 < wait_s:
            if not limiter.can_sample(plan.batch_size):
                break  # only more inserts help, and they are counted by the driver
            time.sleep(0.005)
        metrics: Mapping[str, float] = {}
        updates = grad_steps = samples = model = bumps = 0
        t_learn = time.monotonic()
        while self.can_sample() and time.monotonic() - t_learn < budget_s:
            self.learner.set_progress(progress)
            batch = buffer.sample(plan.batch_size)
            result = self.learner.update(batch)
            metrics = result.metrics
            if buffer.prioritized and result.priorities is not None:
                buffer.update_priorities(batch.indices, result.priorities)
            limiter.record_sample(result.samples_trained)
            before = self._grad_updates
            self._grad_updates += result.grad_steps
            updates += 1
            grad_steps += result.grad_steps
            samples += result.samples_trained
            model += result.samples_model
            bumps += min(1, versions_crossed(before, self._grad_updates, plan.publish_every))
        return LearnerStep(
            metrics=dict(metrics),
            updates=updates,
            grad_steps=grad_steps,
            samples_trained=samples,
            samples_model=model,
            version_bumps=bumps,
            replay_short=len(buffer) < plan.min_size,
        )

    def replay_stats(self, sync: bool = False) -> dict[str, Any]:
        if self.buffer is None:
            return {}
        if sync:
            # A Redis mirror trails the workers' writes by up to one poll.
            self.buffer.sync()
        return {"replay_size": len(self.buffer), **self.buffer.stats()}

    def replay_inserted(self) -> int:
        """The replay's insert cursor after catching its mirror up (0 without a replay)."""
        if self.buffer is None:
            return 0
        self.buffer.sync()
        return int(self.buffer.inserted)

    # ------------------------------------------------------------------ state

    def get_weights(self) -> dict[str, Any]:
        return self.learner.get_weights()

    def state_dict(self) -> dict[str, Any]:
        return self.learner.state_dict()

    def close(self) -> None:
        if self.buffer is not None:
            self.buffer.close()


@dataclass(eq=False)
class LocalSlice:
    """A learning slice of the in-process learner: it runs when polled (like a ``LocalCall``)."""

    inserted: int
    """The driver's insert count when the slice was asked for."""
    progress: float
    """Training progress for schedules."""
    budget_s: float
    """Longest the slice may run."""


class LocalLearner:
    """The learner in the driver's process: every call runs at once, in the driver's thread."""

    where = "local"

    def __init__(self, host: LearnerHost):
        self.host = host

    def publish(self, group: WorkerGroup) -> Any:
        return group.publish(self.host.get_weights())

    def collect_and_update(
        self, group: WorkerGroup, nominal: int, sample_args: Sequence[Any], progress: float
    ) -> LearnerStep:
        """``collect_batch`` (lost workers parked there, their fragments owed by others), then
        one update here."""
        rollouts = collect_batch(group, nominal, *sample_args)
        return self.host.update_rollouts(rollouts, progress)

    def replay_inserted(self) -> int:
        return self.host.replay_inserted()

    def add(self, batch: Batch) -> None:
        self.host.add([batch])

    def learn(self, inserted: int, progress: float, budget_s: float = SLICE_S) -> LocalSlice:
        return LocalSlice(inserted, progress, budget_s)

    def poll(self, handle: LocalSlice, timeout: float, wake: Sequence[Any] = ()) -> LearnerStep:
        return self.host.learn(handle.inserted, handle.progress, handle.budget_s)

    def replay_stats(self, sync: bool = False) -> dict[str, Any]:
        return self.host.replay_stats(sync)

    def sync_to(self, learner: Learner) -> None:
        if learner is not self.host.learner:
            learner.load_state_dict(self.host.state_dict())

    def close(self) -> None:
        self.host.close()


def open_learner(s: Any, replay: ReplayPlan | None = None) -> LearnerService:
    """The session's learner where ``--learner`` puts it: ``s.learner`` itself in this process,
    or a copy of it in a learner actor on the backend (which ``sync_to`` copies back)."""
    run = s.run_cfg
    where = s.backend.learner_placement(run.learner)
    if where == "local":
        return LocalLearner(LearnerHost(s.learner, replay))
    from tandem.runner.envs import env_spaces

    obs_space, act_space = env_spaces(run.env_id, run.env_kwargs)
    resources = dict(run.learner_resources)
    cpus = float(resources.pop("CPU", run.learner_cpus))
    host_kwargs = dict(
        algo=run.algo,
        obs_space=obs_space,
        act_space=act_space,
        algo_cfg=s.algo_cfg,
        state=s.learner.state_dict(),
        replay=replay,
        # With the workers elsewhere, the learner may use every CPU reserved for it.
        threads=max(run.learner_threads, int(cpus)),
    )
    return s.backend.make_learner(host_kwargs, cpus, resources)


def sync_quietly(service: LearnerService, learner: Learner) -> bool:
    """``service.sync_to(learner)`` on the way out of an interrupted run, where an error must not
    hide the interruption; returns whether the state was copied."""
    try:
        service.sync_to(learner)
        return True
    except Exception as e:  # noqa: BLE001 - logged; the caller is already unwinding
        log.warning(
            "could not copy the learner's state back (%s): the interrupted run's checkpoint holds the "
            "learner of its last periodic checkpoint",
            type(e).__name__,
        )
        return False
