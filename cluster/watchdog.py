"""Tie an embedded Ray's processes to the driver that started it.

``ray.init()`` without an address starts a GCS, a raylet and their helpers as children of the
driver. When the driver exits cleanly Ray stops them all. When it is SIGKILLed (the OOM killer,
``kill -9``, a lost container), Ray's reaper stops the GCS and the raylet at once, but the
raylet's dashboard agent and runtime-env agent were measured here to outlive the driver for
more than 150 s (issue 13), holding ports and memory.

The watchdog is a small separate process (one per driver, whatever the number of ``ray.init``
calls): it notes the driver's Ray descendants every ``SCAN_S`` seconds, and when the driver is
gone (the pipe it holds reaches EOF, however the driver died) it sends them SIGTERM, then
SIGKILL to what is left a second later. A process is only signalled if it is still the one that
was noted (same pid and start time), so a recycled pid is never hit.
"""

from __future__ import annotations

import subprocess
import sys

SCAN_S = 1.0
"""Seconds between scans of the driver's descendants (a scan reads /proc: about 5 ms)."""

_WATCHDOG = r"""
import os, select, signal, sys, time

driver, scan_s = int(sys.argv[1]), float(sys.argv[2])


def table():
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        procs[int(name)] = (int(rest[1]), rest[19], cmd)  # ppid, start time, argv
    return procs


def ray_descendants():
    procs = table()
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [driver]
    while todo:
        for kid in children.get(todo.pop(), []):
            todo.append(kid)
            _, start, cmd = procs[kid]
            if kid != os.getpid() and (cmd.startswith(b"ray::") or b"/ray/" in cmd):
                out[kid] = start
    return out


def same(pid, start):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return rest[19] == start and rest[0] != "Z"


seen = {}
while True:
    seen.update(ray_descendants())
    ready, _, _ = select.select([sys.stdin], [], [], scan_s)
    if ready and not os.read(sys.stdin.fileno(), 1):
        break  # EOF: the driver is gone
for sig in (signal.SIGTERM, signal.SIGKILL):
    alive = [p for p, start in seen.items() if same(p, start)]
    for p in alive:
        try:
            os.kill(p, sig)
        except OSError:
            pass
    if not alive:
        break
    time.sleep(1.0)
"""

_proc: subprocess.Popen | None = None


def tie_ray_to_driver() -> None:
    """Start this process's watchdog (Linux only; once per process)."""
    global _proc
    if not sys.platform.startswith("linux") or (_proc is not None and _proc.poll() is None):
        return
    import os

    _proc = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(SCAN_S)],
        stdin=subprocess.PIPE,  # held by this process only: EOF when it dies
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the driver's process group: a Ctrl-C must not stop it
        close_fds=True,
    )
