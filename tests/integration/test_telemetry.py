"""Telemetry round trips: TensorBoard event files read back, Ray metrics scraped from Prometheus."""

from __future__ import annotations

import importlib.util
import re
import socket
import time
import urllib.request

import pytest

from tandem.cluster.telemetry import RAY_COUNTERS, RAY_GAUGES, WORKER_GAUGE, RayMetrics, write_tensorboard
from tandem.core.metrics import METRIC_FIELDS, MetricsRow


def rows() -> list[dict]:
    out = []
    for i in range(1, 4):
        out.append(
            MetricsRow(
                env_steps=1000 * i,
                episodes=10 * i,
                wall_time_s=1.5 * i,
                episode_return_mean=None if i == 2 else 20.0 + i,
                episode_returns=[20.0 + i, 21.0 + i],
                grad_updates=50 * i,
                samples_trained=8000 * i,
                replay_ratio=8.0,
                env_steps_per_s=600.0 + i,
                updates_per_s=30.0 + i,
                workers=2,
                policy_lag=1.25 * i,
                extra={
                    "loss/policy": 0.1 * i,
                    "stats/entropy": 0.6,
                    "replay_size": 900 * i,
                    "replay/uses_hist_live": [1, 2, 3],
                    "worker_env_steps_per_s": [300.0, 300.0 + i],
                },
            ).to_json()
        )
    return out


def test_write_tensorboard_round_trips_every_scalar_field(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    data = rows()
    writer = SummaryWriter(str(tmp_path / "tb"))
    for row in data:
        write_tensorboard(writer, row, step=row["env_steps"])
    writer.close()

    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    scalar_fields = [f for f in METRIC_FIELDS if f != "episode_returns"]
    assert set(scalar_fields) <= tags, f"missing: {set(scalar_fields) - tags}"
    assert {"loss/policy", "stats/entropy", "replay_size"} <= tags
    # Lists are not scalars: not written.
    assert not tags & {"episode_returns", "replay/uses_hist_live", "worker_env_steps_per_s"}
    for name in scalar_fields + ["loss/policy", "replay_size"]:
        expected = [(r["env_steps"], float(r[name])) for r in data if r[name] is not None]
        got = [(e.step, e.value) for e in acc.Scalars(name)]
        assert [s for s, _ in got] == [s for s, _ in expected], name
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6), name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_metrics_agent() -> bool:
    # Ray's Prometheus export runs in the dashboard agent, which needs the ray[default] extras.
    return all(importlib.util.find_spec(m) for m in ("aiohttp", "prometheus_client", "opentelemetry"))


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.skipif(not _has_metrics_agent(), reason="Prometheus export needs ray[default] (aiohttp, ...)")
def test_ray_metrics_reach_prometheus_endpoint():
    import ray

    if ray.is_initialized():
        ray.shutdown()  # a test that cannot fail by skipping: start from a clean slate
    port = _free_port()
    ray.init(num_cpus=1, include_dashboard=False, _metrics_export_port=port, log_to_driver=False)
    try:
        metrics = RayMetrics(run="test-run", algo="dqn", env="CartPole-v1")
        for row in rows():
            metrics.record(row)
        want = (
            [f"ray_{n}" for n in RAY_GAUGES if n != "tandem_episode_return_mean"]
            + [f"ray_{n}_total" for n in RAY_COUNTERS]
            + [f"ray_{WORKER_GAUGE}", "ray_tandem_episode_return_mean"]
        )
        text, deadline = "", time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            except OSError:
                text = ""
            if all(re.search(rf"^{n}{{", text, re.M) for n in want):
                break
            time.sleep(1.0)
        missing = [n for n in want if not re.search(rf"^{n}{{", text, re.M)]
        assert not missing, f"not exported within 60 s: {missing}"

        def value(name: str, **tags) -> float:
            for line in text.splitlines():
                if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in tags.items()):
                    return float(line.rsplit(" ", 1)[1])
            raise AssertionError(f"{name} {tags} not in scrape")

        assert value("ray_tandem_env_steps_total", run="test-run") == 3000
        assert value("ray_tandem_grad_updates_total", run="test-run") == 150
        assert value("ray_tandem_replay_size", run="test-run", algo="dqn", env="CartPole-v1") == 2700
        assert value("ray_tandem_policy_lag", run="test-run") == pytest.approx(3.75)
        assert value("ray_tandem_episode_return_mean", run="test-run") == pytest.approx(23.0)
        assert value("ray_tandem_worker_env_steps_per_s", run="test-run", worker="1") == pytest.approx(303.0)
    finally:
        ray.shutdown()


def test_ray_metrics_record_is_a_no_op_without_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()  # a test that cannot fail by skipping: start from a clean slate
    m = RayMetrics()
    m.record(rows()[0])  # no ray.init: nothing to export to, and no error
    assert m._gauges == {}
