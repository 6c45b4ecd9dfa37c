"""DQN: targets on a hand-made batch (terminated vs truncated), n-step folding, heads, exploration."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.agents.q import QNetwork, apex_epsilon, epsilon_greedy
from tandem.core.schedules import linear_schedule
from tandem.core.types import Batch, Rollout
from tandem.learners import dqn
from tandem.learners.dqn import DQNConfig, DQNLearner, dqn_next_values, fold_n_step
from tandem.learners.registry import get_algo

OBS = gym.spaces.Discrete(3)  # one-hot inputs: a linear Q network is a table
ACT = gym.spaces.Discrete(2)


def table_learner(table: np.ndarray, **kw) -> DQNLearner:
    """A DQN learner whose online and target nets compute Q(s, ·) = table[s] (no hidden layer)."""
    learner = DQNLearner(OBS, ACT, DQNConfig(hidden=(), dueling=False, **kw))
    with torch.no_grad():
        for net in (learner.q, learner.q_target):
            net.net[0].weight.copy_(torch.as_tensor(table.T, dtype=torch.float32))
            net.net[0].bias.zero_()
    return learner


def test_next_values_plain_and_double():
    q_target = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    q_online = torch.tensor([[9.0, 0.0], [0.0, 9.0]])
    torch.testing.assert_close(dqn_next_values(q_target), torch.tensor([5.0, 3.0]))
    torch.testing.assert_close(dqn_next_values(q_target, q_online), torch.tensor([1.0, 2.0]))


def test_dqn_target_bootstraps_after_truncation_not_termination():
    table = np.array([[0.0, 1.0], [2.0, 4.0], [0.5, 0.5]])
    learner = table_learner(table, gamma=0.5)
    batch = Batch(
        obs=np.array([0, 0, 0, 2]),
        actions=np.array([1, 1, 1, 0]),
        rewards=np.array([1.0, 1.0, 1.0, 0.0], np.float32),
        next_obs=np.array([1, 1, 1, 1]),
        terminated=np.array([False, True, False, False]),
        truncated=np.array([False, False, True, False]),
    )
    result = learner.update(batch)
    # y = r + γ (1 - terminated) Q(s'=1, argmax) = 1 + 0.5 * 4 (ordinary and truncated), 1 (terminated)
    y = np.array([3.0, 1.0, 3.0, 2.0])
    q = np.array([1.0, 1.0, 1.0, 0.5])
    np.testing.assert_allclose(result.priorities, np.abs(y - q), rtol=1e-6)
    assert (result.grad_steps, result.samples_trained) == (1, 4)


def test_n_step_discount_extra_replaces_gamma():
    table = np.array([[0.0, 1.0], [2.0, 4.0], [0.5, 0.5]])
    learner = table_learner(table, gamma=0.99)
    batch = Batch(
        obs=np.array([0]),
        actions=np.array([0]),
        rewards=np.array([1.5], np.float32),
        next_obs=np.array([1]),
        terminated=np.array([False]),
        truncated=np.array([False]),
        extras={"discount": np.array([0.25], np.float32)},
    )
    result = learner.update(batch)
    np.testing.assert_allclose(result.priorities, [1.5 + 0.25 * 4.0], rtol=1e-6)


def test_huber_loss_and_importance_weights():
    table = np.zeros((3, 2))
    learner = table_learner(table, gamma=0.0, huber_delta=1.0)
    batch = Batch(
        obs=np.array([0, 1]),
        actions=np.array([0, 0]),
        rewards=np.array([3.0, 0.5], np.float32),
        next_obs=np.array([0, 0]),
        terminated=np.array([False, False]),
        truncated=np.array([False, False]),
        weights=np.array([2.0, 1.0], np.float32),
    )
    metrics = learner.update(batch).metrics
    # Huber(3) = 3 - 0.5 = 2.5 weighted by 2; Huber(0.5) = 0.125
    assert metrics["loss/q"] == pytest.approx((2 * 2.5 + 0.125) / 2)
    zero = table_learner(table)
    before = zero.q.net[0].weight.detach().clone()
    zero.update(Batch(**{**batch.__dict__, "weights": np.zeros(2, np.float32)}))
    torch.testing.assert_close(zero.q.net[0].weight.detach(), before)


def test_target_network_follows_every_interval():
    learner = DQNLearner(gym.spaces.Box(-1, 1, (4,)), ACT, DQNConfig(hidden=(8,), target_update_interval=3))
    rng = np.random.default_rng(0)
    batch = Batch(
        obs=rng.normal(size=(16, 4)).astype(np.float32),
        actions=rng.integers(0, 2, 16),
        rewards=rng.normal(size=16).astype(np.float32),
        next_obs=rng.normal(size=(16, 4)).astype(np.float32),
        terminated=np.zeros(16, bool),
        truncated=np.zeros(16, bool),
    )
    w0 = next(learner.q_target.parameters()).detach().clone()
    learner.update(batch)
    learner.update(batch)
    torch.testing.assert_close(next(learner.q_target.parameters()).detach(), w0)
    learner.update(batch)
    torch.testing.assert_close(
        next(learner.q_target.parameters()).detach(), next(learner.q.parameters()).detach()
    )


def test_fold_n_step_by_hand():
    # one env, T = 5: rewards 1..5, terminated at t=1, truncated at t=3
    T = 5
    obs = np.arange(T, dtype=np.float32).reshape(T, 1, 1)
    rollout = Rollout(
        obs=obs,
        actions=np.zeros((T, 1), np.int64),
        rewards=np.arange(1, T + 1, dtype=np.float32).reshape(T, 1),
        next_obs=obs + 100,
        terminated=np.array([[False], [True], [False], [False], [False]]),
        truncated=np.array([[False], [False], [False], [True], [False]]),
        extras={},
        episode_returns=np.zeros(0),
        episode_lengths=np.zeros(0),
        policy_version=0,
    )
    b = fold_n_step(rollout, gamma=0.5, n=3)
    # t=0: r0 + γ r1, terminated inside the window, m=2
    # t=2: r2 + γ r3, window stops at the truncation, bootstrap from next_obs[3], m=2
    # t=4: r4 only: the fragment ends, bootstrap from next_obs[4], m=1
    np.testing.assert_allclose(b.rewards, [1 + 0.5 * 2, 2, 3 + 0.5 * 4, 4, 5])
    np.testing.assert_allclose(b.extras["discount"], [0.25, 0.5, 0.25, 0.5, 0.5])
    assert b.terminated.tolist() == [True, True, False, False, False]
    assert b.truncated.tolist() == [False, False, True, True, False]
    np.testing.assert_allclose(b.next_obs[:, 0], [101, 101, 103, 103, 104])
    np.testing.assert_allclose(b.obs[:, 0], np.arange(T))
    assert dqn.to_replay(rollout, DQNConfig(n_step=1)).extras == {}
    assert len(dqn.to_replay(rollout, DQNConfig(n_step=3))) == T


def test_dueling_head_decomposes_q():
    torch.manual_seed(0)
    net = QNetwork(4, 3, (16,), dueling=True)
    x = torch.randn(5, 4)
    q = net(x)
    h = net.trunk(x)
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), net.value(h))
    assert q.shape == (5, 3)


def test_exploration_schedules():
    assert linear_schedule(1.0, 0.1, 0.0, 0.5) == 1.0
    assert linear_schedule(1.0, 0.1, 0.25, 0.5) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 0.9, 0.5) == pytest.approx(0.1)
    assert apex_epsilon(0.4, 7.0, 0, 8) == pytest.approx(0.4)
    assert apex_epsilon(0.4, 7.0, 7, 8) == pytest.approx(0.4**8)
    assert apex_epsilon(0.4, 7.0, 0, 1) == pytest.approx(0.4)
    rng = np.random.default_rng(0)
    q = np.array([[0.0, 1.0, 0.0]] * 4000)
    assert (epsilon_greedy(q, 0.0, rng) == 1).all()
    frac_random = np.mean(epsilon_greedy(q, 0.3, rng) != 1)
    assert frac_random == pytest.approx(0.3 * 2 / 3, abs=0.03)
    ties = epsilon_greedy(np.zeros((4000, 2)), 0.0, rng)
    assert 0.45 < ties.mean() < 0.55


def test_policy_anneals_and_apex_epsilons_are_fixed():
    spec = get_algo("dqn")
    cfg = DQNConfig(hidden=(8,), epsilon_start=1.0, epsilon_end=0.1, exploration_fraction=0.5)
    policy = spec.make_policy(gym.spaces.Box(-1, 1, (4,)), ACT, cfg)
    policy.set_progress(0.25)
    assert policy.epsilon == pytest.approx(0.55)
    apex = DQNConfig(hidden=(8,), apex=True, apex_epsilon=0.4, apex_alpha=7.0)
    eps = [spec.make_policy(OBS, ACT, apex, worker_index=i, num_workers=4).epsilon for i in range(4)]
    np.testing.assert_allclose(eps, [0.4 ** (1 + 7 * i / 3) for i in range(4)])
    p = spec.make_policy(OBS, ACT, apex, worker_index=3, num_workers=4)
    p.set_progress(0.9)
    assert p.epsilon == pytest.approx(0.4**8)
    learner = spec.make_learner(OBS, ACT, apex)
    p.set_weights(learner.get_weights(), 1)
    actions, extras = p.act(np.array([0, 1, 2]), explore=False)
    assert actions.dtype == np.int64 and extras == {}
    expected = learner.q(torch.eye(3)).argmax(1).numpy()
    np.testing.assert_array_equal(actions, expected)


def test_learning_rate_decays_to_lr_final_over_the_budget():
    spec = get_algo("dqn")
    constant = spec.make_learner(OBS, ACT, DQNConfig(hidden=(8,), lr=1e-3))
    constant.set_progress(0.5)
    assert constant.optim.param_groups[0]["lr"] == 1e-3
    decayed = spec.make_learner(OBS, ACT, DQNConfig(hidden=(8,), lr=1e-3, lr_final=1e-4))
    for progress, lr in [(0.0, 1e-3), (0.5, 5.5e-4), (1.0, 1e-4), (1.3, 1e-4)]:
        decayed.set_progress(progress)
        assert decayed.optim.param_groups[0]["lr"] == pytest.approx(lr)


def test_state_dict_round_trip_with_weights_only_and_spaces():
    spec = get_algo("dqn")
    cfg = DQNConfig(hidden=(8,), dueling=True, n_step=3)
    learner = spec.make_learner(OBS, ACT, cfg)
    batch = Batch(
        obs=np.array([0, 1, 2]),
        actions=np.array([0, 1, 0]),
        rewards=np.ones(3, np.float32),
        next_obs=np.array([1, 2, 0]),
        terminated=np.array([False, True, False]),
        truncated=np.zeros(3, bool),
    )
    learner.update(batch)
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    other = spec.make_learner(OBS, ACT, cfg)
    other.load_state_dict(torch.load(buf, weights_only=True))
    assert other.updates == 1
    assert other.update(batch).metrics == learner.update(batch).metrics
    assert spec.check_spaces(gym.spaces.Box(-1, 1, (4,)), ACT) is None
    assert "Discrete action" in spec.check_spaces(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)))


def test_dueling_without_a_hidden_layer_is_a_one_line_error():
    from tandem.core.errors import TandemError

    with pytest.raises(TandemError, match="dueling heads need a hidden layer"):
        QNetwork(4, 2, (), dueling=True)


def test_linear_schedule_defaults_to_the_whole_run_and_clamps():
    assert linear_schedule(3e-4, 0.0, 0.5) == pytest.approx(1.5e-4)
    assert linear_schedule(3e-4, 0.0, 1.7) == 0.0
    assert linear_schedule(0.2, 0.0, -0.1) == 0.2
    assert linear_schedule(1.0, 0.1, 0.3, duration=0.0) == 0.1
