"""Tabular Dyna-Q (``--algo dynaq``) on the off-policy path: Q-learning from replay plus
planning with a model learned from the same transitions (Sutton 1990; Sutton & Barto §8.2).

Each :meth:`DynaQLearner.update` on a replay batch of B real transitions:

    1. model    for each transition seen for the first time:
                    N(s, a) += 1,  N(s, a, s', terminated) += 1,  ΣR(s, a) += r
                so  P̂(s', term | s, a) = N(s, a, s', term) / N(s, a),  R̂(s, a) = ΣR(s, a) / N(s, a)
    2. direct   Q(s, a) ← Q(s, a) + α [ r + γ (1 - terminated) max_a' Q(s', a') - Q(s, a) ]
                on the B real transitions (exactly ``qlearn``'s update)
    3. planning k times (k = ``planning_steps``): draw B model samples
                    (s, a) ~ uniform over the visited pairs,  (s', term) ~ P̂(·|s, a),  r = R̂(s, a)
                and apply the same update to them

so k planning updates follow every real one. k = 0 is ``qlearn``. Using the mean reward R̂(s, a)
in place of r(s, a, s') keeps the fixed point: Q*(s, a) = R̄(s, a) + γ Σ_s' P(s'|s, a) max Q*(s', ·).

"First time" is by replay index (:class:`learners.exploration.FirstSeen`): the model counts
each transition the workers wrote once, however often replay samples it. Truncated steps are
ordinary transitions to the model (a time limit is not part of the MDP).

``samples_model`` in the update result counts the k·B model transitions; ``samples_trained``
counts the B replay transitions only (the rate limiter's replay ratio is about replay).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tandem.core.errors import TandemError
from tandem.core.types import Batch, UpdateResult
from tandem.learners.exploration import FirstSeen
from tandem.learners.finite import checked
from tandem.learners.registry import AlgoSpec
from tandem.learners.tabular import (
    QLearnConfig,
    TabularTDLearner,
    batch_transitions,
    check_tabular_spaces,
    make_policy,
    q_learning_target,
)


class DynaConfigError(TandemError):
    pass


@dataclass
class DynaQConfig(QLearnConfig):
    """Dyna-Q: ``qlearn``'s fields (exploration, count bonus, step sizes) plus planning."""

    planning_steps: int = 5
    """k: model-sample sweeps of ``batch_size`` transitions after each real update (0: qlearn)."""
    planning_seed: int = 0
    """Seed of the planner's sampling of (s, a) and s'."""


# ----------------------------------------------------------------------------- the model


class TabularModel:
    """Counts for P̂(s', term | s, a) and running means for R̂(s, a), from real transitions.

    The joint counts are sparse: one sorted int64 key per distinct outcome,
    key = ((s·A + a)·S + s')·2 + term, with its count. Sampling s' for a pair is a binary
    search into the cumulative counts of that pair's run of keys, so the cost does not grow
    with S (Taxi's dense [S, A, S] table would be 1.5 M cells, mostly zero).
    """

    def __init__(self, num_states: int, num_actions: int):
        self.S, self.A = num_states, num_actions
        self.n = np.zeros((num_states, num_actions), dtype=np.int64)
        self.r_sum = np.zeros((num_states, num_actions), dtype=np.float64)
        self.keys = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self._cum = np.zeros(0, dtype=np.int64)

    def observe(self, s, a, r, s2, term) -> None:
        """Add real transitions ([B] arrays) to the counts and reward sums."""
        s, a, s2 = (np.asarray(x, np.int64).reshape(-1) for x in (s, a, s2))
        term = np.asarray(term, bool).reshape(-1).astype(np.int64)
        np.add.at(self.n, (s, a), 1)
        np.add.at(self.r_sum, (s, a), np.asarray(r, np.float64).reshape(-1))
        keys = ((s * self.A + a) * self.S + s2) * 2 + term
        uniq, inv = np.unique(np.concatenate([self.keys, keys]), return_inverse=True)
        self.counts = np.bincount(inv, weights=np.concatenate([self.counts, np.ones(len(keys))]))
        self.counts = self.counts.astype(np.int64)
        self.keys = uniq
        self._cum = np.cumsum(self.counts)

    def r_hat(self) -> np.ndarray:
        """R̂(s, a) = ΣR(s, a) / N(s, a) [S, A] (0 where unvisited)."""
        return np.divide(self.r_sum, self.n, out=np.zeros_like(self.r_sum), where=self.n > 0)

    def p_hat(self, s: int, a: int) -> tuple[np.ndarray, np.ndarray]:
        """P̂(s', term=0 | s, a) and P̂(s', term=1 | s, a), each [S] (zeros if unvisited)."""
        out = np.zeros((self.S, 2))
        lo = (s * self.A + a) * self.S * 2
        sel = (self.keys >= lo) & (self.keys < lo + self.S * 2)
        rel = self.keys[sel] - lo
        out[rel // 2, rel % 2] = self.counts[sel] / max(self.n[s, a], 1)
        return out[:, 0], out[:, 1]

    def sample_pairs(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(s, a) uniformly over the visited pairs (Dyna-Q's "previously observed")."""
        visited = np.flatnonzero(self.n.reshape(-1) > 0)
        flat = visited[rng.integers(0, len(visited), n)]
        return flat // self.A, flat % self.A

    def sample_next(self, s: np.ndarray, a: np.ndarray, rng: np.random.Generator):
        """(s', terminated) ~ P̂(·|s, a) for visited pairs, [B] each."""
        sa = s * self.A + a
        start = np.searchsorted(self.keys, sa * self.S * 2, side="left")
        before = np.where(start > 0, self._cum[np.maximum(start - 1, 0)], 0)
        target = before + (rng.random(len(sa)) * self.n[s, a]).astype(np.int64)
        idx = np.searchsorted(self._cum, target, side="right")
        key = self.keys[idx]
        return (key // 2) % self.S, (key % 2).astype(bool)

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "r_sum": self.r_sum, "keys": self.keys, "counts": self.counts}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.n = np.asarray(state["n"], np.int64).copy()
        self.r_sum = np.asarray(state["r_sum"], np.float64).copy()
        self.keys = np.asarray(state["keys"], np.int64).copy()
        self.counts = np.asarray(state["counts"], np.int64).copy()
        self._cum = np.cumsum(self.counts)


# ----------------------------------------------------------------------------- learner


class DynaQLearner(TabularTDLearner):
    """Replay-fed Q-learning plus k planning sweeps per update from a :class:`TabularModel`.

    The Q table, its TD step, weights and the table part of the checkpoint are ``qlearn``'s
    (:class:`TabularTDLearner`); this adds the model, the planner's RNG and ``samples_model``.
    """

    def __init__(self, num_states: int, num_actions: int, cfg: DynaQConfig):
        if cfg.planning_steps < 0:
            raise DynaConfigError(
                f"planning_steps must be >= 0 (got {cfg.planning_steps}): --set planning_steps=5"
            )
        super().__init__(num_states, num_actions, cfg, q_learning_target)
        self.model = TabularModel(num_states, num_actions)
        self.first_seen = FirstSeen()
        self.rng = np.random.default_rng(cfg.planning_seed)
        self.samples_model = 0

    def update(self, batch: Batch) -> UpdateResult:
        cfg = self.cfg
        s, a, r, s2, gamma = batch_transitions(batch, cfg.gamma)
        term = np.asarray(batch.terminated, dtype=bool)
        fresh = self.first_seen.new_rows(batch.indices, len(s))
        if fresh.any():
            self.model.observe(s[fresh], a[fresh], r[fresh], s2[fresh], term[fresh])
        td = self.td_step(s, a, r, s2, term, gamma, batch.weights)
        priorities = np.abs(td).astype(np.float32)

        r_hat = self.model.r_hat()
        plan_td2 = 0.0
        n_plan = len(s)
        for _ in range(cfg.planning_steps):
            ps, pa = self.model.sample_pairs(n_plan, self.rng)
            ps2, pterm = self.model.sample_next(ps, pa, self.rng)
            ptd = self.td_step(ps, pa, r_hat[ps, pa], ps2, pterm, cfg.gamma)
            plan_td2 += float(np.mean(ptd**2)) / cfg.planning_steps
        self.updates += 1
        model_samples = cfg.planning_steps * n_plan
        self.samples_model += model_samples
        return checked(
            UpdateResult(
                metrics={
                    "loss/td": float(np.mean(td**2)),
                    "loss/td_model": plan_td2,
                    "stats/q_mean": float(self.q[s, a].mean()),
                    "stats/q_max": float(self.q.max()),
                    "stats/pairs_visited": float((self.model.n > 0).sum()),
                    "stats/model_transitions": float(self.model.n.sum()),
                    "stats/model_outcomes": float(len(self.model.keys)),
                },
                grad_steps=1 + cfg.planning_steps,
                samples_trained=len(s),
                priorities=priorities,
                samples_model=model_samples,
            ),
            batch,
            self.updates,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "samples_model": self.samples_model,
            "model": {k: torch.as_tensor(v) for k, v in self.model.state_dict().items()},
            "first_seen": torch.as_tensor(self.first_seen.state_dict()["seen"]),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.samples_model = int(state["samples_model"])
        self.model.load_state_dict({k: np.asarray(v) for k, v in state["model"].items()})
        self.first_seen.load_state_dict({"seen": np.asarray(state["first_seen"])})
        self.rng.bit_generator.state = state["rng"]


def make_learner(obs_space, act_space, cfg: DynaQConfig) -> DynaQLearner:
    return DynaQLearner(int(obs_space.n), int(act_space.n), cfg)


SPEC = AlgoSpec(
    name="dynaq",
    config_cls=DynaQConfig,
    on_policy=False,
    make_policy=make_policy,
    make_learner=make_learner,
    check_spaces=check_tabular_spaces,
)
