"""Replay shards: insert throughput and the learner's sampling rate with W writers over K shards.

Setup, as a run with ``--replay-shards K`` has it: K managed redis-servers (AOF with
``appendfsync always``, a password each, supervised), W writer processes (forked; each an
``open_writer`` of the run's spec with its worker index, so writer i writes to shard
``i mod K``), and this process as the learner: a ``ShardedReplay`` whose mirror threads follow
every shard while it calls ``sample(256)`` in a loop.

Transition: HalfCheetah-sized (obs 17 + action 6 float32, reward, next_obs, flags: 166 bytes),
fragments of ``--fragment`` rows inserted flat out (no environment: the most a shard can take).

Figures per (K, W), over a window of ``--seconds`` once every writer is connected:

* ``insert_tps``: transitions acknowledged by Redis per second, all writers together;
* ``sample_batches_per_s``: the learner's ``sample(256)`` calls per second meanwhile;
* ``redis_cpu``: CPU-seconds per second of each redis-server process (/proc; 1.0 = one core
  busy: the single-threaded server is saturated there);
* ``mirror_lag``: rows in Redis the learner had not mirrored at the end of the window.

``rows_per_redis_cpu_s``: per K, inserts per CPU-second of the redis-servers: the rate at
which one shard's single thread would be saturated.

``saturation_writers``: per K, the fewest writers that reach 90% of that K's best insert rate
(None: still rising at the most writers measured).

Usage:
    python -m benchmarks.replay_shards --out benchmarks/results/replay_shards.json
    python -m benchmarks.replay_shards --shards 1 2 --writers 1 4 16 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from tandem.core.types import Batch
from tandem.replay import RedisReplay, open_writer
from tandem.replay.shards import ShardedReplay, start_managed_shards

OBS, ACT, SAMPLE = 17, 6, 256
TICK = os.sysconf("SC_CLK_TCK")


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def make_batch(n: int, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, OBS), dtype=np.float32)
    return Batch(
        obs=obs,
        actions=rng.standard_normal((n, ACT), dtype=np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_obs=obs + 0.1,
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
    )


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _writer(spec: dict, index: int, fragment: int, ready, start, stop, out) -> None:
    w = open_writer(spec, writer_index=index)
    batch = make_batch(fragment, seed=index)
    w.add(batch)  # connected, scripts loaded: the window measures steady inserts only
    ready.release()
    start.wait()
    n = 0
    while not stop.is_set():
        w.add(batch)
        n += fragment
    out.put(n)
    w.close()


def measure(
    urls: list[str], writers: int, seconds: float, fragment: int, capacity: int, pids: list[int]
) -> dict:
    name = f"bench-shards-{uuid.uuid4().hex[:8]}"
    cap = -(-capacity // len(urls))
    example = make_batch(fragment)
    shards = [RedisReplay(u, name, cap, example=example, seed=i) for i, u in enumerate(urls)]
    spec = {"urls": urls, "name": name, "capacity": cap}
    ctx = mp.get_context("fork")
    ready, start, stop, out = ctx.Semaphore(0), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(spec, i, fragment, ready, start, stop, out), daemon=True)
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=120):
            raise RuntimeError("a writer process did not connect within 120 s")
    learner = ShardedReplay(shards, seed=0)
    learner.sync()
    cpu0 = [cpu_s(p) for p in pids]
    t0 = time.perf_counter()
    start.set()
    samples = 0
    while time.perf_counter() - t0 < seconds:
        learner.sample(SAMPLE)
        samples += 1
    stop.set()
    dt = time.perf_counter() - t0
    cpu = [round((cpu_s(p) - c) / dt, 3) for p, c in zip(pids, cpu0, strict=True)]
    inserted = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    lag = learner.stats()["replay/mirror_lag"]
    learner.close()
    for u in urls:  # free the servers' memory for the next configuration
        RedisReplay(u, name).drop()
    return {
        "shards": len(urls),
        "writers": writers,
        "insert_tps": round(inserted / dt),
        "sample_batches_per_s": round(samples / dt, 1),
        "redis_cpu": cpu,
        "mirror_lag": lag,
        "window_s": round(dt, 2),
    }


def saturation(rows: list[dict]) -> dict[str, int | None]:
    """Per K: the fewest writers that reach 90% of the best insert rate measured for that K
    (None: only the most writers measured got there, so the shard(s) were still not saturated)."""
    out: dict[str, int | None] = {}
    for k in sorted({r["shards"] for r in rows}):
        seq = sorted((r["writers"], r["insert_tps"]) for r in rows if r["shards"] == k)
        best = max(t for _, t in seq)
        w = next(w for w, t in seq if t >= 0.9 * best)
        out[str(k)] = None if w == seq[-1][0] else w
    return out


def rows_per_redis_cpu_s(rows: list[dict]) -> dict[str, float | None]:
    """Per K: the median of ``insert_tps / sum(redis_cpu)`` over the runs, i.e. transitions one
    fully busy redis-server core would take: where one shard saturates, when its writers do not
    run out of CPU first (None: the servers were too idle to measure)."""
    out: dict[str, float | None] = {}
    for k in sorted({r["shards"] for r in rows}):
        vals = [
            r["insert_tps"] / sum(r["redis_cpu"])
            for r in rows
            if r["shards"] == k and sum(r["redis_cpu"]) >= 0.02
        ]
        out[str(k)] = round(float(np.median(vals))) if vals else None
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--fragment", type=int, default=64, help="rows per insert")
    ap.add_argument("--capacity", type=int, default=200_000)
    ap.add_argument(
        "--appendfsync",
        default="always",
        choices=("always", "everysec"),
        help="AOF fsync policy (managed servers: always)",
    )
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    rows = []
    t_start = time.time()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tandem-shards-bench-") as tmp:
        for k in args.shards:
            servers = start_managed_shards(k, Path(tmp) / f"k{k}", appendfsync=args.appendfsync)
            try:
                for w in args.writers:
                    row = measure(
                        [s.url for s in servers],
                        w,
                        args.seconds,
                        args.fragment,
                        args.capacity,
                        [s.pid for s in servers],
                    )
                    log(json.dumps(row))
                    rows.append(row)
            finally:
                for s in servers:
                    s.stop()
    result = {
        "benchmark": "replay_shards",
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_before": [round(x, 1) for x in load0],
            "load_avg_after": [round(x, 1) for x in os.getloadavg()],
            # a 1-minute load above the core count means the figures measure contention too
        },
        "config": {
            "seconds": args.seconds,
            "fragment_rows": args.fragment,
            "row_bytes": 166,
            "capacity": args.capacity,
            "sample_batch": SAMPLE,
            "appendfsync": args.appendfsync,
        },
        "rows": rows,
        "saturation_writers": saturation(rows),
        "rows_per_redis_cpu_s": rows_per_redis_cpu_s(rows),
        "wall_s": round(time.time() - t_start, 1),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
