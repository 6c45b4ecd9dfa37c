"""The synchronous on-policy driver: collect -> update -> broadcast -> discard."""

from __future__ import annotations

from tandem.core.types import concat_rollouts
from tandem.runner.session import Session


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
                # 1. collect a fresh batch from every live worker
                rollouts = group.call_all("sample", cfg.fragment_length, weights, c.version, progress)
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
