"""The local ring: numpy storage x sampler x reuse counts, shared by both backends.

``InMemoryReplay`` appends to a ``LocalRing`` directly. ``RedisReplay`` keeps one as a local
mirror of the Redis ring, fed by a background thread, and samples from it at numpy speed.

Indices. ``sample`` returns ``indices`` = insert positions in this ring (0, 1, 2, ... in the
order rows arrived; the slot is ``index % capacity``). Passing them back to
``update_priorities`` is safe even if a slot was overwritten in between: updates whose
position is no longer live are dropped, so a new transition never inherits an old TD error.

Priorities and use counts live here, on the reader side: each learner has its own TD errors
and its own sampling history, and sharing them through Redis would cost a round trip per
batch for no gain.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import numpy as np

from tandem.replay.errors import ReplayError
from tandem.replay.schema import Schema
from tandem.replay.sumtree import SumTree


class UniformSampler:
    """Every live transition equally likely, with replacement. Weights are all 1."""

    prioritized = False

    def on_insert(self, slots: np.ndarray) -> None:
        pass

    def sample(self, rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, size, n, dtype=np.int64), np.ones(n, np.float32)

    def update(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        pass


class PrioritizedSampler:
    """Proportional prioritized replay (Schaul et al. 2016, arXiv:1511.05952, section 3.3).

    ``P(i) = p_i^alpha / sum_k p_k^alpha`` with ``p_i = |delta_i| + eps``; new transitions get
    the largest priority seen so far, so each is likely sampled at least once. Importance
    weights ``w_i = (N * P(i))^-beta / max_j w_j`` correct the bias (max over all live j,
    through the min tree). Sampling is stratified: one draw per equal slice of the total
    mass, as in the paper.
    """

    prioritized = True

    def __init__(self, capacity: int, alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-6):
        if alpha < 0 or beta < 0 or eps <= 0:
            raise ReplayError(
                f"prioritized replay needs alpha >= 0, beta >= 0, eps > 0 (got {alpha}, {beta}, {eps})"
            )
        self.alpha, self.beta, self.eps = float(alpha), float(beta), float(eps)
        self.tree = SumTree(capacity)
        self.max_priority = 1.0

    def on_insert(self, slots: np.ndarray) -> None:
        self.tree.update(slots, self.max_priority**self.alpha)

    def sample(self, rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        total = self.tree.total
        mass = (np.arange(n) + rng.random(n)) * (total / n)
        slots = np.minimum(self.tree.find(np.minimum(mass, total * (1 - 1e-12))), size - 1)
        prob = self.tree[slots] / total
        p_min = self.tree.min / total
        weights = (prob / p_min) ** (-self.beta)  # = (N P(i))^-b / (N P_min)^-b
        return slots, weights.astype(np.float32)

    def update(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        p = np.asarray(priorities, np.float64)
        if p.size and not (np.all(np.isfinite(p)) and p.min() >= 0):
            raise ReplayError(
                "priorities must be finite and >= 0 (|TD error|): got NaN, inf or a negative value"
            )
        p = p + self.eps
        if p.size:
            self.max_priority = max(self.max_priority, float(p.max()))
        self.tree.update(slots, p**self.alpha)


class LocalRing:
    """A FIFO ring of ``capacity`` rows per field, with a sampler and per-slot use counts.

    Thread-safe: one writer (``append``) and any number of samplers share a lock; the lock is
    held only for memory copies, never for I/O.
    """

    def __init__(
        self,
        schema: Schema,
        capacity: int,
        sampler: UniformSampler | PrioritizedSampler,
        seed: int | None = None,
        uses_bins: int = 32,
    ):
        if capacity < 1:
            raise ReplayError(f"replay capacity must be >= 1 (got {capacity})")
        if uses_bins < 2:
            raise ReplayError("uses_bins must be >= 2")
        self.schema = schema
        self.capacity = int(capacity)
        self.sampler = sampler
        self.rng = np.random.default_rng(seed)
        self.data = {f.name: np.zeros((self.capacity, *f.shape), f.np_dtype) for f in schema.fields}
        self.pos = np.full(self.capacity, -1, np.int64)  # insert position held by each slot
        self.uses = np.zeros(self.capacity, np.int64)
        self.lock = threading.Lock()
        self.total = 0  # rows appended (next position)
        self.inserted = 0  # rows inserted into the buffer, including ones evicted unseen
        self.sampled = 0
        self.bins = int(uses_bins)
        self.evicted = 0
        self.evicted_uses = 0
        self.evicted_hist = np.zeros(self.bins, np.int64)

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def append(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        """Append ``k`` rows (validated arrays, ``k <= capacity``); returns their positions."""
        k = int(next(iter(rows.values())).shape[0])
        if k > self.capacity:
            raise ReplayError(
                f"a fragment of {k} transitions exceeds the replay capacity {self.capacity}: "
                "raise the capacity or write smaller fragments"
            )
        with self.lock:
            start = self.total
            slot0 = start % self.capacity
            first = min(k, self.capacity - slot0)
            parts = [(slot0, 0, first)] + ([(0, first, k - first)] if k > first else [])
            slots = (np.arange(k, dtype=np.int64) + slot0) % self.capacity
            self._evict(slots)
            for slot, off, m in parts:
                for name, arr in rows.items():
                    self.data[name][slot : slot + m] = arr[off : off + m]
            positions = np.arange(start, start + k, dtype=np.int64)
            self.pos[slots] = positions
            self.uses[slots] = 0
            self.sampler.on_insert(slots)
            self.total += k
            self.inserted += k
            return positions

    def skip(self, k: int) -> None:
        """Count ``k`` rows that were inserted and evicted before this ring saw them (0 uses)."""
        if k > 0:
            with self.lock:
                self.inserted += k
                self.evicted += k
                self.evicted_hist[0] += k

    def _evict(self, slots: np.ndarray) -> None:
        live = self.pos[slots] >= 0
        if live.any():
            u = self.uses[slots[live]]
            self.evicted += int(live.sum())
            self.evicted_uses += int(u.sum())
            self.evicted_hist += np.bincount(np.minimum(u, self.bins - 1), minlength=self.bins)

    def sample(self, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """``n`` rows (with replacement): arrays, positions, importance weights."""
        if n < 1:
            raise ReplayError(f"sample size must be >= 1 (got {n})")
        with self.lock:
            size = len(self)
            if size == 0:
                raise ReplayError(
                    f"cannot sample {n} transitions from an empty replay buffer: "
                    "wait until it holds min_size transitions (replay.RateLimiter)"
                )
            slots, weights = self.sampler.sample(self.rng, n, size)
            out = {name: arr.take(slots, axis=0) for name, arr in self.data.items()}
            np.add.at(self.uses, slots, 1)
            self.sampled += n
            return out, self.pos[slots], weights

    def mass(self) -> tuple[float, float]:
        """``(total, smallest)`` sampling mass of the live rows: ``(sum p_i^alpha, min p_i^alpha)``
        for prioritized replay, ``(size, 1)`` for uniform. Shards are drawn in proportion to it."""
        with self.lock:
            if isinstance(self.sampler, PrioritizedSampler):
                if len(self) == 0:
                    return 0.0, 0.0
                return float(self.sampler.tree.total), float(self.sampler.tree.min)
            return float(len(self)), 1.0

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        if not self.sampler.prioritized:
            return
        idx = np.asarray(indices, np.int64).ravel()
        pr = np.asarray(priorities, np.float64).ravel()
        if idx.shape != pr.shape:
            raise ReplayError(f"update_priorities got {idx.size} indices but {pr.size} priorities")
        with self.lock:
            slots = idx % self.capacity
            live = self.pos[slots] == idx  # drop updates for transitions evicted since sampling
            self.sampler.update(slots[live], pr[live])

    def stats(self) -> dict[str, float | list]:
        """Reuse accounting: how many times each transition was sampled, live and evicted."""
        with self.lock:
            size = len(self)
            u = self.uses[:size]
            live_hist = np.bincount(np.minimum(u, self.bins - 1), minlength=self.bins)
            return {
                "replay/size": float(size),
                "replay/inserted": float(self.inserted),
                "replay/sampled": float(self.sampled),
                "replay/evicted": float(self.evicted),
                "replay/uses_mean_live": float(u.mean()) if size else 0.0,
                "replay/uses_mean_evicted": self.evicted_uses / self.evicted if self.evicted else 0.0,
                "replay/uses_hist_live": live_hist.tolist(),
                "replay/uses_hist_evicted": self.evicted_hist.tolist(),
            }

    def live_rows(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """All live rows oldest first (copies), and their positions: for tests and checkpoints."""
        with self.lock:
            size = len(self)
            slots = (np.arange(self.total - size, self.total) % self.capacity).astype(np.int64)
            return {k: v[slots].copy() for k, v in self.data.items()}, self.pos[slots].copy()
