"""The learner's torch device: resolving ``--set device=...``, the one-copy batch transfer, and
(where a GPU exists) every learner training on CUDA while its weights leave as CPU numpy."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from tandem.agents.offpolicy import batch_to_tensors
from tandem.agents.torch_utils import DeviceConfig, DeviceError, learner_device, obs_to_tensor, resolve_device
from tandem.core.errors import TandemError
from tandem.core.types import Batch, Rollout
from tandem.learners.registry import get_algo

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="torch sees no CUDA GPU on this machine")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


# ----------------------------------------------------------------------------- resolve_device


def test_cpu_and_auto_without_gpu(no_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_auto_and_cuda_forms_with_gpus(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "cuda:-1", "", "cuda1", "mps", "cpu:0"])
def test_unknown_spec_is_a_one_line_error_naming_the_forms(spec, two_gpus):
    with pytest.raises(DeviceError) as e:
        resolve_device(spec)
    msg = str(e.value)
    assert isinstance(e.value, TandemError)
    assert "\n" not in msg and "cpu, cuda, cuda:N or auto" in msg and repr(spec) in msg


@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_gpu_is_a_one_line_error(spec, no_gpu):
    with pytest.raises(DeviceError, match="torch sees no CUDA GPU") as e:
        resolve_device(spec)
    assert "\n" not in str(e.value) and "device=cpu" in str(e.value)


def test_cuda_index_past_the_last_gpu(two_gpus):
    with pytest.raises(DeviceError, match=r"'cuda:2'.*2 CUDA device"):
        resolve_device("cuda:2")


def test_learner_device_reads_the_config_field():
    assert learner_device(DeviceConfig()) == torch.device("cpu")  # the default

    @dataclasses.dataclass
    class Old:
        lr: float = 1.0

    assert learner_device(Old()) == torch.device("cpu")  # configs without the field


@pytest.mark.parametrize("algo", ["dqn", "sac", "td3"])
def test_replay_configs_carry_the_device_field(algo):
    cfg = get_algo(algo).config_cls()
    assert cfg.device == "cpu"
    assert "device" in {f.name for f in dataclasses.fields(cfg)}


def test_asking_a_learner_for_cuda_without_gpu_fails_before_building(no_gpu):
    spec = get_algo("sac")
    cfg = dataclasses.replace(spec.config_cls(), device="cuda")
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    with pytest.raises(DeviceError):
        spec.make_learner(box, box, cfg)


# ----------------------------------------------------------------------------- one-copy batches


def _reference_tensors(batch: Batch, obs_space, act_space, gamma: float) -> dict[str, torch.Tensor]:
    """Field-by-field conversion (the code before batches were packed into one host array)."""
    n = len(batch)
    if isinstance(act_space, gym.spaces.Discrete):
        actions = torch.as_tensor(batch.actions).long().reshape(n)
    else:
        actions = torch.as_tensor(np.asarray(batch.actions, np.float32)).reshape(n, -1)
    discount = batch.extras.get("discount")
    return {
        "obs": obs_to_tensor(batch.obs, obs_space),
        "actions": actions,
        "rewards": torch.as_tensor(batch.rewards, dtype=torch.float32),
        "next_obs": obs_to_tensor(batch.next_obs, obs_space),
        "terminated": torch.as_tensor(batch.terminated, dtype=torch.float32),
        "discount": torch.full((n,), gamma)
        if discount is None
        else torch.as_tensor(discount, dtype=torch.float32),
        "weights": torch.ones(n)
        if batch.weights is None
        else torch.as_tensor(batch.weights, dtype=torch.float32),
    }


def _batch(obs_space, act_space, n: int, rng, with_extras: bool) -> Batch:
    obs = np.stack([obs_space.sample() for _ in range(2 * n)])
    return Batch(
        obs=obs[:n],
        actions=np.stack([act_space.sample() for _ in range(n)]),
        rewards=rng.normal(size=n).astype(np.float32),
        next_obs=obs[n:],
        terminated=rng.random(n) < 0.3,
        truncated=rng.random(n) < 0.3,
        extras={"discount": rng.uniform(0.9, 1.0, n).astype(np.float32)} if with_extras else {},
        weights=rng.uniform(0.1, 1.0, n).astype(np.float32) if with_extras else None,
    )


SPACES = {
    "box-f64/box": (
        gym.spaces.Box(-5.0, 5.0, (3, 2), np.float64),
        gym.spaces.Box(-2.0, 1.0, (2,), np.float32),
    ),
    "box/discrete": (gym.spaces.Box(-5.0, 5.0, (4,), np.float32), gym.spaces.Discrete(5)),
    "discrete/discrete": (gym.spaces.Discrete(16), gym.spaces.Discrete(4)),
}


@pytest.mark.parametrize("with_extras", [False, True])
@pytest.mark.parametrize("name", list(SPACES))
def test_packed_batch_equals_field_by_field_conversion(name, with_extras):
    obs_space, act_space = SPACES[name]
    obs_space.seed(0)
    act_space.seed(1)
    batch = _batch(obs_space, act_space, 7, np.random.default_rng(2), with_extras)
    got = batch_to_tensors(batch, obs_space, act_space, 0.97)._asdict()
    want = _reference_tensors(batch, obs_space, act_space, 0.97)
    for key, w in want.items():
        assert got[key].dtype == w.dtype, key
        assert got[key].shape == w.shape, key
        assert torch.equal(got[key], w), key


# ----------------------------------------------------------------------------- CUDA (where present)

BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
DISCRETE = gym.spaces.Discrete(2)


def _replay_batch(act_space, n: int = 32) -> Batch:
    rng = np.random.default_rng(0)
    return Batch(
        obs=rng.normal(size=(n, 3)).astype(np.float32),
        actions=np.stack([act_space.sample() for _ in range(n)]),
        rewards=rng.normal(size=n).astype(np.float32),
        next_obs=rng.normal(size=(n, 3)).astype(np.float32),
        terminated=rng.random(n) < 0.1,
        truncated=np.zeros(n, bool),
    )


def _rollout(act_space, T: int = 8, N: int = 2) -> Rollout:
    rng = np.random.default_rng(0)
    return Rollout(
        obs=rng.normal(size=(T, N, 3)).astype(np.float32),
        actions=np.stack([[act_space.sample() for _ in range(N)] for _ in range(T)]),
        rewards=rng.normal(size=(T, N)).astype(np.float32),
        next_obs=rng.normal(size=(T, N, 3)).astype(np.float32),
        terminated=rng.random((T, N)) < 0.1,
        truncated=np.zeros((T, N), bool),
        extras={"logp": np.full((T, N), -0.7, np.float32)},
        episode_returns=np.zeros(0, np.float32),
        episode_lengths=np.zeros(0, np.int64),
        policy_version=0,
    )


@needs_cuda
@pytest.mark.parametrize("algo", ["dqn", "sac", "td3", "ppo", "pg"])
def test_learner_trains_on_cuda_and_publishes_cpu_numpy(algo):
    spec = get_algo(algo)
    act_space = DISCRETE if algo == "dqn" else BOX
    act_space.seed(0)
    cfg = spec.config_cls()
    cfg.device = "cuda"
    if hasattr(cfg, "batch_size"):
        cfg.batch_size = 32
    learner = spec.make_learner(BOX, act_space, cfg)
    params = _params(learner)
    assert params and all(p.device.type == "cuda" for p in params)
    for _ in range(3):
        result = learner.update(_rollout(act_space) if spec.on_policy else _replay_batch(act_space))
    assert all(np.isfinite(v) for v in _floats(result))
    weights = learner.get_weights()
    assert all(isinstance(w, np.ndarray) for w in weights.values())
    if not spec.on_policy:
        assert isinstance(result.priorities, np.ndarray)
    # A worker's CPU policy loads them without touching CUDA.
    policy = spec.make_policy(BOX, act_space, spec.config_cls())
    policy.set_weights(weights, 1)
    obs = np.zeros((2, 3), np.float32)
    actions, _ = policy.act(obs, False)
    assert actions.shape[0] == 2


@needs_cuda
def test_dqn_update_on_cuda_matches_cpu():
    """DQN's update has no sampling noise: from the same weights on the same batch, the loss,
    Q and target means, TD errors and gradient norm agree on both devices (to float32
    rounding). Weights after the Adam step are not compared: Adam divides by √v, so a
    gradient that is ~1e-9 on one device and 0 on the other moves a weight by up to lr."""
    spec = get_algo("dqn")
    learners = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        learners[device] = spec.make_learner(
            BOX, DISCRETE, dataclasses.replace(spec.config_cls(), device=device)
        )
    DISCRETE.seed(0)
    batch = _replay_batch(DISCRETE)
    m_cpu, m_gpu = (learners[d].update(batch) for d in ("cpu", "cuda"))
    assert _floats(m_cpu) == pytest.approx(_floats(m_gpu), rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(m_cpu.priorities, m_gpu.priorities, rtol=1e-4, atol=1e-5)


def _params(learner):
    modules = [v for v in vars(learner).values() if isinstance(v, torch.nn.Module)]
    return [p for m in modules for p in m.parameters()]


def _floats(result) -> list[float]:
    """The numbers of an update's UpdateResult."""
    return [float(v) for v in result.metrics.values()]
