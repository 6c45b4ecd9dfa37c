"""Hostile input to the dashboard: metrics lines that broke the reader, config fields that
reached Plotly as markup, and requests under a foreign Host name (DNS rebinding)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.core.metrics import METRIC_FIELDS
from tandem.dashboard.data import Run, parse_line, plain
from tandem.dashboard.server import allowed_hosts, host_allowed, make_server
from tests.faults.summary import record

GOOD = {"env_steps": 10, "episodes": 1, "episode_return_mean": 1.0, "episode_returns": [1.0]}

HOSTILE_LINES = {
    "huge_int_env_steps": '{"env_steps": ' + "9" * 400 + "}",
    "huge_int_return": '{"env_steps": 15, "episode_return_mean": ' + "9" * 400 + "}",
    "too_many_digits": '{"env_steps": ' + "9" * 5000 + "}",
    "deep_nesting": '{"env_steps": 15, "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "scalar_episode_returns": '{"env_steps": 15, "episode_returns": 5}',
    "dict_episode_returns": '{"env_steps": 15, "episode_returns": {"a": 1}}',
    "scalar_worker_sps": '{"env_steps": 15, "worker_env_steps_per_s": 7}',
    "nan_literal": '{"env_steps": NaN}',
    "huge_int_hist": '{"env_steps": 15, "replay/uses_hist_live": [' + "9" * 400 + "]}",
}


def write_run(root, name, lines, config=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if config is not None:
        (run / "config.yaml").write_text(config)
    return run


@pytest.mark.parametrize("case", sorted(HOSTILE_LINES))
def test_hostile_metrics_line_neither_stops_the_server_nor_costs_other_rows(tmp_path, case):
    lines = [json.dumps(GOOD), HOSTILE_LINES[case], json.dumps({**GOOD, "env_steps": 20})]
    write_run(tmp_path, "ppo-CartPole-v1-20250101-000000", lines)
    t0 = time.perf_counter()
    server = make_server([tmp_path], port=0, quiet=True)  # reads every line at start-up
    try:
        store = server.store
        (run,) = store.runs.values()
        steps = [v for v in run.cols["env_steps"] if v is not None]
        assert steps[0] == 10 and steps[-1] == 20, steps
        assert len({len(c) for c in run.cols.values()}) == 1  # columns stay aligned
        json.dumps(store.runs_json(), allow_nan=False)
        json.dumps(store.metrics(run.run_id), allow_nan=False)
        issues = [i.message for i in run.issues]
        record(
            f"dashboard_line_{case}",
            started=True,
            rows_kept=run.n_rows,
            issue=issues[0] if issues else None,
            read_s=round(time.perf_counter() - t0, 3),
        )
    finally:
        server.server_close()


def test_hostile_line_in_a_later_poll_keeps_that_polls_valid_rows(tmp_path):
    path = write_run(tmp_path, "dqn-CartPole-v1-20250101-000000", [json.dumps(GOOD)])
    run = Run("r", path)
    run.refresh()
    with open(path / "metrics.jsonl", "a") as f:
        for k, bad in enumerate(HOSTILE_LINES.values()):
            f.write(json.dumps({**GOOD, "env_steps": 100 + k}) + "\n" + bad + "\n")
    run.refresh()
    kept = [v for v in run.cols["env_steps"] if v is not None and v >= 100]
    assert kept == [100.0 + k for k in range(len(HOSTILE_LINES))]
    record(
        "dashboard_poll_mixed", good_rows=len(kept), hostile_lines=len(HOSTILE_LINES), issues=len(run.issues)
    )


def test_hostile_config_and_status_values_are_served_as_json(tmp_path):
    config = (
        "algo: ppo\nenv_id: CartPole-v1\nframework: " + "9" * 5000 + "\nseed: .nan\nworkers: .inf\n"
        "algo_config: {lr: " + "9" * 400 + "}\nextra: " + "[" * 2000 + "]" * 2000 + "\n"
    )
    run = write_run(tmp_path, "ppo-CartPole-v1-20250101-000000", [json.dumps(GOOD)], config)
    (run / "status.json").write_text(
        '{"status": "running", "pid": ' + "9" * 400 + ', "error": ' + "9" * 5000 + "}"
    )
    server = make_server([tmp_path], port=0, quiet=True)
    try:
        body = json.dumps(server.store.runs_json(), allow_nan=False)
        (summary,) = server.store.runs_json()["runs"]
        assert summary["seed"] is None and summary["workers"] is None
        record("dashboard_hostile_config", served_bytes=len(body), status=summary["status"])
    finally:
        server.server_close()


def test_plain_keeps_json_data_and_cuts_what_json_cannot_print():
    assert plain({"a": [1, 2.5, "x", None, True]}) == {"a": [1, 2.5, "x", None, True]}
    assert plain({"a": float("nan"), "b": 10**400, 3: -(2**70)}) == {"a": None, "b": None, "3": None}
    deep = []
    for _ in range(100):
        deep = [deep]
    json.dumps(plain(deep))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=12,
)
row_keys = st.sampled_from(
    sorted(
        set(METRIC_FIELDS)
        | {"episode_returns", "replay/uses_hist_live", "replay_size", "worker_env_steps_per_s"}
    )
) | st.text(max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.dictionaries(row_keys, json_values, max_size=8), max_size=6), raw=st.binary(max_size=64)
)
def test_fuzz_metrics_reader_never_raises_and_keeps_columns_aligned(tmp_path, rows, raw):
    """Property: any metrics file is read without an exception; every row either lands in
    every column or in none; what is served is strict JSON."""
    run_dir = tmp_path / "fuzz"
    run_dir.mkdir(exist_ok=True)
    lines = [json.dumps(r).encode() for r in rows] + [raw.replace(b"\n", b" ")]
    (run_dir / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    parse_line(raw)
    run = Run("fuzz", run_dir)
    run.refresh()
    assert len({len(c) for c in run.cols.values()}) == 1
    assert len({len(c) for c in run.points.values()}) == 1
    json.dumps(run.summary(time.time(), 60), allow_nan=False)
    json.dumps(run.metrics(0), allow_nan=False)


def test_fuzz_summary_row(tmp_path):
    """One summary line for the fuzz above (hypothesis runs its body many times)."""
    record(
        "dashboard_fuzz_metrics_reader", examples=300, property="no exception, aligned columns, strict JSON"
    )


# ------------------------------------------------------------------ Host header


def request(url: str, host: str | None) -> int:
    req = urllib.request.Request(url)
    if host is not None:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture
def served(tmp_path):
    write_run(tmp_path, "ppo-CartPole-v1-20250101-000000", [json.dumps(GOOD)])
    server = make_server([tmp_path], port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_foreign_host_names_are_refused(served):
    port = served.server_address[1]
    base = f"http://127.0.0.1:{port}"
    results = {}
    for host in (
        "attacker.example",
        f"attacker.example:{port}",
        "127.0.0.1.nip.io",
        "evil.localhost.example",
    ):
        for path in ("/", "/api/runs", "/api/run/ppo-CartPole-v1-20250101-000000/config"):
            results[(host, path)] = request(base + path, host)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        results[(host, "/api/runs")] = request(base + "/api/runs", host)
    refused = {k: v for k, v in results.items() if v == 403}
    assert all(v == 403 for (h, _), v in results.items() if "example" in h or "nip.io" in h), results
    assert all(v == 200 for (h, _), v in results.items() if "example" not in h and "nip.io" not in h), results
    record("dashboard_dns_rebinding", requests=len(results), refused=len(refused))


def test_request_without_host_header_is_refused(served):
    port = served.server_address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /api/runs HTTP/1.0\r\n\r\n")
        status = s.recv(64).split(b"\r\n")[0]
    assert b" 403 " in status


def test_allowed_hosts_by_bind_address():
    loop = allowed_hosts("127.0.0.1")
    assert host_allowed("localhost:8050", loop) and host_allowed("[::1]:8050", loop)
    assert not host_allowed("192.168.1.5:8050", loop) and not host_allowed(None, loop)
    wide = allowed_hosts("0.0.0.0")
    assert host_allowed("192.168.1.5:8050", wide) and host_allowed(f"{socket.gethostname()}:8050", wide)
    assert not host_allowed("attacker.example:8050", wide)
