"""rwr: weight normalisation and clipping by hand, the worker-side adder that writes the
reward-to-go of finished episodes (held back until they end), and the learner's one step."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.core.types import Batch, Rollout, UpdateResult
from tandem.learners.rwr import (
    EpisodeAdder,
    RWRConfig,
    RWRLearner,
    replay_returns,
    rwr_policy_loss,
    rwr_score,
    rwr_weights,
)

F, T = False, True


def test_weights_normalised_then_clipped_by_hand():
    # scores [0, 2]: σ = √2 (unbiased); β = √2 / ln 3 makes u = [0, ln 3], exp(u) = [1, 3],
    # Z = mean = 2, so w = [.5, 1.5]; clipped at w_max = 1.2 -> [.5, 1.2].
    beta = math.sqrt(2) / math.log(3)
    w = rwr_weights(torch.tensor([0.0, 2.0]), beta=beta, max_weight=10.0)
    torch.testing.assert_close(w, torch.tensor([0.5, 1.5]))
    w = rwr_weights(torch.tensor([0.0, 2.0]), beta=beta, max_weight=1.2)
    torch.testing.assert_close(w, torch.tensor([0.5, 1.2]))


def test_weights_ignore_shift_and_scale_of_the_scores_and_do_not_overflow():
    s = torch.tensor([0.0, 1.0, 3.0, -2.0])
    w = rwr_weights(s, beta=1.0, max_weight=100.0)
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    torch.testing.assert_close(rwr_weights(1000.0 * s + 5e4, beta=1.0, max_weight=100.0), w)
    # a smaller β sharpens the weights toward the best sample
    sharp = rwr_weights(s, beta=0.25, max_weight=100.0)
    assert sharp.argmax() == 2 and sharp.max() > w.max()


def test_single_sample_gets_weight_one():
    torch.testing.assert_close(rwr_weights(torch.tensor([-7.0]), 1.0, 20.0), torch.tensor([1.0]))


def test_policy_loss_is_the_weighted_negative_log_likelihood():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    loss = rwr_policy_loss(logp, torch.tensor([0.5, 1.5]))
    assert loss.item() == pytest.approx(-(0.5 * -1 + 1.5 * -2) / 2)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([-0.25, -0.75]))


def _frag(frag: int, rewards, term, trunc) -> Rollout:
    """obs encode (fragment, t, env) as 100*frag + 10*t + env, so rows can be traced."""
    rewards = np.asarray(rewards, dtype=np.float32)
    T_, N = rewards.shape
    code = 100 * frag + 10 * np.arange(T_)[:, None] + np.arange(N)[None, :]
    return Rollout(
        obs=code[..., None].astype(np.float32),
        actions=np.zeros((T_, N), dtype=np.int64),
        rewards=rewards,
        next_obs=(code + 1000)[..., None].astype(np.float32),
        terminated=np.asarray(term),
        truncated=np.asarray(trunc),
        extras={"logp": np.zeros((T_, N), dtype=np.float32)},
        episode_returns=np.zeros(0),
        episode_lengths=np.zeros(0, dtype=np.int64),
        policy_version=0,
    )


def _returns(b: Batch, v_of_boot: float = 10.0) -> dict[int, float]:
    """R = rtg + boot_discount * V(boot_obs), with a constant V, keyed by the obs code."""
    R = b.extras["rtg"] + b.extras["boot_discount"] * v_of_boot
    return {int(o[0]): float(r) for o, r in zip(b.obs, R, strict=True)}


def test_adder_holds_episodes_back_and_writes_their_reward_to_go_at_the_end():
    adder = EpisodeAdder(gamma=0.5)
    # fragment 0: env 0 terminates at t=1 (rewards 1, 1), env 1 is truncated at t=2 (rewards 2, 2, 2)
    b = adder(_frag(0, [[1, 2], [1, 2], [1, 2]], [[F, F], [T, F], [F, F]], [[F, F], [F, F], [F, T]]))
    # env 0: R_1 = 1, R_0 = 1 + .5*1; env 1 with V(s_3) = 10: R_2 = 2 + .5*10 = 7, R_1 = 2 + .5*7,
    # R_0 = 2 + .5*5.5
    assert _returns(b) == {0: 1.5, 10: 1.0, 1: 4.75, 11: 5.5, 21: 7.0}
    trunc_rows = b.extras["boot_discount"] > 0
    np.testing.assert_allclose(b.extras["boot_discount"][trunc_rows], [0.125, 0.25, 0.5])
    # the truncated segment bootstraps from its final observation (next_obs of fragment 0, t=2, env 1)
    np.testing.assert_allclose(b.extras["boot_obs"][trunc_rows, 0], 1021.0)
    assert adder.held_steps == 1  # env 0, t=2: its episode is still running
    # fragment 1: env 0's episode (started at fragment 0, t=2) terminates at t=1; env 1 runs on
    b = adder(_frag(1, [[1, 5], [1, 5]], [[F, F], [T, F]], [[F, F], [F, F]]))
    assert _returns(b) == {20: 1.75, 100: 1.5, 110: 1.0}
    assert adder.held_steps == 2
    assert set(b.extras) == {"logp", "rtg", "boot_discount", "boot_obs"} and b.rewards.dtype == np.float32
    # nothing ends: nothing is written
    assert adder(_frag(2, [[0, 0]], [[F, F]], [[F, F]])) is None


def test_adder_writes_an_endless_episode_after_max_hold_with_a_bootstrap():
    adder = EpisodeAdder(gamma=0.5, max_hold_steps=2)
    assert adder(_frag(0, [[1]], [[F]], [[F]])) is None
    b = adder(_frag(1, [[1]], [[F]], [[F]]))
    # held 2 steps, then written: R_1 = 1 + .5 V(s_2), R_0 = 1 + .5 + .25 V(s_2); s_2 = next_obs[1, t=0]
    np.testing.assert_allclose(b.extras["rtg"], [1.5, 1.0])
    np.testing.assert_allclose(b.extras["boot_discount"], [0.25, 0.5])
    np.testing.assert_allclose(b.extras["boot_obs"][:, 0], [1100.0, 1100.0])
    assert adder.held_steps == 0


def test_learner_bootstraps_with_its_current_critic():
    learner = RWRLearner(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2), RWRConfig())
    b = EpisodeAdder(gamma=0.5, max_hold_steps=2)
    b(_frag(0, [[1]], [[F]], [[F]]))
    batch = b(_frag(1, [[1]], [[F]], [[F]]))
    with torch.no_grad():
        learner.model.ret_mean.fill_(3.0)
        learner.model.ret_std.fill_(2.0)
        v = learner.model.value(torch.tensor([[1100.0]])).item()
    torch.testing.assert_close(
        replay_returns(learner.model, batch), torch.tensor([1.5 + 0.25 * v, 1 + 0.5 * v])
    )


@pytest.mark.parametrize(
    "act_space",
    [gym.spaces.Discrete(3), gym.spaces.Box(-2.0, 2.0, (2,), dtype=np.float32)],
    ids=["discrete", "box"],
)
@pytest.mark.parametrize("weighting", ["td", "advantage", "return"])
def test_update_one_weighted_likelihood_step(act_space, weighting):
    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), dtype=np.float32)
    cfg = RWRConfig(weighting=weighting, min_log_std=-0.5, lr=1.0)
    learner = RWRLearner(obs_space, act_space, cfg)
    rng = np.random.default_rng(0)
    B = 64
    acts = rng.integers(0, 3, B) if isinstance(act_space, gym.spaces.Discrete) else rng.normal(size=(B, 2))
    batch = Batch(
        obs=rng.normal(size=(B, 4)).astype(np.float32),
        actions=acts.astype(np.int64 if isinstance(act_space, gym.spaces.Discrete) else np.float32),
        rewards=np.ones(B, dtype=np.float32),
        next_obs=rng.normal(size=(B, 4)).astype(np.float32),
        terminated=np.zeros(B, dtype=bool),
        truncated=np.zeros(B, dtype=bool),
        extras={
            "rtg": rng.normal(size=B).astype(np.float32),
            "boot_discount": np.full(B, 0.5, dtype=np.float32),
            "boot_obs": rng.normal(size=(B, 4)).astype(np.float32),
        },
    )
    before = [p.detach().clone() for p in learner.model.parameters()]
    res = learner.update(batch)
    assert isinstance(res, UpdateResult) and (res.grad_steps, res.samples_trained) == (1, B)
    assert 0 < res.metrics["stats/weight_ess_frac"] <= 1
    assert all(not torch.equal(a, b) for a, b in zip(before, learner.model.parameters(), strict=True))
    if not learner.model.discrete:  # lr 1.0 pushes log σ far down; the floor holds it
        assert learner.model.log_std.min().item() >= cfg.min_log_std


def test_update_without_reward_to_go_names_the_adder():
    learner = RWRLearner(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2), RWRConfig())
    z = np.zeros(4, dtype=np.float32)
    b = Batch(
        np.zeros((4, 2), np.float32), np.zeros(4, np.int64), z, np.zeros((4, 2), np.float32), z > 0, z > 0
    )
    with pytest.raises(ValueError, match="EpisodeAdder"):
        learner.update(b)


def test_worker_writes_only_finished_episodes_with_their_reward_to_go():
    from tandem.runner.worker import RolloutWorker

    w = RolloutWorker("CartPole-v1", 2, "rwr", RWRConfig(gamma=1.0), seed=0)
    written, finished = 0, []
    for _ in range(40):
        res = w.collect(8)
        finished.extend(res.episode_lengths.tolist())
        if res.batch is not None:
            b = res.batch
            written += len(b)
            # γ = 1 and CartPole pays 1 per step: the last step of a terminated episode has R = 1
            ends = b.terminated
            np.testing.assert_allclose(b.extras["rtg"][ends], 1.0)
            np.testing.assert_allclose(b.extras["boot_discount"][ends], 0.0)
    assert finished and written == sum(finished)
    assert written + w._adder.held_steps == 40 * 8 * 2


def test_scaled_critic_tracks_return_statistics():
    from tandem.agents.scaled_value import ScaledValueActorCritic

    m = ScaledValueActorCritic(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2))
    m.track_returns(torch.tensor([-10.0, -30.0]), rate=0.1)  # first call: taken as is
    assert m.ret_mean.item() == pytest.approx(-20.0) and m.ret_std.item() == pytest.approx(math.sqrt(200))
    m.track_returns(torch.tensor([0.0, 0.0]), rate=0.1)  # then a moving average; std floored at 1e-3
    assert m.ret_mean.item() == pytest.approx(-18.0)
    assert m.ret_std.item() == pytest.approx(0.9 * math.sqrt(200) + 0.1 * 1e-3)
    x = torch.zeros(1, 2)
    assert m.value(x).item() == pytest.approx(-18.0 + m.ret_std.item() * m.normalized_value(x).item())


@pytest.mark.integration  # ~15 s alone
def test_rwr_learns_cartpole_in_15k_steps():
    """Random play scores ~22; the in-process loop of benchmarks.lecture_methods (no Ray).

    Also the regression test of a warm-up deadlock: rwr's workers hold unfinished episodes back,
    so its replay lags the env steps the rate limiter counts; the limiter then held the workers
    back while the replay was still below min_size and could not be sampled (it hung for good)."""
    from benchmarks.common import rolling_threshold
    from benchmarks.lecture_methods import run_in_process

    run_dir, _ = run_in_process("rwr", "CartPole-v1", 0, 15_000, threshold=1e9)
    assert rolling_threshold(run_dir, 1e9)["final_return"] > 60


def test_scores_by_weighting_on_a_hand_case():
    """Three rows with known V: a plain step, a terminated step (no bootstrap) and a time-limit
    step (bootstraps from the true final observation s', like any other step)."""
    batch = Batch(
        obs=np.array([[0.0], [1.0], [2.0]], np.float32),
        actions=np.zeros(3, np.int64),
        rewards=np.array([1.0, -2.0, 0.5], np.float32),
        next_obs=np.array([[10.0], [20.0], [30.0]], np.float32),
        terminated=np.array([False, True, False]),
        truncated=np.array([False, False, True]),
    )
    R = torch.tensor([5.0, -2.0, 7.0])
    v = torch.tensor([4.0, 1.0, 3.0])
    value_fn = lambda obs: torch.as_tensor(obs[:, 0]) / 10.0  # V(s') = 1, 2, 3  # noqa: E731
    gamma = 0.9
    td = rwr_score("td", batch, R, v, value_fn, gamma)
    # δ = r + γ (1 - term) V(s') - V(s)
    np.testing.assert_allclose(
        td.numpy(), [1.0 + 0.9 * 1.0 - 4.0, -2.0 - 1.0, 0.5 + 0.9 * 3.0 - 3.0], rtol=1e-6
    )
    np.testing.assert_allclose(rwr_score("advantage", batch, R, v, value_fn, gamma).numpy(), [1.0, -3.0, 4.0])
    np.testing.assert_allclose(rwr_score("return", batch, R, v, value_fn, gamma).numpy(), R.numpy())


def test_unknown_weighting_is_refused():
    space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    with pytest.raises(ValueError, match="rwr weighting must be one of td, advantage, return, not 'gae'"):
        RWRLearner(space, gym.spaces.Discrete(2), RWRConfig(weighting="gae"))
