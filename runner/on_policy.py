"""The synchronous on-policy driver: collect -> update -> broadcast -> discard."""

from __future__ import annotations

from tandem.runner.learner_host import open_learner, sync_quietly
from tandem.runner.session import Session


def train_on_policy(s: Session) -> None:
    """One loop, in the algorithm's order. Each iteration's batch is used by exactly one
    ``learner.update`` (which may reuse it for several epochs) and then dropped.

    Each batch is the run's nominal size (``group.nominal`` fragments) however many workers
    live. The learner runs in this process or in a learner actor (``--learner``); with an actor
    the fragments go from the workers to it as object refs and never through this process."""
    run, cfg = s.run_cfg, s.algo_cfg
    c = s.counters
    # The learner first: a learner actor's CPUs are reserved before the workers take the rest.
    learner = open_learner(s)
    group = None
    try:
        group = s.start_workers()
        weights = learner.publish(group)  # one object, shared by all workers
        with s.reporter() as rep:
            while c.env_steps < run.total_steps and not s.should_stop():
                progress = c.env_steps / run.total_steps
                group.maintain()  # replace lost workers, grow or shrink toward the target
                # 1. collect a fresh batch of the run's nominal size from the live workers,
                # 2. update on it
                step = learner.collect_and_update(
                    group, group.nominal, (cfg.fragment_length, weights, c.version, progress), progress
                )
                for r in step.rollouts:
                    s.record_fragment(rep, r.worker_index, r.env_steps, r.episode_returns, r.policy_version)
                if not step.updates:
                    continue
                c.record_update(step)
                # 3. broadcast the new weights; 4. the batch was dropped by the learner
                c.version += step.version_bumps
                weights = learner.publish(group)
                c.iterations += 1
                s.log(rep.row(len(group.alive), {**step.metrics, "worker_restarts": group.restarts}))
                if c.iterations % run.checkpoint_every == 0:
                    learner.sync_to(s.learner)
                    s.checkpoint()
        # The run's final checkpoint, written after this returns, reads s.learner.
        learner.sync_to(s.learner)
    except KeyboardInterrupt:
        sync_quietly(learner, s.learner)
        raise
    finally:
        if group is not None:
            group.shutdown()
        learner.close()
