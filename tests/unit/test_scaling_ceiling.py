"""The latency benchmark's machine ceiling: the worker loop in plain processes, no Ray."""

from __future__ import annotations

from benchmarks import scaling


def test_process_ceiling_steps_the_latency_env_near_its_sleep_rate():
    step_s = 0.005
    rate = scaling.process_ceiling(2, 1, {"step_time_s": step_s}, fragment=16, seconds=1.0)
    ideal = scaling.ideal_rate(2, 1, step_s)
    # two processes that mostly sleep fit two cores: well above half the ideal, never above it
    assert 0.5 * ideal < rate <= 1.02 * ideal


def test_sleep_cost_is_reported_per_sleep():
    cost = scaling.sleep_cpu_us(0.002, seconds=0.2)
    assert cost["wall_ms_per_sleep"] >= 2.0
    assert 0 <= cost["cpu_us_per_sleep"] < 2000
