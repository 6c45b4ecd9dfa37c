"""reward_to_go, full_return, gae and td_target against values computed by hand."""

import numpy as np
import pytest

from tandem.learners.returns import full_return, gae, n_step_returns, reward_to_go, td_target

F, T = False, True


def col(*xs, dtype=np.float32):
    return np.asarray(xs, dtype=dtype)[:, None]  # [T, 1]


def test_reward_to_go_terminated_episode():
    # rewards 1,2,3 then a true end: R2 = 3, R1 = 2 + .5*3 = 3.5, R0 = 1 + .5*3.5 = 2.75
    r = reward_to_go(col(1, 2, 3), col(F, F, T, dtype=bool), col(F, F, F, dtype=bool), col(9, 9, 9), 0.5)
    np.testing.assert_allclose(r[:, 0], [2.75, 3.5, 3.0])


def test_reward_to_go_truncated_bootstraps_from_next_value():
    # truncated at t=1 with V(s_2)=10: R1 = 2 + .5*10 = 7, R0 = 1 + .5*7 = 4.5; new episode at t=2
    r = reward_to_go(col(1, 2, 3), col(F, F, F, dtype=bool), col(F, T, F, dtype=bool), col(0, 10, 4), 0.5)
    np.testing.assert_allclose(r[:, 0], [4.5, 7.0, 3 + 0.5 * 4])


def test_reward_to_go_without_critic_is_monte_carlo():
    r = reward_to_go(col(1, 1, 1), col(F, F, F, dtype=bool), col(F, F, F, dtype=bool), col(0, 0, 0), 1.0)
    np.testing.assert_allclose(r[:, 0], [3, 2, 1])


def test_full_return_gives_every_step_the_episode_return():
    term = col(F, T, F, F, dtype=bool)
    r = full_return(col(1, 2, 3, 4), term, col(F, F, F, F, dtype=bool), col(0, 0, 0, 0), 1.0)
    np.testing.assert_allclose(r[:, 0], [3, 3, 7, 7])


def test_gae_hand_computed():
    rewards, values, next_values = col(1, 1), col(0.5, 0.5), col(0.5, 2.0)
    term, trunc = col(F, F, dtype=bool), col(F, F, dtype=bool)
    gamma, lam = 0.9, 0.5
    d1 = 1 + 0.9 * 2.0 - 0.5
    d0 = 1 + 0.9 * 0.5 - 0.5
    adv, ret = gae(rewards, values, next_values, term, trunc, gamma, lam)
    np.testing.assert_allclose(adv[:, 0], [d0 + gamma * lam * d1, d1], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], adv[:, 0] + 0.5, rtol=1e-6)


def test_gae_terminated_and_truncated():
    rewards, values, next_values = col(1, 1, 1), col(0, 0, 0), col(5, 5, 5)
    # t0 terminated: δ0 = 1 (no bootstrap), recursion cut. t1 truncated: δ1 = 1 + 5, cut. t2 continues.
    adv, _ = gae(rewards, values, next_values, col(T, F, F, dtype=bool), col(F, T, F, dtype=bool), 1.0, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1, 6, 6])


def test_gae_lambda_one_equals_reward_to_go_minus_value():
    rng = np.random.default_rng(0)
    rew, v, nv = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    nv[:-1] = v[1:]  # consistent critic along the trajectory
    term = np.zeros((6, 3), bool)
    term[2, 1] = True
    trunc = np.zeros((6, 3), bool)
    trunc[3, 2] = True
    nv[2, 1] = 0.0
    adv, _ = gae(rew, v, nv, term, trunc, 0.97, 1.0)
    rtg = reward_to_go(rew, term, trunc, nv, 0.97)
    np.testing.assert_allclose(adv, rtg - v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("xp", ["numpy", "torch"])
def test_td_target_terminated_vs_truncated(xp):
    r, nv, term = [1.0, 1.0], [10.0, 10.0], [1.0, 0.0]  # row 0 terminated, row 1 truncated
    if xp == "torch":
        import torch

        y = td_target(torch.tensor(r), torch.tensor(nv), torch.tensor(term), 0.9).numpy()
    else:
        y = td_target(np.array(r), np.array(nv), np.array(term), 0.9)
    np.testing.assert_allclose(y, [1.0, 10.0])


def test_n_step_returns_stop_at_episode_end_and_fragment_end():
    G, disc, term, last = n_step_returns(
        col(1, 1, 1, 1), col(F, T, F, F, dtype=bool), col(F, F, F, F, dtype=bool), 0.5, 3
    )
    np.testing.assert_allclose(G[:, 0], [1.5, 1, 1.5, 1])
    np.testing.assert_allclose(disc[:, 0], [0.25, 0.5, 0.25, 0.5])
    assert term[:, 0].tolist() == [True, True, False, False]
    assert last[:, 0].tolist() == [1, 1, 3, 3]
