"""Dyna-Q: the learned model's counts and means by hand, and planning to Q* of a known MDP."""

from __future__ import annotations

import io
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.core.types import Batch, UpdateResult
from tandem.learners.dynaq import DynaConfigError, DynaQConfig, DynaQLearner, TabularModel
from tandem.learners.registry import get_algo
from tandem.learners.tabular import value_iteration


def batch(s, a, r, s2, term, indices=None) -> Batch:
    n = len(s)
    return Batch(
        obs=np.asarray(s, np.int64),
        actions=np.asarray(a, np.int64),
        rewards=np.asarray(r, np.float32),
        next_obs=np.asarray(s2, np.int64),
        terminated=np.asarray(term, bool),
        truncated=np.zeros(n, bool),
        indices=None if indices is None else np.asarray(indices, np.int64),
    )


def test_model_counts_and_means_by_hand():
    m = TabularModel(num_states=4, num_actions=2)
    m.observe(s=[0, 0, 0, 1], a=[1, 1, 1, 0], r=[1.0, 3.0, 2.0, -1.0], s2=[2, 3, 2, 0], term=[0, 0, 1, 0])
    assert m.n[0, 1] == 3 and m.n[1, 0] == 1 and m.n.sum() == 4
    assert m.r_hat()[0, 1] == pytest.approx(2.0)
    assert m.r_hat()[1, 0] == pytest.approx(-1.0)
    assert m.r_hat()[2, 0] == 0.0  # unvisited
    cont, end = m.p_hat(0, 1)
    np.testing.assert_allclose(cont, [0, 0, 1 / 3, 1 / 3])
    np.testing.assert_allclose(end, [0, 0, 1 / 3, 0])
    # a second observation of the same outcome adds to its count, not a new key
    m.observe(s=[0], a=[1], r=[6.0], s2=[3], term=[0])
    cont, end = m.p_hat(0, 1)
    np.testing.assert_allclose(cont, [0, 0, 0.25, 0.5])
    np.testing.assert_allclose(end, [0, 0, 0.25, 0])
    assert m.r_hat()[0, 1] == pytest.approx(3.0)
    assert len(m.keys) == 4


def test_model_samples_follow_the_counts():
    m = TabularModel(num_states=5, num_actions=2)
    # (0, 1): s'=2 once, s'=3 three times; (4, 0): always s'=1, terminal
    m.observe(s=[0, 0, 0, 0, 4], a=[1, 1, 1, 1, 0], r=[0] * 5, s2=[2, 3, 3, 3, 1], term=[0, 0, 0, 0, 1])
    rng = np.random.default_rng(0)
    n = 40_000
    s2, term = m.sample_next(np.zeros(n, np.int64), np.ones(n, np.int64), rng)
    assert set(np.unique(s2)) == {2, 3} and not term.any()
    assert np.mean(s2 == 3) == pytest.approx(0.75, abs=0.01)
    s2, term = m.sample_next(np.full(10, 4), np.zeros(10, np.int64), rng)
    assert (s2 == 1).all() and term.all()
    ps, pa = m.sample_pairs(n, rng)
    assert set(zip(ps.tolist(), pa.tolist(), strict=True)) == {(0, 1), (4, 0)}
    assert np.mean(ps == 0) == pytest.approx(0.5, abs=0.01)  # uniform over visited pairs


def test_each_replayed_transition_enters_the_model_once():
    learner = DynaQLearner(4, 2, DynaQConfig(planning_steps=0))
    b = batch([0, 1, 0], [1, 0, 1], [1.0, 0.0, 1.0], [1, 2, 1], [0, 0, 0], indices=[7, 8, 7])
    learner.update(b)
    assert learner.model.n[0, 1] == 1 and learner.model.n[1, 0] == 1  # index 7 twice in a batch: once
    learner.update(b)  # the same replay rows sampled again
    assert learner.model.n.sum() == 2
    learner.update(batch([0], [1], [5.0], [3], [1], indices=[9]))
    assert learner.model.n[0, 1] == 2 and learner.model.r_hat()[0, 1] == pytest.approx(3.0)


def test_update_result_counts_model_samples():
    learner = DynaQLearner(4, 2, DynaQConfig(planning_steps=5))
    res = learner.update(batch([0, 1, 2], [1, 0, 1], [1.0, 0.0, 1.0], [1, 2, 3], [0, 0, 1]))
    assert isinstance(res, UpdateResult)
    assert (res.samples_trained, res.samples_model, res.grad_steps) == (3, 15, 6)
    assert res.priorities is not None and res.priorities.shape == (3,)
    assert {"loss/td", "loss/td_model", "stats/pairs_visited"} <= set(res.metrics)


def deterministic_lake():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    P = env.unwrapped.P
    rows = [(s, a, *P[s][a][0][1:]) for s in range(16) for a in range(4)]
    assert all(len(P[s][a]) == 1 for s in range(16) for a in range(4))
    s, a, s2, r, term = (np.array(x) for x in zip(*rows, strict=True))
    return P, s, a, r, s2, term


def dyna_error(k: int, updates: int) -> float:
    """max |Q - Q*| after ``updates`` replay batches of 16 from the 64 real transitions."""
    P, s, a, r, s2, term = deterministic_lake()
    q_star = value_iteration(P, 16, 4, gamma=0.9)
    cfg = DynaQConfig(gamma=0.9, lr=0.5, lr_count_power=0.0, planning_steps=k, planning_seed=1)
    learner = DynaQLearner(16, 4, cfg)
    rng = np.random.default_rng(0)
    for _ in range(updates):
        i = rng.integers(0, 64, 16)
        learner.update(batch(s[i], a[i], r[i], s2[i], term[i], indices=i))
    return float(np.abs(learner.q - q_star).max())


def test_planning_converges_to_value_iteration_q_star():
    """Q* of the deterministic 4x4 lake (γ = 0.9): k = 50 planning sweeps reach it within 0.01
    from 30 replay batches; the same 30 batches without planning (k = 0) do not."""
    assert dyna_error(k=50, updates=30) < 0.01
    assert dyna_error(k=0, updates=30) > 0.05


def test_negative_planning_steps_is_a_one_line_error():
    with pytest.raises(DynaConfigError, match="planning_steps"):
        DynaQLearner(4, 2, DynaQConfig(planning_steps=-1))


def test_registered_and_checkpoint_round_trip():
    spec = get_algo("dynaq")
    obs, act = gym.spaces.Discrete(16), gym.spaces.Discrete(4)
    assert spec.check_spaces(gym.spaces.Box(-1, 1, (2,)), act) is not None
    cfg = replace(spec.config_cls(), planning_steps=3)
    learner = spec.make_learner(obs, act, cfg)
    P, s, a, r, s2, term = deterministic_lake()
    learner.update(batch(s, a, r, s2, term, indices=np.arange(64)))
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    clone = spec.make_learner(obs, act, cfg)
    clone.load_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(clone.q, learner.q)
    np.testing.assert_array_equal(clone.model.keys, learner.model.keys)
    b = batch(s[:8], a[:8], r[:8], s2[:8], term[:8], indices=np.arange(8))
    learner.update(b)
    clone.update(b)  # same rng state and same seen set: the same planning samples
    np.testing.assert_array_equal(clone.q, learner.q)
    assert clone.model.n.sum() == 64
    policy = spec.make_policy(obs, act, cfg)
    policy.set_weights(learner.get_weights(), 1)
    actions, _ = policy.act(np.array([0, 5]), explore=True)
    assert actions.shape == (2,)
