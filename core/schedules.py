"""Schedules: hyperparameters as functions of the run's progress (0..1 of the env-step budget).

Learners and policies receive the progress through ``set_progress(fraction)`` and read their
annealed values (ε, step sizes, clip range, entropy weight) from here.
"""

from __future__ import annotations


def linear_schedule(start: float, end: float, progress: float, duration: float = 1.0) -> float:
    """v(p) = start + (end - start) · clip(p / duration, 0, 1): linear from ``start`` to ``end``
    over the first ``duration`` of the run, then constant at ``end`` (duration ≤ 0: ``end``)."""
    if duration <= 0:
        return end
    return start + (end - start) * min(1.0, max(0.0, progress) / duration)
