"""Tabular Q-learning and policy evaluation against exact solutions from the toy-text model P."""

from __future__ import annotations

import io
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.core.types import Batch
from tandem.learners import tabular, tabular_eval
from tandem.learners.registry import get_algo
from tandem.learners.tabular import QLearnConfig, q_learning_target, tabular_td_step, value_iteration
from tandem.learners.tabular_eval import QEvalConfig, policy_q_values, policy_table


def model(slippery: bool):
    env = gym.make("FrozenLake-v1", is_slippery=slippery)
    return env.unwrapped.P, env.observation_space, env.action_space


def sample_from_model(P, rng: np.random.Generator, n: int, num_states=16, num_actions=4) -> Batch:
    """n transitions with (s, a) uniform over all pairs and s' ~ p(.|s, a) from the model."""
    width = max(len(P[s][a]) for s in range(num_states) for a in range(num_actions))
    table = np.zeros((num_states, num_actions, width, 4))  # (prob, s', r, terminated), zero-padded
    for s in range(num_states):
        for a in range(num_actions):
            table[s, a, : len(P[s][a])] = P[s][a]
    s = rng.integers(0, num_states, n)
    a = rng.integers(0, num_actions, n)
    cdf = table[s, a, :, 0].cumsum(axis=1)
    k = np.minimum((rng.random((n, 1)) > cdf).sum(axis=1), width - 1)
    _, s2, r, term = table[s, a, k].T
    return Batch(
        obs=s,
        actions=a,
        rewards=r.astype(np.float32),
        next_obs=s2.astype(np.int64),
        terminated=term.astype(bool),
        truncated=np.zeros(n, bool),
    )


def test_value_iteration_known_values():
    P, _, _ = model(slippery=False)
    q = value_iteration(P, 16, 4, 0.9)
    # One step right of the goal from state 14: reward 1 and the episode ends.
    assert q[14, 2] == pytest.approx(1.0)
    assert q[10, 1] == pytest.approx(0.9)  # down to 14, then right
    assert q[5].max() == 0.0  # a hole is terminal


def test_qlearning_converges_to_qstar_not_slippery():
    P, obs_space, act_space = model(slippery=False)
    qstar = value_iteration(P, 16, 4, 0.9)
    cfg = QLearnConfig(gamma=0.9, lr=0.5, lr_count_power=0.0)
    learner = tabular.make_learner(obs_space, act_space, cfg)
    rng = np.random.default_rng(0)
    for _ in range(400):
        learner.update(sample_from_model(P, rng, 64))
    assert np.abs(learner.q - qstar).max() < 0.01


def test_qlearning_converges_on_slippery_with_decaying_step():
    """Stochastic transitions need a decaying α (Robbins-Monro): the count schedule gives it."""
    P, obs_space, act_space = model(slippery=True)
    qstar = value_iteration(P, 16, 4, 0.9)
    cfg = QLearnConfig(gamma=0.9, lr=0.0, lr_count_power=0.7)
    learner = tabular.make_learner(obs_space, act_space, cfg)
    rng = np.random.default_rng(0)
    for _ in range(3000):
        learner.update(sample_from_model(P, rng, 256))
    assert np.abs(learner.q - qstar).max() < 0.02


@pytest.mark.parametrize("slippery", [False, True])
def test_policy_evaluation_converges_to_analytic_q_pi(slippery):
    P, obs_space, act_space = model(slippery)
    lr, power, iters = (0.5, 0.0, 600) if not slippery else (0.0, 0.7, 3000)
    cfg = QEvalConfig(gamma=0.9, lr=lr, lr_count_power=power)
    pi = policy_table("uniform", 16, 4)
    q_pi = policy_q_values(P, pi, 0.9)
    learner = tabular_eval.make_learner(obs_space, act_space, cfg)
    rng = np.random.default_rng(1)
    for _ in range(iters):
        learner.update(sample_from_model(P, rng, 256))
    assert np.abs(learner.q - q_pi).max() < (0.01 if not slippery else 0.02)


def test_policy_q_values_matches_iterative_evaluation_for_a_given_table(tmp_path):
    P, obs_space, act_space = model(slippery=True)
    actions = np.random.default_rng(0).integers(0, 4, 16)
    path = tmp_path / "pi.npy"
    np.save(path, actions)
    pi = policy_table(str(path), 16, 4)
    assert pi.shape == (16, 4) and (pi.argmax(1) == actions).all()
    exact = policy_q_values(P, pi, 0.95)
    q = np.zeros((16, 4))
    backup = tabular_eval.expectation_target(pi)
    states, acts = np.divmod(np.arange(64), 4)
    for _ in range(400):  # synchronous expected backup with the model's expectation
        new = np.zeros_like(q)
        for s, a in zip(states, acts, strict=True):
            for p, s2, r, done in P[s][a]:
                new[s, a] += p * backup(q, np.array([r]), np.array([s2]), np.array([done]), 0.95)[0]
        q = new
    np.testing.assert_allclose(q, exact, atol=1e-6)
    # the spec builds a learner evaluating that table
    cfg = QEvalConfig(target_policy=str(path))
    assert tabular_eval.make_learner(obs_space, act_space, cfg).q.shape == (16, 4)


def test_target_bootstraps_after_truncation_not_after_termination():
    q = np.array([[0.0, 0.0], [2.0, 5.0]])
    r = np.array([1.0, 1.0, 1.0])
    s2 = np.array([1, 1, 1])
    term = np.array([False, True, False])
    y = q_learning_target(q, r, s2, term, np.array([0.5, 0.5, 0.25]))
    # row 0: a truncated or ordinary step bootstraps; row 1: terminated does not; row 2: n-step γ^m
    np.testing.assert_allclose(y, [1.0 + 0.5 * 5.0, 1.0, 1.0 + 0.25 * 5.0])


def test_td_step_averages_duplicates_and_applies_importance_weights():
    q = np.zeros((2, 2))
    counts = np.zeros((2, 2), np.int64)
    td = tabular_td_step(q, counts, np.array([0, 0, 1]), np.array([1, 1, 0]), np.array([1.0, 3.0, 4.0]), 0.5)
    np.testing.assert_allclose(td, [1.0, 3.0, 4.0])
    assert q[0, 1] == pytest.approx(0.5 * 2.0)  # one step toward the mean target of the pair
    assert q[1, 0] == pytest.approx(2.0)
    assert counts.tolist() == [[0, 1], [1, 0]]
    q2 = np.zeros((2, 2))
    tabular_td_step(q2, counts, np.array([0]), np.array([0]), np.array([1.0]), 0.5, weights=np.array([0.0]))
    assert q2[0, 0] == 0.0


def test_count_schedule_step_size():
    q, counts = np.zeros((1, 1)), np.zeros((1, 1), np.int64)
    for _ in range(3):  # α = n^-1 averages the targets: the running mean
        tabular_td_step(
            q, counts, np.array([0]), np.array([0]), np.array([float(counts[0, 0] + 1)]), 0.0, 1.0
        )
    assert q[0, 0] == pytest.approx((1 + 2 + 3) / 3)


def test_discount_extra_is_used():
    P, obs_space, act_space = model(slippery=False)
    learner = tabular.make_learner(obs_space, act_space, QLearnConfig(lr=1.0, lr_count_power=0.0))
    learner.q[1] = [0.0, 4.0, 0.0, 0.0]
    batch = Batch(
        obs=np.array([0]),
        actions=np.array([2]),
        rewards=np.array([0.5], np.float32),
        next_obs=np.array([1]),
        terminated=np.array([False]),
        truncated=np.array([True]),
        extras={"discount": np.array([0.25], np.float32)},
        weights=np.array([1.0], np.float32),
    )
    result = learner.update(batch)
    assert learner.q[0, 2] == pytest.approx(0.5 + 0.25 * 4.0)
    assert result.priorities.tolist() == [pytest.approx(1.5)]
    assert {"loss/td", "stats/q_mean"} <= result.metrics.keys()
    assert (result.grad_steps, result.samples_trained) == (1, 1)


def test_count_bonus_policy_tries_every_action_then_follows_q():
    _, obs_space, act_space = model(slippery=False)
    policy = tabular.make_policy(obs_space, act_space, QLearnConfig(exploration="count", bonus_c=0.1))
    first = [int(policy.act(np.array([3]), explore=True)[0][0]) for _ in range(4)]
    assert sorted(first) == [0, 1, 2, 3]
    q = np.zeros((16, 4), np.float32)
    q[3, 2] = 1.0
    policy.set_weights({"q": q}, 1)
    assert all(int(policy.act(np.array([3]), explore=True)[0][0]) == 2 for _ in range(20))
    assert policy.visits[3].sum() == 24
    assert policy.act(np.array([3, 3]), explore=False)[0].tolist() == [2, 2]


def test_epsilon_policy_anneals_with_progress():
    _, obs_space, act_space = model(slippery=False)
    cfg = QLearnConfig(exploration="epsilon", epsilon_start=1.0, epsilon_end=0.0, exploration_fraction=0.5)
    policy = tabular.make_policy(obs_space, act_space, cfg)
    q = np.zeros((16, 4), np.float32)
    q[:, 1] = 1.0
    policy.set_weights({"q": q}, 1)
    policy.set_progress(0.25)
    assert policy.epsilon == pytest.approx(0.5)
    policy.set_progress(0.9)
    assert (policy.act(np.zeros(100, np.int64), explore=True)[0] == 1).all()


def test_behavior_policy_samples_the_target_table():
    _, obs_space, act_space = model(slippery=False)
    cfg = replace(QEvalConfig(), behavior="target")
    policy = tabular_eval.make_policy(obs_space, act_space, cfg)
    actions, _ = policy.act(np.zeros(4000, np.int64), explore=True)
    np.testing.assert_allclose(np.bincount(actions, minlength=4) / 4000, 0.25, atol=0.03)


def test_spaces_checked_and_state_dict_loads_with_weights_only():
    spec = get_algo("qlearn")
    assert get_algo("qeval").check_spaces(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    msg = spec.check_spaces(gym.spaces.Discrete(4), gym.spaces.Box(-1, 1, (1,)))
    assert "Discrete observations and actions" in msg
    assert spec.check_spaces(gym.spaces.Discrete(16), gym.spaces.Discrete(4)) is None
    _, obs_space, act_space = model(slippery=False)
    learner = spec.make_learner(obs_space, act_space, spec.config_cls())
    learner.update(sample_from_model(model(False)[0], np.random.default_rng(0), 32))
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    other = spec.make_learner(obs_space, act_space, spec.config_cls())
    other.load_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(other.q, learner.q)
    assert other.updates == 1
    assert learner.get_weights()["q"].dtype == np.float32
