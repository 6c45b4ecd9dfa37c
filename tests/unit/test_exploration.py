"""SimHash count bonus: codes and bonus numbers by hand, first-sight counting, the DQN hook."""

from __future__ import annotations

import io
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.core.types import Batch
from tandem.learners.dqn import DQNConfig, DQNLearner
from tandem.learners.exploration import (
    CountBonus,
    ExplorationConfigError,
    FirstSeen,
    SimHashConfig,
    SimHashCounter,
    count_bonus,
    simhash_codes,
    with_bonus,
)


def test_simhash_codes_by_hand():
    projection = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    feats = np.array([[1.0, 2.0], [-1.0, 2.0], [-1.0, -2.0], [3.0, -1.0]])
    # signs of (x, y, x + y) -> bits 0, 1, 2
    assert simhash_codes(feats, projection).tolist() == [0b111, 0b110, 0b000, 0b101]


def test_count_bonus_numbers():
    np.testing.assert_allclose(count_bonus(np.array([0, 1, 4, 100]), beta=0.5), [0.5, 0.5, 0.25, 0.05])


def test_counter_rescales_the_box_and_counts_nearby_states_together():
    box = gym.spaces.Box(np.array([-1.2, -0.07], np.float32), np.array([0.6, 0.07], np.float32))
    counter = SimHashCounter(2, SimHashConfig(bits=16, beta=1.0, seed=3), box.low, box.high)
    s = np.array([[-0.5, 0.0]])
    counter.observe(np.repeat(s, 3, axis=0))
    counter.observe(s + np.array([[1e-6, 1e-7]]))  # the same cell
    assert counter.counts(s).tolist() == [4]
    assert counter.bonus(s) == pytest.approx([0.5])
    # velocity alone separates these two after rescaling (it would not at raw scale)
    fast = np.array([[-0.5, 0.06], [-0.5, -0.06]])
    assert len(set(counter.codes(fast).tolist())) == 2
    assert counter.counts(fast).tolist() == [0, 0]
    # a 2-D box is cut into many cells, not 2k angular sectors
    grid = np.stack(np.meshgrid(np.linspace(-1.2, 0.6, 40), np.linspace(-0.07, 0.07, 40)), -1).reshape(-1, 2)
    assert len(np.unique(counter.codes(grid))) > 2 * 16  # 53 measured with this seed


def test_first_seen_counts_each_replay_index_once():
    f = FirstSeen()
    assert f.new_rows(np.array([3, 5, 3]), 3).tolist() == [True, True, False]
    assert f.new_rows(np.array([5, 5000, 3]), 3).tolist() == [False, True, False]
    assert f.new_rows(None, 2).tolist() == [True, True]  # a hand-built batch: all new
    clone = FirstSeen()
    clone.load_state_dict(f.state_dict())
    assert clone.new_rows(np.array([5000, 6]), 2).tolist() == [False, True]


def box_batch(next_obs, indices) -> Batch:
    n = len(next_obs)
    return Batch(
        obs=np.zeros((n, 2), np.float32),
        actions=np.zeros(n, np.int64),
        rewards=np.full(n, -1.0, np.float32),
        next_obs=np.asarray(next_obs, np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        indices=np.asarray(indices, np.int64),
    )


def test_bonus_counts_visits_not_samples():
    space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    bonus = CountBonus(space, SimHashConfig(bits=32, beta=0.3))
    a, b = [0.5, 0.5], [-0.5, 0.2]
    out = bonus(np.array([a, a, b]), np.array([0, 1, 2]))  # a visited twice, b once
    np.testing.assert_allclose(out, [0.3 / np.sqrt(2), 0.3 / np.sqrt(2), 0.3])
    out = bonus(np.array([a, b, b]), np.array([0, 2, 2]))  # resampled: no new visits
    np.testing.assert_allclose(out, [0.3 / np.sqrt(2), 0.3, 0.3])
    r, metrics = with_bonus(bonus, box_batch([a, b], [1, 3]), torch.tensor([-1.0, -1.0]))
    # row 0: index 1 already counted; row 1: index 3 is b's second visit
    np.testing.assert_allclose(r.numpy(), [-1 + 0.3 / np.sqrt(2), -1 + 0.3 / np.sqrt(2)], rtol=1e-6)
    assert metrics["stats/bonus_mean"] == pytest.approx(0.3 / np.sqrt(2))
    assert with_bonus(None, box_batch([a], [9]), torch.tensor([-1.0]))[1] == {}


def test_discrete_states_hash_through_one_hot():
    bonus = CountBonus(gym.spaces.Discrete(5), SimHashConfig(bits=24, beta=1.0))
    out = bonus(np.array([2, 2, 2, 2, 4]), None)
    np.testing.assert_allclose(out, [0.5, 0.5, 0.5, 0.5, 1.0])


def test_dqn_trains_on_the_bonus_and_the_replay_keeps_raw_rewards():
    obs_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    act_space = gym.spaces.Discrete(3)
    base = DQNConfig(hidden=(8,), n_step=1, double_q=False, dueling=False, prioritized=False)
    rng = np.random.default_rng(0)
    nxt = rng.uniform(-1, 1, (16, 2))
    batch = box_batch(nxt, np.arange(16))
    torch.manual_seed(0)
    plain = DQNLearner(obs_space, act_space, replace(base, exploration_bonus="none"))
    torch.manual_seed(0)
    bonused = DQNLearner(obs_space, act_space, replace(base, exploration_bonus="count", bonus_beta=2.0))
    m_plain, m_bonus = plain.update(batch).metrics, bonused.update(batch).metrics
    assert "stats/bonus_mean" not in m_plain
    # each of 16 uniform points is alone in its cell or nearly: the mean bonus is near β
    assert 1.0 < m_bonus["stats/bonus_mean"] <= 2.0
    assert m_bonus["stats/target_mean"] == pytest.approx(
        m_plain["stats/target_mean"] + m_bonus["stats/bonus_mean"]
    )
    np.testing.assert_array_equal(batch.rewards, -1.0)
    buf = io.BytesIO()
    torch.save(bonused.state_dict(), buf)
    buf.seek(0)
    clone = DQNLearner(obs_space, act_space, replace(base, exploration_bonus="count", bonus_beta=2.0))
    clone.load_state_dict(torch.load(buf, weights_only=True))
    assert clone.bonus.counter.table == bonused.bonus.counter.table
    assert clone.bonus.first_seen.new_rows(np.arange(16), 16).sum() == 0


def test_unknown_bonus_is_a_one_line_error():
    with pytest.raises(ExplorationConfigError, match="exploration_bonus"):
        DQNLearner(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), DQNConfig(exploration_bonus="rnd"))


def test_sac_adds_the_bonus_to_its_critic_target():
    from tandem.learners.sac import SACConfig, SACLearner

    obs_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    base = SACConfig(hidden=(8,), prioritized=False)
    rng = np.random.default_rng(1)
    batch = replace(
        box_batch(rng.uniform(-1, 1, (16, 2)), np.arange(16)), actions=np.zeros((16, 1), np.float32)
    )
    torch.manual_seed(0)
    plain = SACLearner(obs_space, act_space, base)
    torch.manual_seed(0)
    bonused = SACLearner(obs_space, act_space, replace(base, exploration_bonus="count", bonus_beta=2.0))
    torch.manual_seed(1)
    m_plain = plain.update(batch).metrics
    torch.manual_seed(1)
    m_bonus = bonused.update(batch).metrics
    assert "stats/bonus_mean" not in m_plain
    assert m_bonus["stats/target_mean"] == pytest.approx(
        m_plain["stats/target_mean"] + m_bonus["stats/bonus_mean"], rel=1e-5
    )
