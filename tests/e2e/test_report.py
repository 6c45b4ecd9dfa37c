"""``tandem report``: the HTML opens offline in Chromium with every plot; --png writes images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tandem.cli import main
from tests.fixtures.runs.make_fixtures import copy_runs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RETURN_CARTPOLE = "plot-return-CartPole-v1"


@pytest.fixture(scope="module")
def report(tmp_path_factory, artifacts):
    """The report of the fixture runs, written once with --png."""
    tmp = tmp_path_factory.mktemp("report")
    root = copy_runs(tmp / "runs", live=False)
    out = tmp / "out" / "report.html"
    assert main(["report", str(root), "-o", str(out), "--png"]) == 0
    for f in out.parent.iterdir():
        shutil.copy(f, artifacts / f.name)
    return out


def open_offline(browser, path: Path):
    """Open a file with every non-file request blocked and recorded."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, offline=True)
    page = context.new_page()
    page.blocked, page.errors, page.console_lines = [], [], []

    def route(r):
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            page.blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.console_lines.append(m.text))
    page.goto(path.as_uri())
    page.wait_for_function(
        f"document.getElementById('{RETURN_CARTPOLE}') && document.getElementById('{RETURN_CARTPOLE}').data",
        timeout=30_000,
    )
    return context, page


def n_traces(page, div_id: str) -> int:
    return page.evaluate("id => document.getElementById(id).data.length", div_id)


def test_report_is_self_contained_and_opens_offline(browser, report, artifacts):
    html = report.read_text()
    assert "<script src=" not in html and 'rel="stylesheet" href=' not in html
    assert len(html) > 3_000_000  # plotly.js is inside
    context, page = open_offline(browser, report)
    try:
        assert page.blocked == [] and page.errors == []
        # The same plots as the dashboard (the SAC run is crashed here: its pid is gone).
        assert n_traces(page, RETURN_CARTPOLE) == 18
        assert n_traces(page, "plot-return-Pendulum-v1") == 2
        assert n_traces(page, "plot-reuse-ratio") == 1 and n_traces(page, "plot-reuse-hist") == 2
        assert n_traces(page, "plot-sps") == 28 and n_traces(page, "plot-replay") == 3
        assert page.locator("#runs-table tbody tr").count() == 7
        assert "report" in page.locator("#live-text").inner_text()
        assert "metrics.jsonl line 4" in page.locator("#messages").inner_text()
        # The x-axis switch works offline (bands were computed for every axis).
        page.click("#x-switch button[data-x='wall_time_s']")
        page.wait_for_function(
            f"document.getElementById('{RETURN_CARTPOLE}').layout.xaxis.title.text === 'Wall-clock time (s)'"
        )
        assert any("median" in t for t in page.evaluate(f"document.getElementById('{RETURN_CARTPOLE}')"
                                                         ".data.map(t => t.name)"))  # fmt: skip
        # Config links open the embedded config.
        page.click('#runs-table tr[data-id="ppo-CartPole-v1-20250101-100000"] a.config-link')
        cfg = page.locator('details[id="config-ppo-CartPole-v1-20250101-100000"]')
        page.wait_for_function("document.querySelector('details[open]') !== null")
        assert "algo: ppo" in cfg.inner_text()
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        assert page.blocked == [] and page.errors == []
    finally:
        context.close()


def test_report_png_images(report):
    for panel in ("efficiency", "reuse", "throughput", "runs"):
        png = report.parent / f"report-{panel}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_report_prints_malformed_lines(tmp_path, capsys):
    root = copy_runs(tmp_path / "runs", live=False)
    assert main(["report", str(root), "-o", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert "tandem report: error:" in err and "metrics.jsonl line 4: not valid JSON" in err
    assert "Traceback" not in err
