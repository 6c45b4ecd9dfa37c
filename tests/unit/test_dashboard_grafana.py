"""deploy/grafana/tandem.json queries exactly the metrics that cluster.telemetry.RayMetrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tandem.cluster.telemetry import RAY_COUNTERS, RAY_GAUGES, WORKER_GAUGE

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tandem.json"


def exported_names() -> set[str]:
    # Ray prefixes application metrics with "ray_"; Prometheus counters end in "_total".
    return (
        {f"ray_{n}" for n in RAY_GAUGES} | {f"ray_{n}_total" for n in RAY_COUNTERS} | {f"ray_{WORKER_GAUGE}"}
    )


def test_grafana_dashboard_matches_exported_metrics():
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bray_tandem_\w+", e)}
    assert used == exported_names(), used ^ exported_names()
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}" and p["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert {"run", "algo", "env"} <= set(variables)
    assert all('run=~"$run"' in e for e in exprs)
