"""A numpy sum tree (with a min tree beside it) for proportional prioritized replay.

Vectorised: ``update`` and ``find`` take arrays and walk the ``log2(capacity)`` levels once
each, so a batch of 256 costs about 20 numpy calls, not 256 Python loops.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Leaf values ``v[0..capacity)`` with O(log C) prefix-sum search, total and minimum.

    Layout: a binary heap of size ``2P`` (``P`` = capacity rounded up to a power of two);
    node ``i`` has children ``2i`` and ``2i+1``, leaves live at ``P + slot``. Unused leaves
    hold 0 in the sum tree and +inf in the min tree.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("SumTree capacity must be >= 1")
        self.capacity = int(capacity)
        self._p = 1 << max(0, (self.capacity - 1).bit_length())
        self._depth = self._p.bit_length() - 1
        self._sum = np.zeros(2 * self._p, np.float64)
        self._min = np.full(2 * self._p, np.inf, np.float64)

    @property
    def total(self) -> float:
        return float(self._sum[1])

    @property
    def min(self) -> float:
        """Smallest leaf value set so far (+inf when none)."""
        return float(self._min[1])

    def __getitem__(self, slots: np.ndarray) -> np.ndarray:
        return self._sum[np.asarray(slots, np.int64) + self._p]

    def update(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``slots`` to ``values`` (for repeated slots, the last value wins)."""
        slots = np.asarray(slots, np.int64).ravel()
        if slots.size == 0:
            return
        values = np.broadcast_to(np.asarray(values, np.float64), slots.shape)
        if slots.min() < 0 or slots.max() >= self.capacity:
            raise IndexError(f"slot out of range [0, {self.capacity})")
        node = slots + self._p
        self._sum[node] = values
        self._min[node] = values
        node = np.unique(node >> 1)
        while node.size and node[-1] >= 1:
            left = node << 1
            self._sum[node] = self._sum[left] + self._sum[left + 1]
            self._min[node] = np.minimum(self._min[left], self._min[left + 1])
            if node[0] == 1:
                break
            node = np.unique(node >> 1)

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each ``mass`` in ``[0, total)``, the slot whose cumulative range holds it."""
        u = np.asarray(mass, np.float64).copy()
        node = np.ones(u.shape, np.int64)
        for _ in range(self._depth):
            left = node << 1
            lv = self._sum[left]
            right = u > lv  # strict: ties go left, so a zero-mass right subtree is never entered
            u = np.where(right, u - lv, u)
            node = np.where(right, left + 1, left)
        return np.minimum(node - self._p, self.capacity - 1)
