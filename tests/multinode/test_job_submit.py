"""`ray start --head` + `ray job submit` of `tandem train --address auto`, as deploy/README.md shows.

The head runs with token authentication (Ray 2.60's default for `ray start`): every `ray` command
here carries ``RAY_AUTH_MODE=token`` and the same ``RAY_AUTH_TOKEN``. It gets a private
``--temp-dir`` (so /tmp/ray/ray_current_cluster, which other embedded Rays on this machine would
join, is not written), loopback ports picked here, and ``--block``: teardown stops exactly this
head's process group. (``ray stop`` would stop every Ray on the machine, other users' included.)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.multinode.conftest import ROOT, driver_env, free_port

pytestmark = [pytest.mark.multinode, pytest.mark.timeout(300)]

RAY = str(Path(sys.executable).with_name("ray"))


def ray_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def submit_job(
    url: str, env: dict[str, str], *args: str, timeout: float = 240
) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the job server has no agent to hand the job to.

    The job server answers (``ray job list`` works) before the head's dashboard agent has
    registered, seconds later on a loaded machine; a submission in between is rejected with "No
    available agent to submit job, please try again later" and nothing runs.
    """
    deadline = time.monotonic() + 90
    while True:
        p = ray_cli("job", "submit", "--address", url, *args, env=env, timeout=timeout)
        if "No available agent" not in p.stderr or time.monotonic() > deadline:
            return p
        time.sleep(3)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[tuple[str, dict[str, str]]]:
    """A `ray start --head` node on 127.0.0.1; yields (job server URL, the env of a client)."""
    if not Path(RAY).exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    tmp = Path(tempfile.mkdtemp(prefix="tandem-job-", dir="/tmp"))  # short: Ray's socket paths
    env = driver_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    dashboard = free_port()
    cmd = [
        RAY, "start", "--head", "--block", "--disable-usage-stats",
        "--temp-dir", str(tmp),
        "--node-ip-address", "127.0.0.1",
        "--port", str(free_port()),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
        "--ray-client-server-port", str(free_port()),
        # Ray's fixed defaults (52365, 8085, ...) collide with any other Ray on this machine: then
        # the job server never finds its agent ("No available agent to submit job").
        "--dashboard-agent-listen-port", str(free_port()),
        "--dashboard-agent-grpc-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()),
        "--metrics-export-port", str(free_port()),
        "--num-cpus", "2",
    ]  # fmt: skip
    log = open(tmp / "ray-start.log", "w")  # noqa: SIM115 (closed at teardown)
    head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while ray_cli("job", "list", "--address", url, env=env).returncode != 0:
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"ray start --head did not come up:\n{(tmp / 'ray-start.log').read_text()[-3000:]}"
                )
            time.sleep(2)
        yield url, env
    finally:
        for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(head.pid, sig)  # this head's own process group, nothing else
            except ProcessLookupError:
                break
            try:
                head.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_ray_job_submit_runs_tandem_train_to_success(ray_head, tmp_path):
    url, env = ray_head
    run_dir = tmp_path / "ppo-job"
    job_id = f"tandem-{uuid.uuid4().hex[:8]}"
    runtime_env = {"env_vars": {"PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}}
    submit = submit_job(
        url, env, "--submission-id", job_id,
        "--runtime-env-json", json.dumps(runtime_env),
        "--",
        sys.executable, "-m", "tandem.cli", "train", "--algo", "ppo", "--env", "CartPole-v1",
        "--workers", "2", "--envs-per-worker", "2", "--total-steps", "2048",
        "--address", "auto", "--run-dir", str(run_dir), "--quiet",
    )  # fmt: skip
    status = ray_cli("job", "status", "--address", url, job_id, env=env)
    # `ray job status` prints "Job 'ID' succeeded" for the SUCCEEDED state (other states: "failed", ...)
    assert submit.returncode == 0 and f"Job '{job_id}' succeeded" in status.stdout + status.stderr, (
        f"job {job_id} did not succeed:\n{status.stdout}\n{submit.stdout[-3000:]}\n{submit.stderr[-3000:]}"
    )
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["env_steps"] >= 2048 and rows[-1]["workers"] == 2
    assert json.loads((run_dir / "status.json").read_text())["status"] == "finished"


def test_a_client_without_the_token_is_refused(ray_head, tmp_path):
    """The head really has token authentication on: the same command without the token fails."""
    url, env = ray_head
    no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    no_token["HOME"] = str(tmp_path)  # and no ~/.ray/auth_token to fall back on
    assert ray_cli("job", "list", "--address", url, env=no_token).returncode != 0
