"""The live dashboard in a real headless Chromium (playwright + the system's chromium).

The page is served from copies of the fixture runs; the tests count each panel's traces,
read axis titles, switch the x axis and filters, append rows and watch the plots follow,
and point the dashboard at bad input. A full-page screenshot is saved to $TANDEM_ARTIFACTS.
"""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from tandem.dashboard.server import make_server
from tests.fixtures.runs.make_fixtures import RUNNING, copy_runs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PPO0 = "ppo-CartPole-v1-20250101-100000"
PG = "pg-CartPole-v1-20250101-110000"
RETURN_CARTPOLE = "plot-return-CartPole-v1"
RETURN_PENDULUM = "plot-return-Pendulum-v1"


class Served:
    def __init__(self, roots, quiet=True):
        self.server = make_server(roots, port=0, quiet=quiet)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()
        self.url = self.server.url

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served(tmp_path):
    s = Served([copy_runs(tmp_path / "runs")])
    yield s
    s.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = context.new_page()
    pg.console_lines = []
    pg.on("console", lambda m: pg.console_lines.append((m.type, m.text)))
    pg.page_errors = []
    pg.on("pageerror", lambda e: pg.page_errors.append(str(e)))
    yield pg
    context.close()


def open_dashboard(page, url, plots=(RETURN_CARTPOLE, RETURN_PENDULUM)):
    page.goto(url)
    page.wait_for_function(
        "ids => ids.every(id => { const d = document.getElementById(id); return d && d.data; })",
        arg=list(plots),
        timeout=30_000,
    )


def n_traces(page, div_id: str) -> int:
    return page.evaluate("id => document.getElementById(id).data.length", div_id)


def axis_title(page, div_id: str, axis: str = "xaxis") -> str:
    return page.evaluate("([id, ax]) => document.getElementById(id).layout[ax].title.text", [div_id, axis])


def trace(page, div_id: str, name: str) -> dict:
    return page.evaluate(
        "([id, n]) => { const t = document.getElementById(id).data.find(t => t.name === n);"
        " return t ? {x: Array.from(t.x), y: Array.from(t.y)} : null; }",
        [div_id, name],
    )


def test_every_panel_renders(served, page, artifacts):
    open_dashboard(page, served.url)
    # Sample efficiency, one plot per env. CartPole: 6 runs x (episode dots + smoothed line)
    # + 2 groups of seeds (ppo, dqn) x (min, max band, median) = 18. Pendulum: 1 run = 2.
    assert page.locator("#return-plots .plot-return").count() == 2
    assert n_traces(page, RETURN_CARTPOLE) == 18
    assert n_traces(page, RETURN_PENDULUM) == 2
    assert axis_title(page, RETURN_CARTPOLE) == "Env steps"
    assert axis_title(page, RETURN_CARTPOLE, "yaxis") == "Episode return"
    median = trace(page, RETURN_CARTPOLE, "ppo · tandem · median of 2 seeds")
    assert median and len(median["x"]) > 50
    # The axis titles are drawn, not just configured.
    assert page.locator(f"#{RETURN_CARTPOLE} .xtitle").text_content() == "Env steps"

    # Data reuse: one bar per run, a heatmap row per run plus the mean markers.
    assert n_traces(page, "plot-reuse-ratio") == 1
    bars = page.evaluate("document.getElementById('plot-reuse-ratio').data[0]")
    assert len(bars["x"]) == 7 and sorted(bars["x"])[0] == 1.0 and max(bars["x"]) == 32.0
    assert axis_title(page, "plot-reuse-ratio") == "uses per env step (log scale)"
    assert n_traces(page, "plot-reuse-hist") == 2
    heat = page.evaluate("document.getElementById('plot-reuse-hist').data[0]")
    labels = page.evaluate("document.getElementById('plot-reuse-hist').layout.yaxis.ticktext")
    rows = dict(zip(labels, heat["z"], strict=True))
    pg_row = rows["pg · tandem · seed 0 · on-policy"]
    assert pg_row[1] == 1 and sum(v or 0 for v in pg_row) == 1  # REINFORCE: every transition once
    assert rows["ppo · tandem · seed 0 · on-policy"][10] == 1  # PPO: 10 epochs
    dqn_row = rows["dqn · tandem · seed 0 · off-policy"]
    assert sum(1 for v in dqn_row if v) >= 8  # DQN: a spread
    assert axis_title(page, "plot-reuse-hist") == "times a transition was sampled for training"

    # Throughput: env steps/s = 7 totals + 14 per-worker lines (rllib reports none); replay size:
    # the 3 off-policy runs.
    assert n_traces(page, "plot-sps") == 28  # 21 throughput traces and each run's workers-alive line
    assert n_traces(page, "plot-ups") == 7 and n_traces(page, "plot-lag") == 7
    assert n_traces(page, "plot-replay") == 3
    assert axis_title(page, "plot-replay", "yaxis") == "transitions in replay"

    # Runs table with status badges and config links.
    table = page.locator("#runs-table tbody tr")
    assert table.count() == 7
    statuses = page.locator("#runs-table .badge").all_inner_texts()
    assert (
        statuses.count("running") == 1 and statuses.count("crashed") == 1 and statuses.count("finished") == 5
    )
    link = page.locator(f'#runs-table tr[data-id="{PPO0}"] a.config-link')
    assert "algo: ppo" in page.request.get(served.url + link.get_attribute("href")).text()

    # The malformed line in the pg run is shown in the page and on the browser console.
    assert "metrics.jsonl line 4" in page.locator("#messages .msg.error").first.inner_text()
    assert any("line 4" in text for _, text in page.console_lines)
    assert page.page_errors == []
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    page.locator("#panel-reuse").screenshot(path=str(artifacts / "dashboard-reuse.png"))


def test_x_axis_switch_and_filters(served, page):
    open_dashboard(page, served.url)
    page.click("#x-switch button[data-x='wall_time_s']")
    page.wait_for_function(
        f"document.getElementById('{RETURN_CARTPOLE}').layout.xaxis.title.text.startsWith('Wall')"
    )
    for div in (RETURN_CARTPOLE, RETURN_PENDULUM, "plot-sps", "plot-ups", "plot-lag", "plot-replay"):
        assert axis_title(page, div) == "Wall-clock time (s)"
    page.click("#x-switch button[data-x='grad_updates']")
    page.wait_for_function(
        f"document.getElementById('{RETURN_CARTPOLE}').layout.xaxis.title.text === 'Gradient updates'"
    )
    # A group median recomputed against gradient updates.
    page.wait_for_function(
        f"document.getElementById('{RETURN_CARTPOLE}').data.some(t => t.name.includes('median')"
        " && Math.max(...t.x) > 3000)"
    )

    page.select_option("#filter-env", "Pendulum-v1")
    page.wait_for_function("document.querySelectorAll('#return-plots .plot-return').length === 1")
    assert page.locator("#runs-table tbody tr").count() == 1
    assert n_traces(page, "plot-sps") == 1 + 4 + 1  # ... and the run's workers-alive line
    page.select_option("#filter-env", "")
    page.select_option("#filter-algo", "ppo")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 3")
    assert n_traces(page, RETURN_CARTPOLE) == 3 * 2 + 3
    # Unticking a run removes it from the plots.
    page.click(f'#runs-table tr[data-id="{PPO0}"] input.sel')
    page.wait_for_function(f"document.getElementById('{RETURN_CARTPOLE}').data.length === 4")


def test_plots_follow_new_rows_and_new_runs(served, page, artifacts, tmp_path):
    open_dashboard(page, served.url)
    root = tmp_path / "runs"
    before = trace(page, RETURN_PENDULUM, "sac · tandem · seed 0")
    assert len(before["x"]) == 10
    row = {"env_steps": 14400, "episodes": 72, "wall_time_s": 40.0, "episode_returns": [-200.0] * 6,
           "episode_return_mean": -200.0, "grad_updates": 1800, "samples_trained": 460800,
           "replay_ratio": 32.0, "env_steps_per_s": 410.0, "updates_per_s": 50.0, "workers": 4,
           "policy_lag": 2.0, "replay_size": 14400, "stats/bonus_mean": 0.042}  # fmt: skip
    with open(root / RUNNING / "metrics.jsonl", "a") as f:
        # finish the half-written line, then one more row
        f.write('4.5, "episode_returns": [-300.0]}\n' + json.dumps(row) + "\n")
    page.wait_for_function(
        f"document.getElementById('{RETURN_PENDULUM}').data.find(t => t.name === 'sac · tandem · seed 0')"
        ".x.length === 12",
        timeout=15_000,
    )
    after = trace(page, RETURN_PENDULUM, "sac · tandem · seed 0")
    assert after["x"][-2:] == [13200, 14400]
    replay = trace(page, "plot-replay", "sac · tandem · seed 0")
    assert replay["x"][-1] == 14400 and replay["y"][-1] == 14400
    # The learner's exploration bonus gets its own panel, apart from the env's returns.
    bonus = trace(page, "plot-bonus", "sac · tandem · seed 0")
    assert bonus["x"][-1] == 14400 and bonus["y"][-1] == 0.042
    assert n_traces(page, "plot-bonus") == 1

    # A new seed appears without a reload and joins its group's median.
    new = root / "ppo-CartPole-v1-20250102-000000"
    shutil.copytree(root / PPO0, new)
    cfg = (new / "config.yaml").read_text().replace("seed: 0", "seed: 2")
    (new / "config.yaml").write_text(cfg)
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 8", timeout=15_000)
    page.wait_for_function(
        f"document.getElementById('{RETURN_CARTPOLE}').data"
        ".some(t => t.name === 'ppo · tandem · median of 3 seeds')",
        timeout=15_000,
    )
    assert page.page_errors == []
    page.screenshot(path=str(artifacts / "dashboard-live-update.png"), full_page=True)


def test_bad_input_gets_a_message_not_a_crash(tmp_path, page, capsys):
    (tmp_path / "empty").mkdir()
    s = Served([tmp_path / "missing", tmp_path / "empty"], quiet=False)
    try:
        page.goto(s.url)
        page.wait_for_function("document.querySelectorAll('#messages .msg').length >= 2", timeout=30_000)
        messages = page.locator("#messages").inner_text()
        assert "does not exist" in messages and "no runs found" in messages
        assert "No runs yet" in page.locator("#return-plots").inner_text()
        assert any("does not exist" in text for _, text in page.console_lines)
        # The runs dir gets a run with a malformed line: it shows up, with the message.
        run = tmp_path / "empty" / "pg-CartPole-v1-20250101-000000"
        run.mkdir()
        (run / "metrics.jsonl").write_text(
            '{"env_steps": 100, "episode_returns": [9.0]}\n{"env_steps": 2\n{"env_steps": 300}\n'
        )
        page.wait_for_function(
            "document.getElementById('plot-return-CartPole-v1') && "
            "document.getElementById('plot-return-CartPole-v1').data",
            timeout=15_000,
        )
        page.wait_for_function("document.querySelector('#messages').innerText.includes('line 2')")
        assert page.page_errors == []
    finally:
        s.close()
    err = capsys.readouterr().err
    assert "tandem dashboard: error: runs dir" in err and "does not exist" in err
    assert "metrics.jsonl line 2: not valid JSON" in err and "Traceback" not in err
