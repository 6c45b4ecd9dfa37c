"""The embedded local Ray: always a fresh one (never a stale ``ray start`` cluster), and
listening on loopback only. Each case runs in its own process with its own Ray temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.faults.summary import record

ROOT = Path(__file__).resolve().parents[2]

# Lists the TCP listeners of this process's Ray: its session's processes and their children,
# matched to /proc/net/tcp{,6} by socket inode (no `ss` needed on a bare machine).
LISTENERS = r"""
import json, os, sys
import ray
from tandem.cluster.group import init_ray

how = init_ray(None, 1)
@ray.remote
def pid():
    return os.getpid()
ray.get([pid.remote() for _ in range(2)])
session = os.path.basename(ray._private.worker.global_worker.node.get_session_dir_path())
pids = {os.getpid()}
def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None
for d in filter(str.isdigit, os.listdir("/proc")):
    if session in (read(f"/proc/{d}/cmdline", "rb") or b"").decode(errors="replace"):
        pids.add(int(d))
grew = True
while grew:
    grew = False
    for d in filter(str.isdigit, os.listdir("/proc")):
        stat = read(f"/proc/{d}/stat")
        if stat and int(d) not in pids and int(stat.rsplit(")", 1)[1].split()[1]) in pids:
            pids.add(int(d)); grew = True
inodes = {}
for p in pids:
    try:
        for fd in os.listdir(f"/proc/{p}/fd"):
            link = os.readlink(f"/proc/{p}/fd/{fd}")
            if link.startswith("socket:["):
                inodes[link[8:-1]] = p
    except OSError:
        pass
def addr(hexaddr, v6):
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if v6:
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        raw = b"".join(words)
        import ipaddress
        a = ipaddress.IPv6Address(raw)
        text = str(a.ipv4_mapped) if a.ipv4_mapped else str(a)
    else:
        text = ".".join(str(b) for b in raw[::-1])
    return text, int(port, 16)
out = []
for name, v6 in (("tcp", False), ("tcp6", True)):
    for line in (read(f"/proc/net/{name}") or "").splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
            ip, port = addr(f[1], v6)
            comm = (read(f"/proc/{inodes[f[9]]}/comm") or "?").strip()
            out.append([ip, port, comm])
ray.shutdown()
print(json.dumps({"how": how, "listeners": out}))
"""


def run_py(code: str, ray_tmp: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture
def ray_tmp():
    # Short: Ray's unix socket paths under it must stay below 108 bytes.
    with tempfile.TemporaryDirectory(prefix="tf", dir="/tmp") as d:
        yield d


@pytest.mark.integration
def test_a_stale_ray_start_address_file_does_not_break_the_embedded_ray(ray_tmp):
    """`ray start --head` leaves <tmp>/ray/ray_current_cluster; once that cluster is gone a
    plain ray.init() tried to join it and died with ValueError."""
    (Path(ray_tmp) / "ray").mkdir()
    (Path(ray_tmp) / "ray" / "ray_current_cluster").write_text("127.0.0.1:1")
    p = run_py(LISTENERS, ray_tmp)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["how"] == "local"
    record("ray_stale_address_file", started=True, how=result["how"])


@pytest.mark.integration
def test_embedded_ray_listens_on_loopback_only(ray_tmp):
    p = run_py(LISTENERS, ray_tmp)
    assert p.returncode == 0, p.stderr[-2000:]
    listeners = json.loads(p.stdout.strip().splitlines()[-1])["listeners"]
    assert listeners, "found no listeners: the probe is broken"
    exposed = [x for x in listeners if x[0] not in ("127.0.0.1", "::1")]
    record(
        "ray_local_listeners",
        listeners=len(listeners),
        not_loopback=len(exposed),
        detail=sorted(f"{ip}:{port} {comm}" for ip, port, comm in listeners),
    )
    assert exposed == [], exposed
