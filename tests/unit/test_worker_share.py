"""The per-worker CPU share: bundles never straddle nodes, and the learner's CPUs sit on one."""

from __future__ import annotations

import pytest

from tandem.cluster.group import worker_share


@pytest.mark.parametrize(
    ("nodes", "reserved", "workers", "share"),
    [
        ([2.0], 0.0, 2, 1.0),  # a laptop: one CPU each
        ([2.0], 0.0, 16, 0.125),  # oversubscribed on purpose
        ([1.0, 1.0, 1.0], 0.0, 3, 1.0),
        # The case that waited forever at (3 - 1) / 3 = 0.67: only one 0.67 fits per 1-CPU node.
        ([1.0, 1.0, 1.0], 1.0, 3, 0.5),
        ([0.0, 1.0, 1.0, 1.0], 1.0, 3, 0.5),  # a 0-CPU head changes nothing
        ([2.0], 1.0, 2, 0.5),
        ([8.0, 8.0], 1.0, 8, 1.0),
    ],
)
def test_share_is_the_largest_that_fits_node_by_node(nodes, reserved, workers, share):
    assert worker_share(nodes, reserved, workers) == pytest.approx(share)


@pytest.mark.parametrize("nodes", [[1.0, 1.0, 1.0], [3.0, 0.5], [2.0, 2.0, 1.0], [4.0]])
@pytest.mark.parametrize("workers", [1, 2, 3, 5, 7])
def test_the_bundles_fit_wherever_the_learner_lands(nodes, workers):
    c = worker_share(nodes, 1.0, workers)
    for j, t in enumerate(nodes):
        if t < 1.0:
            continue  # the learner cannot land here
        left = [x - (1.0 if i == j else 0.0) for i, x in enumerate(nodes)]
        assert sum(int(x / c + 1e-9) for x in left) >= workers or c == pytest.approx(
            max(min(1.0, (sum(nodes) - 1.0) / workers), 0.01)
        )
