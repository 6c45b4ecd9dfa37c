"""Replay throughput: InMemoryReplay vs RedisReplay (vs RLlib's buffer). Prints one JSON object.

Transition: HalfCheetah-sized (obs 17 float32, action 6 float32, reward, next_obs,
terminated, truncated: 166 bytes). Fragments and samples of 256. The ring is filled to
``--capacity`` before sampling, so gathers touch the whole buffer as in a long run.

What is timed:

* ``insert_tps``: ``add(batch_of_256)`` in a loop. 1 writer: this process. 4 writers: four
  threads on one ``InMemoryReplay``; four processes (each its own ``RedisReplay``, its own
  writer id) on one Redis buffer, started together, transitions counted over the window.
* ``sample_tps``: ``sample(256)`` in a loop, returning a ``Batch``. For Redis, the reader's
  mirror is caught up first (``mirror_catchup_tps`` times that: a new reader pulling the full
  ring); ``redis_uniform_live_writer`` samples while a writer process inserts flat out;
  ``redis_no_prefetch`` makes every sample ask Redis for new rows first (one round trip).
* ``learner``: a SAC update (actor 256x256, two 256x256 critics with targets, learned
  temperature; torch, CPU) fed by ``sample(256)`` from a full, static buffer: blocks of 4
  updates alternate memory / Redis (ABBA) for ``--rounds x --seconds`` each, so drifting
  machine load hits both alike; the ratio is of total updates/s (and, as checks, of median
  block times and of updates per CPU-second of this process, mirror thread included: the
  figure least disturbed by other processes on a shared machine). ``live_writer``
  alternates ``--live-rounds`` rounds of ``--seconds`` while ``--live-rate`` transitions/s
  arrive: a writer process feeds Redis; for memory a thread adds them in-process while the
  same writer process runs against another Redis buffer, so both carry the same load.
  ``mirror_thread_cpu_fraction_at_live_rate`` is the CPU the Redis reader's mirror thread
  takes at that rate (the learner's real overhead).
* ``rllib``: ``ray.rllib`` ``ReplayBuffer`` (old API stack, timestep storage) ``sample(256)``,
  in a subprocess (``--skip-rllib`` to leave it out; importing ray takes a while).

Usage:
    python -m benchmarks.replay                      # private redis-server, capacity 1M
    python -m benchmarks.replay --url redis://host:6379/0 --capacity 200000 --seconds 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import redis

from tandem.core.types import Batch
from tandem.replay import InMemoryReplay, ManagedRedis, RedisReplay, open_writer

OBS, ACT, B = 17, 6, 256


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def make_batch(n: int = B, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, OBS), dtype=np.float32)
    return Batch(
        obs=obs,
        actions=rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        rewards=rng.standard_normal(n, dtype=np.float32),
        next_obs=obs + 0.01,
        terminated=rng.random(n) < 0.001,
        truncated=rng.random(n) < 0.001,
    )


def rate(fn, seconds: float, per_call: int = B) -> float:
    """Calls of ``fn`` per second x ``per_call``, over about ``seconds`` (after a warm-up)."""
    for _ in range(3):
        fn()
    n, t0 = 0, time.perf_counter()
    while (dt := time.perf_counter() - t0) < seconds:
        fn()
        n += 1
    return n * per_call / dt


# ------------------------------------------------------------------------------ writers


def _redis_writer(url: str, name: str, seconds: float, start, out, rate_limit: float | None = None) -> None:
    """A writer process: add 256-row fragments for ``seconds`` (at most ``rate_limit``/s),
    through the writer workers use (``open_writer``)."""
    r = open_writer({"url": url, "name": name})
    batches = [make_batch(seed=i) for i in range(8)]
    out.put("ready")
    start.wait()
    n, t0 = 0, time.perf_counter()
    while (dt := time.perf_counter() - t0) < seconds:
        r.add(batches[n % 8])
        n += 1
        if rate_limit:
            time.sleep(max(0.0, n * B / rate_limit - (time.perf_counter() - t0)))
    out.put((n * B, dt))
    r.close()


def redis_writers(url: str, name: str, k: int, seconds: float, rate_limit: float | None = None):
    """Start ``k`` writer processes together; returns (join() -> transitions/s)."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_redis_writer, args=(url, name, seconds, start, out, rate_limit)) for _ in range(k)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert out.get(timeout=120) == "ready"
    start.set()

    def join() -> float:
        res = [out.get(timeout=seconds + 60) for _ in procs]
        start.clear()  # (keeps the Event alive until every child has used it)
        for p in procs:
            p.join()
        return sum(n for n, _ in res) / max(dt for _, dt in res)

    return join


def memory_writer_threads(r: InMemoryReplay, k: int, seconds: float) -> float:
    counts = [0] * k
    batches = [make_batch(seed=i) for i in range(8)]

    def run(i: int) -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            r.add(batches[counts[i] % 8])
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) * B / (time.perf_counter() - t0)


def fill(r, capacity: int) -> None:
    batches = [make_batch(seed=i) for i in range(8)]
    for i in range(-(-capacity // B)):
        r.add(batches[i % 8])


# ------------------------------------------------------------------------------ learner


def make_sac(seed: int = 0):
    """A self-contained SAC update (Haarnoja et al. 2018) of CleanRL's shape."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def mlp(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, o))

    actor, q1, q2 = mlp(OBS, 2 * ACT), mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
    q1_t, q2_t = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
    q1_t.load_state_dict(q1.state_dict())
    q2_t.load_state_dict(q2.state_dict())
    log_alpha = torch.zeros(1, requires_grad=True)
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
    pi_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    a_opt = torch.optim.Adam([log_alpha], lr=3e-4)
    gamma, tau, target_entropy = 0.99, 0.005, -float(ACT)

    def pi(obs):
        mu, log_std = actor(obs).chunk(2, dim=-1)
        std = log_std.clamp(-5, 2).exp()
        u = mu + std * torch.randn_like(mu)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mu) / std) ** 2 - std.log() - 0.5 * np.log(2 * np.pi)).sum(-1)
        logp = logp - torch.log(1 - a.pow(2) + 1e-6).sum(-1)
        return a, logp

    def update(b: Batch) -> float:
        obs, act = torch.from_numpy(b.obs), torch.from_numpy(b.actions)
        rew, nxt = torch.from_numpy(b.rewards), torch.from_numpy(b.next_obs)
        done = torch.from_numpy(b.terminated).float()
        w = torch.from_numpy(b.weights) if b.weights is not None else torch.ones_like(rew)
        alpha = log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = pi(nxt)
            x2 = torch.cat([nxt, a2], -1)
            q_next = torch.min(q1_t(x2), q2_t(x2)).squeeze(-1) - alpha * logp2
            target = rew + gamma * (1 - done) * q_next
        x = torch.cat([obs, act], -1)
        q_loss = (w * ((q1(x).squeeze(-1) - target) ** 2 + (q2(x).squeeze(-1) - target) ** 2)).mean()
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        a, logp = pi(obs)
        xa = torch.cat([obs, a], -1)
        pi_loss = (alpha * logp - torch.min(q1(xa), q2(xa)).squeeze(-1)).mean()
        pi_opt.zero_grad()
        pi_loss.backward()
        pi_opt.step()
        a_loss = -(log_alpha * (logp.detach() + target_entropy)).mean()
        a_opt.zero_grad()
        a_loss.backward()
        a_opt.step()
        with torch.no_grad():
            for net, tgt in ((q1, q1_t), (q2, q2_t)):
                for p, pt in zip(net.parameters(), tgt.parameters(), strict=True):
                    pt.mul_(1 - tau).add_(p, alpha=tau)
        return q_loss.item()

    return update


def interleaved(mem, red, update, seconds: float, block: int = 4) -> dict:
    """Updates/s fed from ``mem`` and from ``red``, in alternating blocks of ``block`` updates
    (ABBA order) for ``seconds`` each, so that load drifting on a shared machine hits both."""
    times: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, list[float]] = {0: [], 1: []}
    pair = (mem, red)
    end = time.perf_counter() + 2 * seconds
    i = 0
    while time.perf_counter() < end or i % 2:
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(block):
                update(pair[k].sample(B))
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
        i += 1
    ups = [block * len(times[k]) / sum(times[k]) for k in (0, 1)]
    med = [block / statistics.median(times[k]) for k in (0, 1)]
    per_cpu = [block * len(cpu[k]) / sum(cpu[k]) for k in (0, 1)]
    return {
        "updates_per_s_memory": round(ups[0], 1),
        "updates_per_s_redis": round(ups[1], 1),
        "ratio_redis_over_memory": round(ups[1] / ups[0], 3),
        "ratio_of_median_blocks": round(med[1] / med[0], 3),
        "updates_per_cpu_s_memory": round(per_cpu[0], 1),
        "updates_per_cpu_s_redis": round(per_cpu[1], 1),
        "ratio_per_cpu_s": round(per_cpu[1] / per_cpu[0], 3),
        "blocks_each": len(times[0]),
    }


def updates_per_s(replay, update, seconds: float) -> float:
    return rate(lambda: update(replay.sample(B)), seconds, per_call=1)


def updates_wall_and_cpu(replay, update, seconds: float) -> tuple[float, float]:
    """(updates per wall second, updates per CPU second of this whole process)."""
    for _ in range(3):
        update(replay.sample(B))
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        update(replay.sample(B))
        n += 1
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


# ------------------------------------------------------------------------------ rllib

RLLIB_CODE = """
import json, time, numpy as np
from ray.rllib.utils.replay_buffers.replay_buffer import ReplayBuffer, StorageUnit
from ray.rllib.policy.sample_batch import SampleBatch
cap, secs, n = {cap}, {secs}, 256
rb = ReplayBuffer(capacity=cap, storage_unit=StorageUnit.TIMESTEPS)
rng = np.random.default_rng(0)
for i in range(-(-cap // n)):
    rb.add(SampleBatch({{"obs": rng.standard_normal((n, 17), dtype=np.float32),
        "actions": np.zeros((n, 6), np.float32), "rewards": np.zeros(n, np.float32),
        "new_obs": np.zeros((n, 17), np.float32), "terminateds": np.zeros(n, bool),
        "truncateds": np.zeros(n, bool)}}))
for _ in range(3):
    rb.sample(n)
k, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < secs:
    rb.sample(n)
    k += 1
print(json.dumps({{"sample_tps": k * n / (time.perf_counter() - t0), "capacity": cap}}))
"""


def rllib_sample_tps(capacity: int, seconds: float) -> dict:
    code = RLLIB_CODE.format(cap=capacity, secs=seconds)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as e:  # pragma: no cover - reference only
        return {"error": f"{type(e).__name__}: {e}"}


def aof_insert_tps(seconds: float, fragments: tuple[int, ...] = (32, 256)) -> dict:
    """Insert transitions/s through ``open_writer`` into a managed Redis without AOF and with
    ``appendfsync everysec`` / ``always``, its files under ``runs/`` (the disk run dirs use),
    for 1 writer at each fragment size and 4 writer processes at 256 rows."""
    import shutil
    import tempfile

    base = Path("runs")
    base.mkdir(exist_ok=True)
    out: dict = {}
    for policy in ("no", "everysec", "always"):
        d = Path(tempfile.mkdtemp(prefix="aof-bench-", dir=base))
        server = ManagedRedis(dir=d, aof=policy != "no", appendfsync="everysec" if policy == "no" else policy)
        try:
            name = f"aof-{policy}"
            w = open_writer({"url": server.url, "name": name, "capacity": 200_000})
            row = {}
            for k in fragments:
                b = make_batch(k)
                w.add(b)  # creates the buffer
                row[f"1w_{k}"] = round(rate(lambda b=b, w=w: w.add(b), seconds, per_call=k))
            row["4w_256"] = round(redis_writers(server.url, name, 4, seconds)())
            w.close()
            out[f"aof_{policy}"] = row
        finally:
            server.stop()
            shutil.rmtree(d, ignore_errors=True)
    ev, al = out["aof_everysec"], out["aof_always"]
    out["always_over_everysec"] = {k: round(al[k] / ev[k], 3) for k in ev}
    return out


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="Redis URL (default: a private redis-server)")
    ap.add_argument("--capacity", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each timed window")
    ap.add_argument("--rounds", type=int, default=5, help="learner: seconds x rounds per source")
    ap.add_argument("--live-rounds", type=int, default=4, help="alternating rounds with a live writer")
    ap.add_argument("--live-rate", type=float, default=20_000, help="transitions/s of the live writer")
    ap.add_argument("--rllib-capacity", type=int, default=100_000)
    ap.add_argument("--skip-rllib", action="store_true")
    ap.add_argument("--aof", action="store_true", help="also time inserts under AOF fsync policies")
    ap.add_argument("--aof-only", action="store_true", help="only the AOF comparison")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (1: an oversubscribed machine makes OpenMP spin)",
    )
    args = ap.parse_args(argv)
    secs, cap = args.seconds, args.capacity
    if args.aof_only:
        res = {"aof_insert_tps": aof_insert_tps(secs), "load_avg_1m": round(os.getloadavg()[0], 2)}
        print(json.dumps(res))
        return res

    server = None if args.url else ManagedRedis()
    url = args.url or server.url
    name = f"bench-{uuid.uuid4().hex[:8]}"
    res: dict = {
        "config": {
            "obs_dim": OBS,
            "act_dim": ACT,
            "batch": B,
            "row_bytes": make_batch(1).obs.nbytes * 2 + 24 + 4 + 2,
            "capacity": cap,
            "seconds": secs,
            "cpus": os.cpu_count(),
            "torch_threads": args.torch_threads,
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        }
    }
    try:
        example = make_batch()
        # ---- inserts
        log("insert: memory")
        mem = InMemoryReplay(cap, example=example)
        b0 = make_batch()
        ins = {"memory_1w": rate(lambda: mem.add(b0), secs)}
        ins["memory_4w"] = memory_writer_threads(mem, 4, secs)
        log("insert: redis")
        rw = RedisReplay(url, name, cap, example=example)
        ins["redis_1w"] = rate(lambda: rw.add(b0), secs)
        ins["redis_4w"] = redis_writers(url, name, 4, secs)()
        res["insert_tps"] = {k: round(v) for k, v in ins.items()}

        # ---- fill, mirror, sample
        log("fill")
        fill(mem, cap)
        fill(rw, cap)
        t0 = time.perf_counter()
        rr = RedisReplay(url, name, seed=0)
        len(rr)  # a new reader pulls the whole ring
        res["mirror_catchup_tps"] = round(len(rr) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        unchecked = RedisReplay(url, name, seed=0, check_finite=False)
        len(unchecked)
        res["mirror_catchup_tps_without_finite_check"] = round(len(unchecked) / (time.perf_counter() - t0))
        memp = InMemoryReplay(cap, example=example, prioritized=True, seed=0)
        fill(memp, cap)
        rrp = RedisReplay(url, name, prioritized=True, seed=0)
        len(rrp)
        rsync = RedisReplay(url, name, prefetch=False, seed=0)
        len(rsync)
        log("sample")
        smp = {
            "memory_uniform": rate(lambda: mem.sample(B), secs),
            "memory_prioritized": rate(lambda: memp.sample(B), secs),
            "redis_uniform": rate(lambda: rr.sample(B), secs),
            "redis_prioritized": rate(lambda: rrp.sample(B), secs),
            "redis_no_prefetch": rate(lambda: rsync.sample(B), secs),
        }
        rsync.close()
        join = redis_writers(url, name, 1, secs + 1.0)
        time.sleep(0.5)
        smp["redis_uniform_live_writer"] = rate(lambda: rr.sample(B), secs)
        live_insert = join()
        # the same with the mirror's NaN/inf check off: what the check costs sampling
        join = redis_writers(url, name, 1, secs + 1.0)
        time.sleep(0.5)
        smp["redis_uniform_live_writer_without_finite_check"] = rate(lambda: unchecked.sample(B), secs)
        join()
        unchecked.close()
        res["sample_tps"] = {k: round(v) for k, v in smp.items()}
        res["sample_tps"]["live_writer_insert_tps"] = round(live_insert)
        rrp.close()

        # ---- learner
        import torch

        torch.set_num_threads(args.torch_threads)
        log(f"learner (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        update = make_sac()
        for _ in range(20):
            update(mem.sample(B))
        learner = interleaved(mem, rr, update, args.rounds * secs)
        log(f"  static buffer: {learner}")

        # with live inserts at --live-rate. Both rounds run the same writer process at that rate
        # (the machine load of remote actors); for Redis it feeds the learner's buffer, for
        # memory it writes elsewhere and a thread adds the same rate to the in-memory buffer.
        load = RedisReplay(url, name + "-load", 100_000, example=example)

        def mem_live_round() -> tuple[float, float]:
            join = redis_writers(url, name + "-load", 1, secs + 1.5, rate_limit=args.live_rate)
            time.sleep(0.5)
            stop = threading.Event()

            def feed() -> None:
                b, t0, n = make_batch(), time.perf_counter(), 0
                while not stop.is_set():
                    mem.add(b)
                    n += 1
                    time.sleep(max(0.0, n * B / args.live_rate - (time.perf_counter() - t0)))

            t = threading.Thread(target=feed)
            t.start()
            try:
                return updates_wall_and_cpu(mem, update, secs)
            finally:
                stop.set()
                t.join()
                join()

        def redis_live_round() -> tuple[float, float]:
            join = redis_writers(url, name, 1, secs + 1.5, rate_limit=args.live_rate)
            time.sleep(0.5)
            u = updates_wall_and_cpu(rr, update, secs)
            join()
            return u

        m_live, r_live = [], []
        for i in range(args.live_rounds):
            if i % 2 == 0:
                m_live.append(mem_live_round())
                r_live.append(redis_live_round())
            else:
                r_live.append(redis_live_round())
                m_live.append(mem_live_round())
        live_ratios = [r[0] / m[0] for m, r in zip(m_live, r_live, strict=True)]
        cpu_ratios = [r[1] / m[1] for m, r in zip(m_live, r_live, strict=True)]
        learner["live_writer"] = {
            "insert_rate": args.live_rate,
            "updates_per_s_memory": round(statistics.median(m[0] for m in m_live), 1),
            "updates_per_s_redis": round(statistics.median(r[0] for r in r_live), 1),
            "ratio_redis_over_memory": round(statistics.median(live_ratios), 3),
            "ratios_per_round": [round(x, 3) for x in live_ratios],
            "ratio_per_cpu_s": round(statistics.median(cpu_ratios), 3),
            "ratios_per_cpu_s_per_round": [round(x, 3) for x in cpu_ratios],
        }
        # what the mirror costs the learner process: CPU of its thread while the main one sleeps
        join = redis_writers(url, name, 1, secs + 1.5, rate_limit=args.live_rate)
        time.sleep(0.5)
        c0, w0 = time.process_time(), time.perf_counter()
        time.sleep(secs)
        learner["mirror_thread_cpu_fraction_at_live_rate"] = round(
            (time.process_time() - c0) / (time.perf_counter() - w0), 4
        )
        join()
        res["learner"] = learner
        load.drop()
        load.close()
        cmd = redis.Redis.from_url(url).info("commandstats").get("cmdstat_evalsha", {})
        res["redis_script_usec_per_call"] = cmd.get("usec_per_call")
        res["reuse_stats_redis_reader"] = {
            k: v for k, v in rr.stats().items() if not k.startswith("replay/uses_hist")
        }
        rr.close()
        rw.drop()
        rw.close()

        if not args.skip_rllib:
            log("rllib")
            rl = rllib_sample_tps(args.rllib_capacity, secs)
            if "sample_tps" in rl:
                rl["sample_tps"] = round(rl["sample_tps"])
                rl["redis_uniform_over_rllib"] = round(smp["redis_uniform"] / rl["sample_tps"], 2)
            res["rllib"] = rl

        if args.aof:
            log("aof")
            res["aof_insert_tps"] = aof_insert_tps(secs)

        res["judged"] = {
            "learner_ratio_at_least_0.9": learner["ratio_redis_over_memory"] >= 0.9,
            "redis_sample_at_least_200k": smp["redis_uniform"] >= 200_000,
        }
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
