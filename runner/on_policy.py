"""The synchronous on-policy driver: collect -> update -> broadcast -> discard."""

from __future__ import annotations

import ray

from tandem.core.types import UpdateResult, concat_rollouts
from tandem.runner.session import Session


def train_on_policy(s: Session) -> None:
    """One loop, in the algorithm's order. Each iteration's batch is used by exactly one
    ``learner.update`` (which may reuse it for several epochs) and then dropped."""
    run, cfg = s.run_cfg, s.algo_cfg
    learner = s.learner
    group = s.start_workers()
    c = s.counters
    weights = ray.put(learner.get_weights())  # one object in the store, shared by all workers
    with s.reporter() as rep:
        while c.env_steps < run.total_steps and not s.should_stop():
            progress = c.env_steps / run.total_steps
            # 1. collect a fresh batch from every live worker
            rollouts = group.call_all("sample", cfg.fragment_length, weights, c.version, progress)
            for r in rollouts:
                rep.collected(r.worker_index, r.num_steps, r.episode_returns, c.version - r.policy_version)
            batch = concat_rollouts(rollouts)
            # 2. update
            learner.set_progress(progress)
            metrics = learner.update(batch)
            if isinstance(metrics, UpdateResult):  # shim until every learner returns UpdateResult
                metrics = {
                    **metrics.metrics,
                    "grad_updates": metrics.grad_steps,
                    "samples_trained": metrics.samples_trained,
                }
            c.grad_updates += metrics.pop("grad_updates")
            c.samples_trained += metrics.pop("samples_trained")
            # 3. broadcast the new weights
            c.version += 1
            weights = ray.put(learner.get_weights())
            # 4. the batch is thrown away when it goes out of scope
            del batch, rollouts
            c.iterations += 1
            s.log(rep.row(len(group.alive), {**metrics, "worker_restarts": group.restarts}))
            if c.iterations % run.checkpoint_every == 0:
                s.checkpoint()
    group.shutdown()
