"""Small replay batches whose rows say who they are, shared by the replay tests."""

from __future__ import annotations

import numpy as np

from tandem.core.types import Batch
from tandem.replay.base import RingReplay

ROWS = 8
"""Rows of a :func:`tagged` fragment."""


def id_batch(ids) -> Batch:
    """One row per id: obs = [id], reward = id, extras["id"] = id (a sample names its rows)."""
    ids = np.asarray(ids, np.int64)
    obs = ids[:, None].astype(np.float32)
    return Batch(
        obs=obs,
        actions=obs.copy(),
        rewards=ids.astype(np.float32),
        next_obs=obs + 1,
        terminated=np.zeros(len(ids), bool),
        truncated=np.zeros(len(ids), bool),
        extras={"id": ids},
    )


def tagged(seq: int) -> Batch:
    """Fragment ``seq`` of :data:`ROWS` rows, each tagged ``(seq, row)`` in obs and extras, so
    a reader can count lost and duplicated transitions."""
    s = np.full(ROWS, seq, np.int64)
    row = np.arange(ROWS, dtype=np.int64)
    obs = np.stack([s, row], axis=1).astype(np.float32)
    return Batch(
        obs=obs,
        actions=np.zeros((ROWS, 1), np.float32),
        rewards=s.astype(np.float32),
        next_obs=obs,
        terminated=np.zeros(ROWS, bool),
        truncated=np.zeros(ROWS, bool),
        extras={"seq": s, "row": row},
    )


def sample_tagged(reader: RingReplay, n: int = 16) -> int:
    """Sample ``n`` rows from ``reader`` once it holds any, checking that each row's obs still
    carries its own ``seq`` tag (no torn or misplaced row); 1 if it sampled, else 0."""
    if not len(reader):
        return 0
    b = reader.sample(n)
    assert np.all(b.obs[:, 0] == b.extras["seq"])
    return 1
