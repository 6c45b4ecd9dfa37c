"""Config fields are text in the plots: a hostile ``framework:`` in config.yaml must not become
a clickable link in a Plotly legend or axis label (Plotly renders names as pseudo-HTML)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from tandem.dashboard.server import STATIC_DIR, make_server
from tests.e2e.conftest import browser  # noqa: F401 - the shared headless-chromium fixture
from tests.faults.summary import record

HOSTILE = '<a href="https://attacker.example/">click me</a>'
JS = (STATIC_DIR / "dashboard.js").read_text()


def test_every_trace_name_and_category_label_is_escaped():
    """Static check, no browser: each ``name:`` of a trace is esc(...) or a literal."""
    names = re.findall(r"\bname:\s*([^,}\n]+)", JS)
    assert names, "no trace names found: the check is stale"
    raw = [n for n in names if not n.startswith(("esc(", '"', "'"))]
    assert raw == [], f"trace names reach Plotly unescaped: {raw}"
    labels = re.search(r"const labels = (.+);", JS).group(1)
    assert labels.startswith("sorted.map((r) => esc("), labels


def hostile_run(root: Path) -> Path:
    run = root / "ppo-CartPole-v1-20250101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        f"algo: ppo\nenv_id: CartPole-v1\nframework: '{HOSTILE}'\nseed: 0\nworkers: 1\n"
    )
    rows = [
        {"env_steps": 100 * k, "episodes": k, "episode_returns": [float(k)], "samples_trained": 100 * k}
        for k in range(1, 6)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


@pytest.mark.e2e
def test_hostile_framework_is_text_not_a_link(tmp_path, browser):  # noqa: F811
    hostile_run(tmp_path / "runs")
    server = make_server([tmp_path / "runs"], port=0, quiet=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(server.url)
        page.wait_for_function(
            "() => { const d = document.getElementById('plot-return-CartPole-v1'); "
            "return d && d.data && d.querySelector('.legend'); }",
            timeout=30_000,
        )
        links = page.evaluate("() => Array.from(document.querySelectorAll('svg a')).map(a => a.outerHTML)")
        legend = page.evaluate(
            "() => Array.from(document.querySelectorAll('.legendtext')).map(t => t.textContent)"
        )
        assert links == [], links
        assert any("<a href" in t for t in legend), legend  # shown as the text it is
        record("dashboard_hostile_legend", svg_links=len(links), legend_entries=len(legend))
    finally:
        context.close()
        server.shutdown()
        server.server_close()
