"""SAC and TD3: the math on hand-checkable numbers, and one full update recomputed in numpy."""

from __future__ import annotations

import io
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.agents.continuous import ActionScaler, TanhGaussianActor, tanh_gaussian_log_prob, twin_q_loss
from tandem.agents.offpolicy import polyak_update
from tandem.core.types import Batch
from tandem.learners import sac, td3
from tandem.learners.registry import get_algo

OBS = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
ACT = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))


def hand_batch(seed: int = 0, n: int = 4) -> Batch:
    """Rows: 0 ordinary, 1 terminated, 2 truncated, 3 ordinary (actions in env units)."""
    rng = np.random.default_rng(seed)
    return Batch(
        obs=rng.normal(size=(n, 3)).astype(np.float32),
        actions=rng.uniform(ACT.low, ACT.high, size=(n, 2)).astype(np.float32),
        rewards=np.array([1.0, -1.0, 0.5, 2.0][:n], np.float32),
        next_obs=rng.normal(size=(n, 3)).astype(np.float32),
        terminated=np.array([False, True, False, False][:n]),
        truncated=np.array([False, False, True, False][:n]),
    )


# ----------------------------------------------------------------------------- numpy references


def np_mlp(state: dict, x: np.ndarray, prefix: str = "") -> np.ndarray:
    """Forward pass of an agents.torch_utils.mlp with ReLU (Linear layers at even indices)."""
    layers = sorted({int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)})
    for i, idx in enumerate(layers):
        x = x @ state[f"{prefix}{idx}.weight"].T + state[f"{prefix}{idx}.bias"]
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def np_twin_q(state: dict, obs: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([obs, u], axis=1)
    return np_mlp(state, x, "q1.")[:, 0], np_mlp(state, x, "q2.")[:, 0]


def np_tanh_gaussian(state: dict, obs: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """u = tanh(μ + σ ε) and log π(u|s) with the tanh correction, in float64 numpy."""
    h = np.maximum(np_mlp(state, obs, "trunk."), 0.0)
    mean = np_mlp(state, h, "mean.")
    log_std = -5.0 + 0.5 * 7.0 * (np.tanh(np_mlp(state, h, "log_std.")) + 1.0)
    x = mean + np.exp(log_std) * eps
    logp = (-0.5 * eps**2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(x) ** 2)).sum(axis=1)
    return np.tanh(x), logp


def numpy_state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().double().numpy() for k, v in module.state_dict().items()}


# ----------------------------------------------------------------------------- pure functions


def test_tanh_gaussian_log_prob_matches_torch_transformed_distribution():
    torch.manual_seed(0)
    mean, log_std = torch.randn(5, 2), torch.randn(5, 2) * 0.5
    x = mean + log_std.exp() * torch.randn(5, 2)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), torch.distributions.TanhTransform()
    )
    expected = dist.log_prob(torch.tanh(x)).sum(-1)
    torch.testing.assert_close(tanh_gaussian_log_prob(x, mean, log_std), expected, atol=1e-4, rtol=1e-4)
    # stable where tanh saturates (x = 20 would give log(0) in the naive form)
    big = tanh_gaussian_log_prob(torch.tensor([[20.0]]), torch.tensor([[20.0]]), torch.tensor([[0.0]]))
    assert torch.isfinite(big).all()
    assert float(big) == pytest.approx(-0.5 * math.log(2 * math.pi) - 2 * (math.log(2) - 20.0), rel=1e-5)


def test_sac_critic_target_by_hand():
    r = torch.tensor([1.0, 1.0, 1.0])
    q1, q2 = torch.tensor([5.0, 5.0, 2.0]), torch.tensor([4.0, 6.0, 3.0])
    logp = torch.tensor([-1.0, -1.0, 0.5])
    term = torch.tensor([0.0, 1.0, 0.0])  # row 2 may be truncated: it bootstraps all the same
    y = sac.sac_critic_target(r, q1, q2, logp, term, 0.9, 0.2)
    # row 0: 1 + 0.9 (min(5,4) - 0.2 * -1) = 1 + 0.9 * 4.2; row 1 terminated: 1; row 2: 1 + 0.9 (2 - 0.1)
    torch.testing.assert_close(y, torch.tensor([1 + 0.9 * 4.2, 1.0, 1 + 0.9 * 1.9]))


def test_sac_actor_and_alpha_losses_by_hand():
    logp = torch.tensor([-1.0, 0.5])
    q1, q2 = torch.tensor([3.0, 1.0]), torch.tensor([2.0, 4.0])
    # mean(0.5 * logp - min(q1, q2)) = mean(-0.5 - 2, 0.25 - 1) = (-2.5 - 0.75) / 2
    assert float(sac.sac_actor_loss(logp, q1, q2, 0.5)) == pytest.approx(-1.625)
    log_alpha = torch.tensor(0.3, requires_grad=True)
    loss = sac.sac_alpha_loss(log_alpha, logp, target_entropy=-2.0)
    assert float(loss.detach()) == pytest.approx(-0.3 * ((-1.0 - 2.0) + (0.5 - 2.0)) / 2)
    loss.backward()
    # entropy -mean(logp) = 0.25 is above the target -2: the gradient step lowers α
    assert float(log_alpha.grad) > 0


def test_twin_q_loss_weights_and_priorities():
    q1, q2, y = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0]), torch.tensor([2.0, 0.0])
    loss, td = twin_q_loss(q1, q2, y, torch.tensor([1.0, 0.0]))
    assert float(loss) == pytest.approx(0.5 * (0.5 * (1 + 1)))  # row 1 has weight 0
    torch.testing.assert_close(td, torch.tensor([1.0, 2.0]))


def test_td3_smoothing_and_target_by_hand():
    mu = torch.tensor([[0.9, -0.2], [0.0, 0.0]])
    noise = torch.tensor([[0.3, -0.8], [-0.1, 0.4]])
    u = td3.smoothed_target_action(mu, noise, noise_clip=0.5)
    torch.testing.assert_close(u, torch.tensor([[1.0, -0.7], [-0.1, 0.4]]))
    y = td3.td3_critic_target(
        torch.tensor([1.0, 2.0]),
        torch.tensor([3.0, 5.0]),
        torch.tensor([4.0, 1.0]),
        torch.tensor([0.0, 1.0]),
        0.5,
    )
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.5 * 3.0, 2.0]))
    assert float(td3.td3_actor_loss(torch.tensor([1.0, 3.0]))) == -2.0


def test_polyak_update():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    expected = 0.1 * b.weight.detach() + 0.9 * a.weight.detach()
    polyak_update(a, b, 0.1)
    torch.testing.assert_close(a.weight.detach(), expected)
    polyak_update(a, b, 1.0)
    torch.testing.assert_close(a.weight.detach(), b.weight.detach())


def test_action_scaler_round_trip():
    scaler = ActionScaler(ACT)
    u = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0], [3.0, -3.0]])
    a = scaler.to_env(u)
    np.testing.assert_allclose(a, [[-2.0, 0.0], [0.0, 0.5], [2.0, 1.0], [2.0, 0.0]])
    assert a.dtype == np.float32
    np.testing.assert_allclose(scaler.to_unit(torch.as_tensor(a[:3])).numpy(), u[:3])


# ----------------------------------------------------------------------------- full updates


def test_sac_update_matches_numpy():
    cfg = sac.SACConfig(hidden=(5,), gamma=0.9, init_alpha=0.5, tau=0.1)
    torch.manual_seed(0)
    learner = sac.SACLearner(OBS, ACT, cfg)
    batch = hand_batch()
    actor0, critic0, target0 = (
        numpy_state(m) for m in (learner.actor, learner.critic, learner.critic_target)
    )
    torch.manual_seed(123)
    result = learner.update(batch)
    metrics = result.metrics
    torch.manual_seed(123)  # the update draws ε for s' first, then ε for s
    eps_next, eps_now = torch.randn(4, 2).double().numpy(), torch.randn(4, 2).double().numpy()

    u_next, logp_next = np_tanh_gaussian(actor0, batch.next_obs.astype(np.float64), eps_next)
    q1t, q2t = np_twin_q(target0, batch.next_obs.astype(np.float64), u_next)
    not_term = 1.0 - batch.terminated  # the truncated row 2 bootstraps
    y = batch.rewards + 0.9 * not_term * (np.minimum(q1t, q2t) - 0.5 * logp_next)
    u = (batch.actions - np.array([0.0, 0.5])) / np.array([2.0, 0.5])
    q1, q2 = np_twin_q(critic0, batch.obs.astype(np.float64), u)
    critic_loss = np.mean(0.5 * ((q1 - y) ** 2 + (q2 - y) ** 2))
    assert metrics["loss/q"] == pytest.approx(critic_loss, rel=1e-4)
    np.testing.assert_allclose(result.priorities, 0.5 * (abs(q1 - y) + abs(q2 - y)), rtol=1e-4)

    # the actor loss uses the critic after its step, and the actor before its own
    critic1 = numpy_state(learner.critic)
    u_new, logp = np_tanh_gaussian(actor0, batch.obs.astype(np.float64), eps_now)
    q1n, q2n = np_twin_q(critic1, batch.obs.astype(np.float64), u_new)
    assert metrics["loss/actor"] == pytest.approx(np.mean(0.5 * logp - np.minimum(q1n, q2n)), rel=1e-4)
    assert metrics["loss/alpha"] == pytest.approx(-math.log(0.5) * np.mean(logp - 2.0), rel=1e-4)
    assert metrics["stats/alpha"] == pytest.approx(0.5)
    # targets moved 10% toward the updated critics
    for k, v in numpy_state(learner.critic_target).items():
        np.testing.assert_allclose(v, 0.9 * target0[k] + 0.1 * critic1[k], rtol=1e-5, atol=1e-7)


def test_td3_update_matches_numpy_and_delays_the_actor():
    cfg = td3.TD3Config(hidden=(5,), gamma=0.9, policy_noise=0.2, noise_clip=0.3, policy_delay=2, tau=0.1)
    torch.manual_seed(0)
    learner = td3.TD3Learner(OBS, ACT, cfg)
    batch = hand_batch(1)
    actor0, critic0 = numpy_state(learner.actor_target), numpy_state(learner.critic_target)
    torch.manual_seed(7)
    metrics = learner.update(batch).metrics
    torch.manual_seed(7)
    noise = 0.2 * torch.randn(4, 2).double().numpy()

    next_mu = np.tanh(np_mlp(actor0, batch.next_obs.astype(np.float64), "net."))
    u_next = np.clip(next_mu + np.clip(noise, -0.3, 0.3), -1, 1)
    q1t, q2t = np_twin_q(critic0, batch.next_obs.astype(np.float64), u_next)
    y = batch.rewards + 0.9 * (1.0 - batch.terminated) * np.minimum(q1t, q2t)
    u = (batch.actions - np.array([0.0, 0.5])) / np.array([2.0, 0.5])
    q1, q2 = np_twin_q(critic0, batch.obs.astype(np.float64), u)
    assert metrics["loss/q"] == pytest.approx(np.mean(0.5 * ((q1 - y) ** 2 + (q2 - y) ** 2)), rel=1e-4)
    # first update: no actor step, targets untouched
    assert "loss/actor" not in metrics
    for k, v in numpy_state(learner.actor).items():
        np.testing.assert_array_equal(v, actor0[k])
    # second update: actor step through Q1, Polyak targets
    critic_before = numpy_state(learner.critic)
    metrics = learner.update(batch).metrics
    critic_after = numpy_state(learner.critic)
    mu = np.tanh(np_mlp(actor0, batch.obs.astype(np.float64), "net."))
    assert metrics["loss/actor"] == pytest.approx(
        -np.mean(np_twin_q(critic_after, batch.obs, mu)[0]), rel=1e-4
    )
    assert not np.allclose(numpy_state(learner.actor)["net.0.weight"], actor0["net.0.weight"])
    tgt = numpy_state(learner.critic_target)
    np.testing.assert_allclose(
        tgt["q1.0.weight"], 0.9 * critic0["q1.0.weight"] + 0.1 * critic_after["q1.0.weight"]
    )
    assert not np.allclose(critic_before["q1.0.weight"], critic_after["q1.0.weight"])


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_importance_weights_zero_leave_the_critic_unchanged(algo):
    spec = get_algo(algo)
    learner = spec.make_learner(OBS, ACT, spec.config_cls(hidden=(8,)))
    before = numpy_state(learner.critic)
    batch = hand_batch()
    learner.update(Batch(**{**batch.__dict__, "weights": np.zeros(4, np.float32)}))
    for k, v in numpy_state(learner.critic).items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_state_dict_round_trip_with_weights_only(algo):
    spec = get_algo(algo)
    cfg = spec.config_cls(hidden=(8,))
    learner = spec.make_learner(OBS, ACT, cfg)
    for _ in range(3):
        learner.update(hand_batch())
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    other = spec.make_learner(OBS, ACT, cfg)
    other.load_state_dict(torch.load(buf, weights_only=True))
    for k, v in learner.get_weights().items():
        np.testing.assert_array_equal(other.get_weights()[k], v)
    assert other.updates == 3
    torch.manual_seed(0)
    m1 = learner.update(hand_batch(5)).metrics
    torch.manual_seed(0)
    m2 = other.update(hand_batch(5)).metrics
    assert m1 == m2


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_policy_acts_in_bounds_warms_up_at_random_and_loads_weights(algo):
    spec = get_algo(algo)
    cfg = spec.config_cls(hidden=(8,))
    policy = spec.make_policy(OBS, ACT, cfg, worker_index=1, num_workers=2)
    learner = spec.make_learner(OBS, ACT, cfg)
    obs = np.zeros((500, 3), np.float32)
    a, extras = policy.act(obs, explore=True)  # version 0: uniform warm-up over the box
    assert a.shape == (500, 2) and a.dtype == np.float32 and extras == {}
    assert (a >= ACT.low).all() and (a <= ACT.high).all()
    assert a[:, 0].std() == pytest.approx(4 / math.sqrt(12), rel=0.15)
    policy.set_weights(learner.get_weights(), 1)
    greedy, _ = policy.act(obs, explore=False)
    assert np.allclose(greedy, greedy[0])  # deterministic: tanh(μ(s))
    mu = (
        learner.actor(torch.zeros(1, 3))
        if algo == "td3"
        else torch.tanh(learner.actor.dist_params(torch.zeros(1, 3))[0])
    )
    np.testing.assert_allclose(greedy[0], ActionScaler(ACT).to_env(mu.detach().numpy())[0], atol=1e-6)
    noisy, _ = policy.act(obs, explore=True)
    assert noisy.std(axis=0).min() > 0 and (noisy >= ACT.low).all() and (noisy <= ACT.high).all()


def test_sac_actor_log_prob_is_consistent_with_sampling():
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 2, (8,))
    u, logp = actor(torch.zeros(1, 3).expand(4, 3))
    assert u.abs().max() < 1 and logp.shape == (4,)
    u_det, _ = actor(torch.zeros(1, 3), deterministic=True)
    torch.testing.assert_close(u_det, torch.tanh(actor.dist_params(torch.zeros(1, 3))[0]))


def test_spaces_and_presets():
    for algo in ("sac", "td3"):
        spec = get_algo(algo)
        assert spec.check_spaces(OBS, ACT) is None
        assert "Box" in spec.check_spaces(OBS, gym.spaces.Discrete(3))
        assert spec.preset(OBS, ACT, "Pendulum-v1")["min_size"] == 1_000
        assert spec.preset(OBS, ACT, "HalfCheetah-v5") == {}
