"""``InMemoryReplay``: a numpy ring in this process (``--replay memory``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tandem.core.types import Batch
from tandem.replay.base import RingReplay
from tandem.replay.errors import ReplayError
from tandem.replay.schema import Schema, batch_arrays


class InMemoryReplay(RingReplay):
    """A FIFO ring of ``capacity`` transitions in local numpy arrays.

    The schema (field names, dtypes, per-row shapes) comes from ``schema``, ``example`` or
    the first batch added; later batches must match it. Same API as ``RedisReplay``.

    >>> replay = InMemoryReplay(100_000, prioritized=True)
    >>> replay.add(rollout.to_batch())                       # doctest: +SKIP
    >>> batch = replay.sample(256)                           # doctest: +SKIP
    >>> replay.update_priorities(batch.indices, td_abs)      # doctest: +SKIP
    """

    def __init__(
        self,
        capacity: int,
        *,
        schema: Schema | None = None,
        example: Batch | None = None,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        seed: int | None = None,
        uses_bins: int = 32,
    ):
        super().__init__(
            prioritized=prioritized, alpha=alpha, beta=beta, eps=eps, seed=seed, uses_bins=uses_bins
        )
        if int(capacity) < 1:
            raise ReplayError(f"replay capacity must be >= 1 (got {capacity})")
        self.capacity = int(capacity)
        if schema is None and example is not None:
            schema = Schema.from_batch(example)
        self.schema = schema
        if schema is not None:
            self._ring = self._new_ring(schema, self.capacity)

    def add(self, batch: Batch | Mapping[str, np.ndarray]) -> None:
        """Append a fragment; the oldest transitions are evicted once the ring is full."""
        arrays = batch_arrays(batch)
        if self.schema is None:
            self.schema = Schema.from_arrays(arrays)
            self._ring = self._new_ring(self.schema, self.capacity)
        rows = self.schema.validate(arrays)
        if next(iter(rows.values())).shape[0] == 0:
            return
        self._ring.append(rows)

    def sync(self) -> int:
        """Nothing to catch up with: every write went through :meth:`add`. Returns the size."""
        return len(self)

    def close(self) -> None:
        pass

    def __enter__(self) -> InMemoryReplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
