"""The dashboard's HTTP API over the fixture runs, and the CLI's handling of user mistakes."""

from __future__ import annotations

import argparse
import json
import socket
import threading
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

from tandem.cli import main
from tandem.cli import register_dashboard as register
from tandem.dashboard.server import make_server
from tests.fixtures.runs.make_fixtures import RUNNING, copy_runs

PG = "pg-CartPole-v1-20250101-110000"
PPO0 = "ppo-CartPole-v1-20250101-100000"
PPO1 = "ppo-CartPole-v1-20250101-100500"


@pytest.fixture
def served(tmp_path):
    root = copy_runs(tmp_path / "runs")
    server = make_server([root], port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.url, root
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def get_json(url: str):
    status, ctype, body = get(url)
    assert status == 200 and ctype == "application/json", (status, body[:200])
    return json.loads(body)


def test_api_runs_metrics_config_groups(served):
    url, root = served
    data = get_json(url + "api/runs")
    runs = {r["id"]: r for r in data["runs"]}
    assert len(runs) == 7 and runs[RUNNING]["status"] == "running"
    assert data["x_axes"]["env_steps"] == "Env steps" and data["uses_bins"][1] == "1"
    assert any("line 4" in i["message"] for i in runs[PG]["issues"])

    m = get_json(url + f"api/run/{quote(PPO0)}/metrics?since=0")
    assert m["next"] == 12 and len(m["cols"]["env_steps"]) == 12
    tail = get_json(url + f"api/run/{quote(PPO0)}/metrics?since=10")
    assert tail["since"] == 10 and tail["cols"]["env_steps"] == m["cols"]["env_steps"][10:]
    assert set(tail["points"]["row"]) == {10, 11}

    # New rows appear on the next poll, without a restart.
    with open(root / PPO0 / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"env_steps": 26624, "episodes": 210, "episode_returns": [500.0]}) + "\n")
    assert {r["id"]: r for r in get_json(url + "api/runs")["runs"]}[PPO0]["rows"] == 13
    assert get_json(url + f"api/run/{quote(PPO0)}/metrics?since=12")["cols"]["env_steps"] == [26624]

    status, ctype, body = get(url + f"api/run/{quote(PPO0)}/config")
    assert status == 200 and ctype.startswith("text/plain") and b"algo: ppo" in body

    groups = get_json(url + f"api/groups?x=grad_updates&ids={quote(PPO0)},{quote(PPO1)},{quote(PG)}")
    (g,) = groups.values()
    assert sorted(g["members"]) == [PPO0, PPO1] and len(g["x"]) > 10


def test_static_files_are_served_offline(served):
    url, _ = served
    status, ctype, body = get(url)
    assert status == 200 and ctype.startswith("text/html")
    page = body.decode()
    assert "static/plotly.min.js" in page and "https://" not in page and "http://" not in page
    status, ctype, body = get(url + "static/plotly.min.js")
    assert status == 200 and ctype.startswith("text/javascript") and len(body) > 1_000_000
    for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, ctype, _ = get(url + "static/" + name)
        assert status == 200 and ctype.startswith(kind)


def test_unknown_paths_and_bad_queries(served):
    url, _ = served
    assert get(url + "static/../dashboard.py")[0] == 404
    assert get(url + "static/%2e%2e/dashboard_data.py")[0] == 404
    assert get(url + "api/run/nope/metrics")[0] == 404
    assert get(url + f"api/run/{quote(PPO0)}/metrics?since=x")[0] == 400
    status, _, body = get(url + "api/groups?x=episodes&ids=a")
    assert status == 400 and b"unknown x axis" in body


def test_register_adds_subcommands_with_funcs():
    parser = argparse.ArgumentParser(prog="tandem")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dashboard", "a", "b", "--port", "0"])
    assert args.runs_dirs == ["a", "b"] and args.host == "127.0.0.1" and callable(args.func)
    args = parser.parse_args(["report", "runs", "-o", "x.html", "--png"])
    assert args.output == "x.html" and args.png and callable(args.func)


@pytest.mark.parametrize("port", ["80000", "http"])
def test_bad_port_is_a_one_line_usage_error(port, capsys):
    with pytest.raises(SystemExit) as e:
        main(["dashboard", "runs", "--port", port])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "port must be" in err and "Traceback" not in err


def test_port_in_use_is_a_one_line_error(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["dashboard", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tandem dashboard: error: port {port} on 127.0.0.1 is in use; pick another with --port"


def test_report_missing_or_empty_runs_dir_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err.strip().endswith("does not exist")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tandem report: error: no runs found in") and "\n" not in err
    assert not (tmp_path / "r.html").exists()
