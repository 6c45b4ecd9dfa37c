"""The workers' numpy forward pass (agents.numpy_net) computes what the torch modules compute:
the same logits, log-probs, values and Q values, and samples from the same distributions."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

from tandem.agents.actor_critic import ActorCritic
from tandem.agents.continuous import DeterministicActor, TanhGaussianActor
from tandem.agents.numpy_net import numpy_mirror, obs_array
from tandem.agents.q import QNetwork
from tandem.agents.scaled_value import ScaledValueActorCritic
from tandem.agents.torch_utils import obs_to_tensor

BOX4 = gym.spaces.Box(-5.0, 5.0, (4,), np.float32)


def randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Weights far from the init (whose last layers are ~0), so that a wrong sum would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def obs(n: int = 64, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def test_discrete_actor_critic_matches_torch_log_probs_and_values():
    ac = ActorCritic(BOX4, gym.spaces.Discrete(3))
    randomize(ac)
    o = obs()
    a, extras = ac.act(o, explore=True)
    x = obs_to_tensor(o, BOX4)
    with torch.no_grad():
        want_logp = Categorical(logits=ac.pi(x)).log_prob(torch.as_tensor(a))
        want_v = ac.v(x).squeeze(-1)
    assert a.dtype == np.int64 and a.shape == (64,)
    np.testing.assert_allclose(extras["logp"], want_logp.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(extras["value"], want_v.numpy(), rtol=1e-5, atol=1e-5)
    greedy, _ = ac.act(o, explore=False)
    np.testing.assert_array_equal(greedy, ac.pi(x).argmax(-1).numpy())


def test_discrete_samples_follow_the_softmax():
    torch.manual_seed(0)
    ac = ActorCritic(BOX4, gym.spaces.Discrete(3))
    randomize(ac, seed=3)
    o = np.repeat(obs(1), 20_000, axis=0)
    a, _ = ac.act(o, explore=True)
    with torch.no_grad():
        p = torch.softmax(ac.pi(torch.as_tensor(o[:1])), -1).numpy()[0]
    freq = np.bincount(a, minlength=3) / len(a)
    # 20k draws: each frequency is within ~4 standard errors of its probability
    assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / len(a)) + 1e-3), (freq, p)


def test_gaussian_actor_critic_matches_torch_log_probs():
    torch.manual_seed(0)  # the policy's sampling generator is drawn from torch's
    ac = ActorCritic(BOX4, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), init_log_std=-0.5)
    randomize(ac)
    o = obs()
    a, extras = ac.act(o, explore=True)
    x = obs_to_tensor(o, BOX4)
    with torch.no_grad():
        mean = ac.pi(x)
        want = Normal(mean, ac.log_std.exp().expand_as(mean)).log_prob(torch.as_tensor(a)).sum(-1)
    assert a.dtype == np.float32 and a.shape == (64, 2)
    np.testing.assert_allclose(extras["logp"], want.numpy(), rtol=1e-4, atol=1e-4)
    det, _ = ac.act(o, explore=False)
    np.testing.assert_allclose(det, mean.numpy(), rtol=1e-5, atol=1e-6)
    big = np.repeat(o, 100, axis=0)
    a, _ = ac.act(big, explore=True)
    with torch.no_grad():
        z = (a - ac.pi(torch.as_tensor(big)).numpy()) / np.exp(ac.log_std.detach().numpy())
    # 12,800 draws: the mean and std of N(0, 1) within ~5 standard errors
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1.0) < 0.04


def test_scaled_value_critic_reports_values_in_return_units():
    ac = ScaledValueActorCritic(BOX4, gym.spaces.Discrete(2))
    randomize(ac)
    with torch.no_grad():
        ac.ret_mean.fill_(-300.0)
        ac.ret_std.fill_(40.0)
    o = obs()
    _, extras = ac.act(o)
    with torch.no_grad():
        want = ac.value(obs_to_tensor(o, BOX4)).numpy()
    np.testing.assert_allclose(extras["value"], want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("dueling", [False, True])
def test_q_network_matches_torch(dueling):
    net = QNetwork(4, 3, [32, 32], dueling=dueling)
    randomize(net)
    o = obs()
    with torch.no_grad():
        want = net(torch.as_tensor(o)).numpy()
    np.testing.assert_allclose(net.q_numpy(o), want, rtol=1e-5, atol=1e-5)


def test_continuous_actors_match_torch_when_acting_greedily():
    rng = np.random.default_rng(0)
    o = obs()
    sac = TanhGaussianActor(4, 2, [32, 32])
    td3 = DeterministicActor(4, 2, [32, 32], exploration_noise=0.1)
    randomize(sac)
    randomize(td3)
    with torch.no_grad():  # σ = exp(-1.5) everywhere: tanh must not saturate for the moments below
        for p in sac.log_std.parameters():
            p.zero_()
    t = torch.as_tensor(o)
    for actor in (sac, td3):
        want = actor.explore_action(t, False).numpy()
        np.testing.assert_allclose(actor.explore_action_numpy(o, False, rng), want, atol=1e-5)
    u = sac.explore_action_numpy(np.repeat(o[:1], 20_000, axis=0), True, rng)
    with torch.no_grad():
        mean, log_std = sac.dist_params(t[:1])
    x = np.arctanh(np.clip(u, -1 + 1e-6, 1 - 1e-6))  # back to the Gaussian's space
    np.testing.assert_allclose(x.mean(0), mean.numpy()[0], atol=0.05 * float(log_std.exp().max()) + 0.02)
    np.testing.assert_allclose(x.std(0), log_std.exp().numpy()[0], rtol=0.05)
    noisy = td3.explore_action_numpy(o, True, rng)
    assert np.all(np.abs(noisy) <= 1.0) and not np.allclose(noisy, td3.explore_action(t, False).numpy())


def test_the_mirror_follows_new_weights_and_copies():
    ac = ActorCritic(BOX4, gym.spaces.Discrete(3))
    o = obs()
    first = ac.act(o, explore=False)[1]["value"]
    other = ActorCritic(BOX4, gym.spaces.Discrete(3))
    randomize(other, seed=7)
    ac.load_state_dict(other.state_dict())  # what set_weights does
    np.testing.assert_allclose(ac.act(o, explore=False)[1]["value"], other.act(o, explore=False)[1]["value"])
    assert not np.allclose(first, ac.act(o, explore=False)[1]["value"])
    clone = copy.deepcopy(ac)
    randomize(clone, seed=9)
    assert not np.allclose(clone.act(o, explore=False)[1]["value"], ac.act(o, explore=False)[1]["value"])
    assert numpy_mirror(clone, clone.pi)[0].ops[0][1].base is not numpy_mirror(ac, ac.pi)[0].ops[0][1].base


def test_one_hot_observations_match_torch():
    space = gym.spaces.Discrete(16)
    o = np.array([0, 3, 15, 7])
    np.testing.assert_array_equal(obs_array(o, space), obs_to_tensor(o, space).numpy())


def test_a_layer_without_a_numpy_forward_falls_back_to_torch():
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    assert numpy_mirror(net, net) is None
