"""An elastic RayWorkerGroup on a 2-CPU local Ray: starts with what fits, shrinks and regrows
through the GCS control channel that ``tandem scale`` writes, reusing its reserved bundle."""

from __future__ import annotations

import json
import time

import pytest
import ray

from tandem.cluster.control import CONTROL_FILE, request_scale
from tandem.cluster.group import RayWorkerGroup
from tandem.learners.ppo import PPOConfig

pytestmark = pytest.mark.integration


def wait_alive(group: RayWorkerGroup, n: int, timeout_s: float = 120) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        group.maintain(min_interval_s=0)
        alive = group.alive
        if len(alive) == n and group.num_workers == n:
            return alive
        time.sleep(0.2)
    raise AssertionError(f"expected {n} workers, have {group.alive} of {group.num_workers}")


def test_elastic_group_starts_with_what_fits_and_follows_the_scale_channel(local_ray, tmp_path):
    group = RayWorkerGroup(
        1,
        max_workers=4,
        run_dir=str(tmp_path),
        env_id="CartPole-v1",
        num_envs=1,
        algo="ppo",
        algo_config=PPOConfig(hidden=(8,)),
    )
    try:
        assert group.num_workers == 2 and group.nominal == 4, "2 CPUs: 2 workers of 1 CPU fit"
        info = json.loads((tmp_path / CONTROL_FILE).read_text())
        assert info["address"] == ray.get_runtime_context().gcs_address
        request_scale(tmp_path, 1)  # what `tandem scale RUN_DIR --workers 1` does
        assert wait_alive(group, 1) == [0], "the newest worker goes first"
        assert len(group._free_bundles) == 1
        request_scale(tmp_path, 2)
        alive = wait_alive(group, 2)
        assert alive == [0, 2] and not group._free_bundles, "regrown into the freed bundle, new index"
        rollouts = ray.get([group.call(i, "sample", 4) for i in alive])
        assert sorted(r.worker_index for r in rollouts) == [0, 2]
        assert [e[1:] for e in group.events] == [("retired", 1), ("grown", 2), ("up", 2)]
    finally:
        group.shutdown()
