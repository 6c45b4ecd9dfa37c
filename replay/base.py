"""What the two backends share: everything a learner calls, served from a ``LocalRing``."""

from __future__ import annotations

import numpy as np

from tandem.core.types import Batch
from tandem.replay.errors import ReplayError
from tandem.replay.ring import LocalRing, PrioritizedSampler, UniformSampler
from tandem.replay.schema import Schema


class RingReplay:
    """Sampling, priorities, ``len`` and reuse statistics over a local numpy ring.

    Subclasses decide how rows reach the ring (``add`` in memory; a mirror of Redis fed by a
    background thread) and override :meth:`_reader` to return the ring ready to read.
    """

    def __init__(
        self,
        *,
        prioritized: bool = False,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        seed: int | None = None,
        uses_bins: int = 32,
    ):
        self.prioritized = bool(prioritized)
        self._alpha, self._beta, self._eps = float(alpha), float(beta), float(eps)
        self._seed = seed
        self._uses_bins = int(uses_bins)
        self._ring: LocalRing | None = None

    def _new_ring(self, schema: Schema, capacity: int) -> LocalRing:
        sampler = (
            PrioritizedSampler(capacity, self._alpha, self._beta, self._eps)
            if self.prioritized
            else UniformSampler()
        )
        return LocalRing(schema, capacity, sampler, seed=self._seed, uses_bins=self._uses_bins)

    def _reader(self) -> LocalRing | None:
        return self._ring

    @property
    def beta(self) -> float:
        """Importance-sampling exponent; anneal it toward 1 by assigning to it."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = float(value)
        if self._ring is not None and isinstance(self._ring.sampler, PrioritizedSampler):
            self._ring.sampler.beta = self._beta

    def sample(self, n: int) -> Batch:
        """``n`` transitions drawn with replacement, with ``indices`` and ``weights`` set.

        Uniform replay: weights are all 1. Prioritized: ``P(i) ~ p_i^alpha`` and
        ``w_i = (N P(i))^-beta / max w``. ``indices`` are this buffer's insert positions: pass
        them back to :meth:`update_priorities`.
        """
        ring = self._reader()
        if ring is None:
            raise ReplayError(
                f"cannot sample {n} transitions from an empty replay buffer: "
                "wait until it holds min_size transitions (replay.RateLimiter)"
            )
        arrays, indices, weights = ring.sample(int(n))
        return Batch.from_arrays(arrays, indices=indices, weights=weights)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set ``p_i = |priority| + eps`` for sampled ``indices`` (no-op for uniform replay).

        Indices whose transition was evicted since it was sampled are ignored.
        """
        ring = self._settled()
        if ring is not None:
            ring.update_priorities(indices, priorities)

    def mass(self) -> tuple[float, float]:
        """``(total, smallest)`` sampling mass of the live rows (see ``LocalRing.mass``)."""
        ring = self._reader()
        return (0.0, 0.0) if ring is None else ring.mass()

    def _settled(self) -> LocalRing | None:
        """The ring, once it reflects this object's own earlier writes (no other I/O)."""
        return self._ring

    def __len__(self) -> int:
        ring = self._reader()
        return 0 if ring is None else len(ring)

    @property
    def inserted(self) -> int:
        """Transitions inserted so far (for Redis: as seen by this reader's mirror)."""
        ring = self._reader()
        return 0 if ring is None else ring.inserted

    @property
    def sampled(self) -> int:
        """Transitions sampled from this object so far, counted with repetition."""
        return 0 if self._ring is None else self._ring.sampled

    def stats(self) -> dict[str, float | list]:
        """``replay/size``, ``replay/inserted``, ``replay/sampled``, ``replay/evicted``,
        ``replay/uses_mean_live``, ``replay/uses_mean_evicted``, ``replay/uses_hist_live``,
        ``replay/uses_hist_evicted`` (histograms: index i counts transitions sampled i times;
        the last bin counts ``>= len - 1``)."""
        ring = self._reader()
        if ring is None:
            zeros = [0] * self._uses_bins
            return {
                "replay/size": 0.0,
                "replay/inserted": 0.0,
                "replay/sampled": 0.0,
                "replay/evicted": 0.0,
                "replay/uses_mean_live": 0.0,
                "replay/uses_mean_evicted": 0.0,
                "replay/uses_hist_live": zeros,
                "replay/uses_hist_evicted": list(zeros),
            }
        return ring.stats()

    def live_rows(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every live transition, oldest first, and its index (copies; for tests and checks)."""
        ring = self._reader()
        if ring is None:
            return {}, np.zeros(0, np.int64)
        return ring.live_rows()
