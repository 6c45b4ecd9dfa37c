"""MBSAC: the ensemble fits a known system, the batch mix, model samples counted apart."""

from __future__ import annotations

import io
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.agents.dynamics import ProbabilisticEnsemble, gaussian_nll, soft_clamp
from tandem.core.types import Batch, UpdateResult
from tandem.learners.mbsac import MBSACConfig, MBSACConfigError, MBSACLearner, mix_sizes
from tandem.learners.registry import get_algo


@pytest.fixture(autouse=True)
def one_thread():
    """The machine's cores are shared: intra-op threads only contend (workers do the same)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


OBS = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def linear_system(n: int, rng: np.random.Generator, start: int = 0) -> Batch:
    """s' = s + (0.1 u, -0.05 s_0), r = -s_0², terminated iff s'_0 > 1.5 (u in env units)."""
    s = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    a = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
    s2 = s + np.stack([0.1 * a[:, 0], -0.05 * s[:, 0]], axis=1)
    return Batch(
        obs=s,
        actions=a,
        rewards=(-(s[:, 0] ** 2)).astype(np.float32),
        next_obs=s2.astype(np.float32),
        terminated=s2[:, 0] > 1.5,
        truncated=np.zeros(n, bool),
        indices=np.arange(start, start + n),
    )


def test_mix_sizes():
    assert mix_sizes(256, 0.5) == (128, 128)
    assert mix_sizes(256, 0.05) == (13, 243)
    assert mix_sizes(10, 1.0) == (10, 0)


def test_soft_clamp_and_nll_by_hand():
    # PETS' bounds [-10, 0.5]: far outside they hold, well inside the map is the identity
    y = soft_clamp(torch.tensor([-100.0, -3.0, 100.0]), torch.tensor(-10.0), torch.tensor(0.5))
    np.testing.assert_allclose(y.numpy(), [-10.0, -3.0, 0.5], atol=0.05)
    # (μ - y)² e^{-ℓ} + ℓ at μ=1, y=3, ℓ=ln 2: 4/2 + ln 2
    nll = gaussian_nll(torch.tensor([1.0]), torch.tensor([np.log(2.0)]), torch.tensor([3.0]))
    assert float(nll) == pytest.approx(2.0 + np.log(2.0), rel=1e-6)


def test_ensemble_fits_a_known_system():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = linear_system(4000, rng)
    model = ProbabilisticEnsemble(2, 1, (64, 64), ensemble=3)
    u = data.actions / 2.0
    inputs = np.concatenate([data.obs, u], axis=1)
    targets = np.concatenate([data.next_obs - data.obs, data.rewards[:, None]], axis=1)
    model.set_normalizer(inputs, targets)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    t = lambda x: torch.as_tensor(x, dtype=torch.float32)  # noqa: E731
    for _ in range(600):
        idx = rng.integers(0, 4000, (3, 128))
        loss, metrics = model.loss(
            t(data.obs[idx]),
            t(u[idx]),
            t(data.next_obs[idx] - data.obs[idx]),
            t(data.rewards[idx]),
            t(data.terminated[idx]),
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert metrics["stats/model_mse"] < 0.02  # standardized units: 2% of the target variance
    test = linear_system(500, np.random.default_rng(1))
    s2, r, term = model.sample(t(test.obs), t(test.actions / 2.0))
    assert np.abs(s2.numpy() - test.next_obs).mean() < 0.02
    assert np.abs(r.numpy() - test.rewards).mean() < 0.15
    assert (term.numpy() == test.terminated).mean() > 0.95


def small_cfg(**kw) -> MBSACConfig:
    base = MBSACConfig(
        hidden=(16,),
        model_hidden=(16,),
        ensemble_size=2,
        model_batch=32,
        rollout_interval=2,
        rollout_batch=20,
        rollout_length=3,
        model_buffer_capacity=500,
        model_warmup=0,
        real_ratio=0.25,
    )
    return replace(base, **kw)


def test_update_mixes_model_rows_and_counts_them_apart():
    torch.manual_seed(0)
    learner = MBSACLearner(OBS, ACT, small_cfg())
    rng = np.random.default_rng(0)
    first = linear_system(16, rng)
    res = learner.update(first)
    assert isinstance(res, UpdateResult)
    # update 0 rolls out (warmup 0, interval 2) before SAC trains: 3 rows real + ... of 16
    assert learner.model_buffer.size > 0
    assert (res.samples_trained, res.samples_model) == (16, 12)
    assert res.metrics["stats/model_fraction"] == pytest.approx(12 / 16)
    assert {"loss/model_nll", "loss/q", "stats/model_buffer"} <= set(res.metrics)
    assert learner.env_data.size == 16
    learner.update(first)  # the same replay rows again: no new model data
    assert learner.env_data.size == 16
    learner.update(linear_system(16, rng, start=16))
    assert learner.env_data.size == 32
    assert learner.samples_model == 36
    # rollouts: ≤ rollout_batch · rollout_length rows per round, states from the model's data
    assert learner.model_buffer.size <= 2 * 20 * 3
    assert np.abs(learner.model_buffer.actions[: learner.model_buffer.size]).max() <= 2.0


def test_without_model_rows_the_batch_is_all_real():
    learner = MBSACLearner(OBS, ACT, small_cfg(model_warmup=10**9))
    res = learner.update(linear_system(16, np.random.default_rng(0)))
    assert res.samples_model == 0 and learner.model_buffer.size == 0


def test_bad_mix_is_a_one_line_error():
    with pytest.raises(MBSACConfigError, match="real_ratio"):
        MBSACLearner(OBS, ACT, small_cfg(real_ratio=0.0))


def test_registered_and_checkpoint_round_trip():
    spec = get_algo("mbsac")
    assert spec.check_spaces(OBS, gym.spaces.Discrete(2)) is not None
    torch.manual_seed(0)
    learner = spec.make_learner(OBS, ACT, small_cfg())
    learner.update(linear_system(16, np.random.default_rng(0)))
    buf = io.BytesIO()
    torch.save(learner.state_dict(), buf)
    buf.seek(0)
    clone = spec.make_learner(OBS, ACT, small_cfg())
    clone.load_state_dict(torch.load(buf, weights_only=True))
    assert clone.env_data.size == 16 and clone.updates == 1 and clone.samples_model == learner.samples_model
    for k, v in learner.model.state_dict().items():
        torch.testing.assert_close(clone.model.state_dict()[k], v)
    policy = spec.make_policy(OBS, ACT, small_cfg())
    policy.set_weights(learner.get_weights(), 1)
    actions, _ = policy.act(np.zeros((3, 2), np.float32), explore=False)
    assert actions.shape == (3, 1)
