"""Count-based exploration beyond ε: the lecture's bonus 1/N(s, a), carried to large and
continuous state spaces by counting hashed state features (``--set exploration_bonus=count``).

SimHash (Tang et al. 2017, "#Exploration"): a fixed Gaussian projection A ∈ R^{k×D}
(A_ij ~ N(0, 1)) maps a state to k sign bits,

    φ(s) = sgn(A g(s)) ∈ {-1, 1}^k,

nearby states share a code, and a table counts codes. A replay-fed learner adds

    r⁺ = r + β / √N(φ(s'))

to the reward it trains on, where s' is the transition's next state (the state the action
led to, so that the bonus credits the action at s that reached a rarely seen state, the way
1/N(s, a) does in the tabular case; the paper writes φ(s) with the bonus attached to the
step that enters s). The replay keeps the raw rewards; the bonus is computed on each sampled
batch, so turning it off (or changing β) never needs new data.

Where the counts come from. The learner only sees sampled batches. A transition is counted
once, the first time its replay index (``batch.indices``, its insert position) appears in a
batch (:class:`FirstSeen`): so N(φ) counts visits, not samples, and a transition sampled 60
times still counts 1. A transition evicted before it is ever sampled is never counted; with
uniform replay and a replay ratio ρ ≥ 8 sampled transitions per insert that is a fraction
≈ e^-ρ of them (under 0.04%). Counting on the learner's side keeps the bonus a pure learner
feature: no worker, replay or driver change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from tandem.core.errors import TandemError
from tandem.core.types import Batch


class ExplorationConfigError(TandemError):
    pass


BONUS_CHOICES = ("none", "count")


def check_bonus_choice(value: str) -> None:
    """One-line error for a misspelt ``exploration_bonus``."""
    if value not in BONUS_CHOICES:
        raise ExplorationConfigError(
            f"exploration_bonus must be one of {', '.join(BONUS_CHOICES)}, not {value!r}: "
            "use --set exploration_bonus=count (or none)"
        )


# ----------------------------------------------------------------------------- first sight


class FirstSeen:
    """Which replay insert positions this learner has already seen in a batch.

    Replay indices grow by one per inserted transition (Redis and in-memory replay alike),
    so one bit per insert position is enough: a bool array grown by doubling (1 MB per
    million env steps).
    """

    def __init__(self) -> None:
        self.seen = np.zeros(1024, dtype=bool)

    def new_rows(self, indices: np.ndarray | None, n: int) -> np.ndarray:
        """Mask [n] of rows seen for the first time, and mark them seen.

        ``indices`` None (a batch built by hand, not sampled from a replay) means every row
        is new. A position repeated inside one batch is new only at its first row.
        """
        if indices is None:
            return np.ones(n, dtype=bool)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and idx.max() >= self.seen.size:
            grown = np.zeros(max(2 * self.seen.size, int(idx.max()) + 1), dtype=bool)
            grown[: self.seen.size] = self.seen
            self.seen = grown
        fresh = ~self.seen[idx]
        _, first = np.unique(idx, return_index=True)
        once = np.zeros(idx.size, dtype=bool)
        once[first] = True
        fresh &= once
        self.seen[idx] = True
        return fresh

    def state_dict(self) -> dict[str, Any]:
        return {"seen": torch.as_tensor(np.flatnonzero(self.seen))}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pos = np.asarray(state["seen"], dtype=np.int64)
        self.seen = np.zeros(max(1024, int(pos.max()) + 1 if pos.size else 0), dtype=bool)
        self.seen[pos] = True


# ----------------------------------------------------------------------------- SimHash


def simhash_codes(features: np.ndarray, projection: np.ndarray) -> np.ndarray:
    """φ(s) = sgn(A g(s)) packed into an int64 per row: bit j is 1 iff (A g(s))_j > 0.

    | arg        | shape  |
    |------------|--------|
    | features   | [B, D] |
    | projection | [k, D] |  (k ≤ 63)
    | returns    | [B]    |
    """
    bits = (features @ projection.T) > 0
    weights = np.left_shift(np.int64(1), np.arange(projection.shape[0], dtype=np.int64))
    return (bits.astype(np.int64) * weights).sum(axis=1)


def count_bonus(counts: np.ndarray, beta: float) -> np.ndarray:
    """b = β / √N, with N ≥ 1 (a state counted 0 times gets the bonus of one visit, β)."""
    return beta / np.sqrt(np.maximum(np.asarray(counts, dtype=np.float64), 1.0))


@dataclass
class SimHashConfig:
    """SimHash count-bonus settings (used when ``exploration_bonus='count'``)."""

    bits: int = 32
    """k: sign bits of the code φ(s) (the paper: 64 for Atari RAM, smaller is coarser)."""
    beta: float = 0.01
    """β: bonus scale in reward units."""
    seed: int = 0
    """Seed of the projection A (fixed for the run, saved in checkpoints)."""


class SimHashCounter:
    """N(φ(s)) over a hash table of SimHash codes, and the bonus β / √N(φ(s)).

    ``low``/``high`` (the observation box, when finite) rescale each dimension into [-1, 1]
    first, so that MountainCar's position (≈ -0.5) and velocity (≤ 0.07) both count, and a
    constant 1 is appended: g(s) = [(s - mid) / half-width, 1]. Without the constant every
    hyperplane passes through the origin and a 2-D state would hash by its angle only (2k
    sectors); with it the k hyperplanes are affine and cut the box into up to ~k²/2 cells.
    """

    def __init__(
        self,
        obs_dim: int,
        cfg: SimHashConfig,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
    ):
        if not 1 <= cfg.bits <= 63:
            raise ExplorationConfigError(
                f"simhash bits must be in 1..63 (got {cfg.bits}): --set simhash_bits=32"
            )
        self.cfg = cfg
        self.projection = np.random.default_rng(cfg.seed).standard_normal((cfg.bits, obs_dim + 1))
        self.mid = np.zeros(obs_dim)
        self.half = np.ones(obs_dim)
        if low is not None and high is not None:
            lo, hi = np.asarray(low, np.float64).reshape(-1), np.asarray(high, np.float64).reshape(-1)
            finite = np.isfinite(lo) & np.isfinite(hi) & (hi > lo)
            self.mid[finite] = (hi[finite] + lo[finite]) / 2
            self.half[finite] = (hi[finite] - lo[finite]) / 2
        self.table: dict[int, int] = {}

    def codes(self, obs: np.ndarray) -> np.ndarray:
        g = (np.asarray(obs, np.float64).reshape(len(obs), -1) - self.mid) / self.half
        return simhash_codes(np.concatenate([g, np.ones((len(g), 1))], axis=1), self.projection)

    def observe(self, obs: np.ndarray) -> None:
        """N(φ(s)) += 1 for each row."""
        uniq, n = np.unique(self.codes(obs), return_counts=True)
        for c, k in zip(uniq.tolist(), n.tolist(), strict=True):
            self.table[c] = self.table.get(c, 0) + k

    def counts(self, obs: np.ndarray) -> np.ndarray:
        return np.array([self.table.get(c, 0) for c in self.codes(obs).tolist()], dtype=np.int64)

    def bonus(self, obs: np.ndarray) -> np.ndarray:
        return count_bonus(self.counts(obs), self.cfg.beta)

    def state_dict(self) -> dict[str, Any]:
        return {
            "codes": torch.tensor(list(self.table), dtype=torch.int64),
            "counts": torch.tensor(list(self.table.values()), dtype=torch.int64),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.table = dict(
            zip(np.asarray(state["codes"]).tolist(), np.asarray(state["counts"]).tolist(), strict=True)
        )


class CountBonus:
    """What an off-policy learner holds for ``exploration_bonus='count'``: first-sight counting
    of each sampled transition's s', and the bonus for a batch.

        r⁺_i = r_i + β / √N(φ(s'_i))      (counts updated before the bonus is read)
    """

    def __init__(self, obs_space: gym.Space, cfg: SimHashConfig):
        self.first_seen = FirstSeen()
        self.num_states = int(obs_space.n) if isinstance(obs_space, gym.spaces.Discrete) else None
        if self.num_states is not None:  # a Discrete state is hashed through its one-hot vector
            self.counter = SimHashCounter(self.num_states, cfg)
        else:
            dim = int(np.prod(obs_space.shape))
            self.counter = SimHashCounter(
                dim, cfg, getattr(obs_space, "low", None), getattr(obs_space, "high", None)
            )

    def features(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if self.num_states is not None:
            return np.eye(self.num_states)[obs.astype(np.int64).reshape(-1)]
        return obs.reshape(len(obs), -1)

    def __call__(self, next_obs: np.ndarray, indices: np.ndarray | None) -> np.ndarray:
        """The bonus [B] for a sampled batch, after counting its never-seen transitions."""
        g = self.features(next_obs)
        fresh = self.first_seen.new_rows(indices, len(g))
        if fresh.any():
            self.counter.observe(g[fresh])
        return self.counter.bonus(g)

    def state_dict(self) -> dict[str, Any]:
        return {"first_seen": self.first_seen.state_dict(), "counter": self.counter.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.first_seen.load_state_dict(state["first_seen"])
        self.counter.load_state_dict(state["counter"])


# ----------------------------------------------------------------------------- learner hook


def make_count_bonus(obs_space: gym.Space, cfg: Any) -> CountBonus | None:
    """The learner's bonus from its config's ``exploration_bonus`` / ``bonus_beta`` /
    ``simhash_bits`` fields; None for 'none'."""
    choice = cfg.exploration_bonus
    check_bonus_choice(choice)
    if choice == "none":
        return None
    return CountBonus(obs_space, SimHashConfig(bits=cfg.simhash_bits, beta=cfg.bonus_beta))


def with_bonus(bonus: CountBonus | None, batch: Batch, rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """r⁺ = r + β / √N(φ(s')) for a learner's reward tensor [B], and ``stats/bonus_mean`` /
    ``stats/bonus_max`` (the replay's raw rewards are untouched). No bonus: r unchanged, {}.

    With n-step transitions the reward is the n-step return G and s' the window's last state:
    its bonus is added once, undiscounted (a slight overweight of γ^-m, m ≤ n).
    """
    if bonus is None:
        return rewards, {}
    b = bonus(batch.next_obs, batch.indices)
    metrics = {
        "stats/bonus_mean": float(b.mean()),
        "stats/bonus_max": float(b.max()),
        "stats/bonus_codes": float(len(bonus.counter.table)),
    }
    return rewards + torch.as_tensor(b, dtype=rewards.dtype), metrics
