"""``RateLimiter``: hold a learner to a replay ratio, in the style of Reverb's rate limiters.

Reverb's ``SampleToInsertRatio`` (https://github.com/google-deepmind/reverb, rate_limiters.py):

* no sampling before ``min_size`` transitions were inserted;
* then ``diff = inserted * samples_per_insert - sampled`` must stay within
  ``offset +- error_buffer`` where ``offset = samples_per_insert * min_size``: a sample of
  ``n`` waits while ``diff - n < offset - error_buffer`` (the learner is ahead), an insert of
  ``n`` waits while ``diff + n * spi > offset + error_buffer`` (the actors are ahead).

So after warm-up, ``sampled ~= samples_per_insert * (inserted - min_size)``: with
``samples_per_insert = batch * updates_per_step`` the replay ratio is what you chose.
Tandem's writers are remote and never wait, so drivers normally only gate sampling.

The limiter is plain bookkeeping that never blocks: feed it with ``record_insert`` /
``observe_inserted`` (e.g. ``replay.inserted``) and ``record_sample``, and ask ``can_sample``
before each learner step.
"""

from __future__ import annotations

import threading


class RateLimiter:
    """``min_size`` warm-up plus an optional samples-per-insert ratio with slack.

    Args:
        min_size: inserts needed before the first sample.
        samples_per_insert: target sampled / inserted transitions (``None``: only ``min_size``).
        error_buffer: slack in sampled transitions around the target. Must be at least the
            sample batch size, or with throttled inserts neither side could move; default:
            ``max(1024, 4 * samples_per_insert)``.
    """

    def __init__(
        self,
        min_size: int = 1,
        samples_per_insert: float | None = None,
        error_buffer: float | None = None,
    ):
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0 (got {min_size})")
        if samples_per_insert is not None and samples_per_insert <= 0:
            raise ValueError(f"samples_per_insert must be > 0 (got {samples_per_insert})")
        self.min_size = int(min_size)
        self.samples_per_insert = None if samples_per_insert is None else float(samples_per_insert)
        spi = self.samples_per_insert or 0.0
        self.error_buffer = float(error_buffer if error_buffer is not None else max(1024.0, 4 * spi))
        if self.error_buffer < 0:
            raise ValueError("error_buffer must be >= 0")
        self._offset = spi * self.min_size
        self._inserted = 0
        self._sampled = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ bookkeeping

    @property
    def inserted(self) -> int:
        return self._inserted

    @property
    def sampled(self) -> int:
        return self._sampled

    def record_insert(self, n: int = 1) -> None:
        with self._lock:
            self._inserted += int(n)

    def observe_inserted(self, total: int) -> None:
        """Set the insert count from a total someone else keeps (it never goes down)."""
        with self._lock:
            if total > self._inserted:
                self._inserted = int(total)

    def record_sample(self, n: int) -> None:
        with self._lock:
            self._sampled += int(n)

    # ------------------------------------------------------------------ decisions

    def _diff(self) -> float:
        return self._inserted * (self.samples_per_insert or 0.0) - self._sampled

    def can_sample(self, n: int = 1) -> bool:
        """May a learner take ``n`` more transitions now?"""
        if self._inserted < max(1, self.min_size):
            return False
        if self.samples_per_insert is None:
            return True
        return self._diff() - n >= self._offset - self.error_buffer

    def can_insert(self, n: int = 1) -> bool:
        """May actors add ``n`` more transitions without running ahead of the ratio?"""
        if self.samples_per_insert is None or self._inserted + n <= self.min_size:
            return True
        return self._diff() + n * self.samples_per_insert <= self._offset + self.error_buffer

    def stats(self) -> dict[str, float]:
        """``limiter/inserted``, ``limiter/sampled`` and the achieved ``limiter/ratio``."""
        ratio = (
            self._sampled / max(1, self._inserted - self.min_size) if self._inserted > self.min_size else 0.0
        )
        return {
            "limiter/inserted": float(self._inserted),
            "limiter/sampled": float(self._sampled),
            "limiter/ratio": float(ratio),
        }
