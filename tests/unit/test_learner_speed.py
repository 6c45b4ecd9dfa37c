"""What the learner-speed work changed numerically, and the speed script itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks import learner_speed
from tandem.agents.torch_utils import adam, mlp


def test_fused_adam_matches_the_loop_implementation():
    """PPO now steps with the fused kernel; it must be the same Adam (eps=1e-5, PPO's)."""
    torch.manual_seed(0)
    nets = [mlp([5, 16, 16, 3]) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [
        torch.optim.Adam(nets[0].parameters(), lr=1e-2, eps=1e-5),
        adam(nets[1].parameters(), lr=1e-2, eps=1e-5),
    ]
    x, y = torch.randn(32, 5), torch.randn(32, 3)
    for _ in range(10):
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
    for p_loop, p_fused in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(p_fused, p_loop, rtol=1e-5, atol=1e-6)


def test_flop_count_of_a_linear_layer_forward_and_backward():
    """The bound's numerator: 2·B·in·out for the forward, twice that for the backward (input
    and weight gradients)."""
    layer = nn.Linear(8, 4)
    x = torch.randn(16, 8, requires_grad=True)
    flops = learner_speed.flops_per_call(lambda i: layer(x).sum().backward(), 1)
    assert flops == 3 * 2 * 16 * 8 * 4


def test_script_writes_rates_bounds_and_fractions(tmp_path, capsys):
    out = tmp_path / "speed.json"
    result = learner_speed.main(
        [
            "--devices",
            "cpu,cuda",
            "--cases",
            "dqn,ppo-cartpole",
            "--repeats",
            "1",
            "--seconds",
            "0.2",
            "--matmul-seconds",
            "0.1",
            "--warmup",
            "2",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {r["case"]: r for r in result["results"]}
    assert set(rows) == {"dqn", "ppo-cartpole"}
    dqn = rows["dqn"]
    assert dqn["batch_size"] == 64 and dqn["hidden"] == [128, 128]  # DQN's preset
    assert dqn["per_s"]["median"] > 0 and dqn["flops_per_unit"] > 0
    frac = dqn["fraction_of_bound"]["median"]
    assert frac == pytest.approx(dqn["per_s"]["median"] / dqn["bound_per_s"]["median"], rel=1e-9)
    assert rows["ppo-cartpole"]["epoch_time_ms"]["median"] == pytest.approx(
        1e3 / rows["ppo-cartpole"]["per_s"]["median"]
    )
    if not torch.cuda.is_available():
        assert result["not_run"] == [{"device": "cuda", "reason": "not run here: torch sees no CUDA GPU"}]
        assert "cuda: not run here" in capsys.readouterr().out


def test_replay_batch_has_the_env_dtypes():
    rng = np.random.default_rng(0)
    b = learner_speed.replay_batch(learner_speed.HALFCHEETAH, 10, True, rng)
    assert b.obs.dtype == np.float64 and b.actions.dtype == np.float32 and b.weights is not None
    assert np.all(np.abs(b.actions) <= 1.0)
