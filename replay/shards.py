"""Replay shards: K Redis servers that together act as one buffer (``--replay-shards K``).

One Redis runs every insert script on one thread, so one server caps the insert rate of all
writers together (benchmarks/replay_shards.py measures where). With K shards:

* each writer writes to one shard, chosen by its writer index (:func:`shard_of`), so the
  insert load spreads evenly and each shard keeps its own FIFO ring of ``capacity // K`` rows;
* the learner mirrors every shard and samples them as one buffer (:class:`ShardedReplay`):
  the per-shard batch sizes are a multinomial draw over the shards' sampling masses
  (:func:`split_counts`): their sizes for uniform replay, their sum-tree totals
  ``sum p_i^alpha`` for prioritized replay. Then ``P(i) = p_i^alpha / sum_all p^alpha``
  exactly as in one big prioritized buffer, and the importance weights are rescaled to the
  global minimum probability (:func:`global_weights`);
* sampled ``indices`` encode the shard (:func:`encode`), so ``update_priorities`` routes each
  priority back to the shard that holds the row.

Given servers: ``--replay redis://:pw@a:6379/0,redis://:pw@b:6379/0`` (comma-separated URLs,
one per shard; the count is K). Managed servers: K redis-servers on the learner's node, each
with its own port, password, directory and AOF (:func:`start_managed_shards`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tandem.core.types import Batch
from tandem.replay.base import RingReplay
from tandem.replay.errors import ReplayError
from tandem.replay.server import LOOPBACK, ManagedRedis, managed_redis, new_password


def shard_of(writer: int | str, k: int) -> int:
    """The shard a writer writes to: ``writer mod K`` for a worker index (even spread);
    ``crc32(writer) mod K`` for a writer id string (stable across processes, unlike ``hash``)."""
    if k < 1:
        raise ReplayError(f"replay shards must be >= 1 (got {k})")
    if isinstance(writer, str):
        return zlib.crc32(writer.encode()) % k
    return int(writer) % k


def encode(shard: int | np.ndarray, local: np.ndarray, k: int) -> np.ndarray:
    """Global index of a shard's row: ``local * K + shard`` (K = 1 leaves indices unchanged)."""
    return np.asarray(local, np.int64) * k + np.asarray(shard, np.int64)


def decode(index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode`: ``(shard, local) = (index mod K, index div K)``."""
    idx = np.asarray(index, np.int64)
    return idx % k, idx // k


def split_counts(rng: np.random.Generator, n: int, masses: Sequence[float]) -> np.ndarray:
    """Rows to draw from each shard: ``(n_1..n_K) ~ Multinomial(n, m_s / sum_t m_t)``.

    Drawing the shard of each of the ``n`` rows independently with probability proportional
    to its mass, then a row within the shard with probability ``p_i / m_s``, gives every row
    the probability ``p_i / sum_t m_t``: one buffer's sampling distribution."""
    m = np.asarray(masses, np.float64)
    if m.size == 0 or not np.all(np.isfinite(m)) or (m < 0).any() or m.sum() <= 0:
        raise ReplayError(f"cannot sample {n} transitions from an empty replay buffer: wait for min_size")
    return rng.multinomial(int(n), m / m.sum())


def global_weights(weights: np.ndarray, shard_min: float, global_min: float, beta: float) -> np.ndarray:
    """A shard's importance weights rescaled to the whole buffer.

    A shard returns ``w_i = (p_i / min_s)^-beta`` (its own ``(N_s P_s(i))^-beta`` over its max).
    One buffer's weight is ``(N P(i))^-beta / max_j w_j = (p_i / min_all)^-beta``
    ``= w_i * (min_s / min_all)^-beta``."""
    if global_min <= 0 or shard_min <= 0:
        return weights
    return (weights * (shard_min / global_min) ** (-beta)).astype(np.float32)


def parse_urls(replay: str) -> list[str]:
    """The shard URLs of ``--replay``: one URL, or several separated by commas."""
    urls = [u.strip() for u in replay.split(",") if u.strip()]
    if not urls:
        raise ReplayError(f"--replay {replay!r} names no URL: pass redis://host:port[,redis://host2:port]")
    return urls


def shard_dirs(k: int, run_dir: str | Path) -> list[Path]:
    """Where K managed shards keep their files: ``redis`` for one (the layout of runs before
    sharding, so they still resume), ``redis-shard<i>`` for more."""
    return [Path(run_dir) / "redis"] if k == 1 else [Path(run_dir) / f"redis-shard{i}" for i in range(k)]


def start_managed_shards(
    k: int, run_dir: str | Path, host: str = LOOPBACK, **kwargs: Any
) -> list[ManagedRedis]:
    """K managed redis-servers (AOF, supervised) on ``host``, each with a fresh password
    (``kwargs`` go to :class:`ManagedRedis`, e.g. ``appendfsync``).

    Directories: :func:`shard_dirs`; a run directory that already keeps another number of
    shards is refused (resuming with another K would silently drop data). A non-loopback ``host``
    always gets a password; a loopback one gets one too, since other users of the machine
    reach loopback ports."""
    dirs = shard_dirs(k, run_dir)
    kept = sorted(p.name for p in Path(run_dir).glob("redis*") if p.is_dir())
    if kept and kept != sorted(d.name for d in dirs):
        raise ReplayError(
            f"{run_dir} keeps its replay in {len(kept)} managed shard(s) ({', '.join(kept)}), not {k}: "
            f"resume with --replay-shards {len(kept)}"
        )
    servers: list[ManagedRedis] = []
    try:
        for d in dirs:
            servers.append(managed_redis(dir=d, host=host, password=new_password(), **kwargs))
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


class ManagedServers:
    """A run's managed redis-servers, stopped together (what ``replay_plan`` hands the driver)."""

    def __init__(self, servers: Sequence[ManagedRedis]):
        self.servers = list(servers)

    def stop(self) -> None:
        for srv in self.servers:
            srv.stop()


class ShardedReplay:
    """K replay buffers sampled as one (the ``ReplayBuffer`` protocol).

    Args:
        shards: the buffers (``RedisReplay`` per shard; any ``RingReplay`` works), all uniform
            or all prioritized with the same ``alpha`` and ``beta``.
        seed: seed of the shard choice (each shard samples with its own RNG).
        writer_id: which shard this object's own ``add`` writes to (:func:`shard_of`).
    """

    def __init__(self, shards: Sequence[RingReplay], seed: int | None = None, writer_id: str = "learner"):
        if not shards:
            raise ReplayError("a sharded replay needs at least one shard")
        kinds = {s.prioritized for s in shards}
        if len(kinds) != 1:
            raise ReplayError("replay shards must be all prioritized or all uniform")
        self.shards = list(shards)
        self.k = len(self.shards)
        self.prioritized = kinds.pop()
        self._rng = np.random.default_rng(None if seed is None else [int(seed), 0x5A4D])
        self._own = shard_of(writer_id, self.k)

    @property
    def beta(self) -> float:
        return self.shards[0].beta

    @beta.setter
    def beta(self, value: float) -> None:
        for s in self.shards:
            s.beta = value

    def add(self, batch: Batch) -> None:
        self.shards[self._own].add(batch)

    def masses(self) -> list[tuple[float, float]]:
        """``(total, smallest)`` sampling mass of each shard (see ``LocalRing.mass``)."""
        return [s.mass() for s in self.shards]

    def sample(self, n: int) -> Batch:
        """``n`` rows, drawn as from one buffer holding every shard's rows (module docstring)."""
        masses = self.masses()
        counts = split_counts(self._rng, n, [m for m, _ in masses])
        live_mins = [lo for m, lo in masses if m > 0]
        global_min = min(live_mins) if live_mins else 0.0
        parts: list[Batch] = []
        indices, weights = [], []
        for i, c in enumerate(counts):
            if c == 0:
                continue
            b = self.shards[i].sample(int(c))
            parts.append(b)
            indices.append(encode(i, b.indices, self.k))
            w = b.weights
            if self.prioritized:
                w = global_weights(w, masses[i][1], global_min, self.beta)
            weights.append(w)
        arrays = {name: np.concatenate([p.arrays()[name] for p in parts]) for name in parts[0].arrays()}
        return Batch.from_arrays(arrays, indices=np.concatenate(indices), weights=np.concatenate(weights))

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Route each priority to the shard its index names."""
        if not self.prioritized:
            return
        shard, local = decode(np.asarray(indices).ravel(), self.k)
        pr = np.asarray(priorities).ravel()
        if pr.shape != shard.shape:
            raise ReplayError(f"update_priorities got {shard.size} indices but {pr.size} priorities")
        for i in np.unique(shard):
            sel = shard == i
            self.shards[int(i)].update_priorities(local[sel], pr[sel])

    def sync(self) -> int:
        return sum(s.sync() for s in self.shards)

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    @property
    def inserted(self) -> int:
        return sum(s.inserted for s in self.shards)

    @property
    def sampled(self) -> int:
        return sum(s.sampled for s in self.shards)

    def remote_size(self) -> int:
        """Transitions stored in every shard's Redis now (one round trip each)."""
        return sum(s.remote_size() for s in self.shards)  # type: ignore[attr-defined]

    def stats(self) -> dict[str, float | list]:
        """The shards' ``replay/*`` statistics as one buffer's: counts and histograms summed,
        means weighted (live means by size, evicted means by evictions), plus
        ``replay/shards`` and ``replay/shard_size_min`` / ``_max`` (balance)."""
        each = [s.stats() for s in self.shards]
        out: dict[str, Any] = {}
        weights = {"replay/uses_mean_live": "replay/size", "replay/uses_mean_evicted": "replay/evicted"}
        for key in each[0]:
            vals = [e[key] for e in each]
            if key in weights:
                w = np.array([float(e[weights[key]]) for e in each])
                v = np.array(vals, np.float64)
                out[key] = float((v * w).sum() / w.sum()) if w.sum() > 0 else 0.0
            elif isinstance(vals[0], list):
                out[key] = [int(x) for x in np.sum(np.array(vals, np.int64), axis=0)]
            else:
                out[key] = float(sum(vals))
        sizes = [float(e["replay/size"]) for e in each]
        out["replay/shards"] = float(self.k)
        out["replay/shard_size_min"], out["replay/shard_size_max"] = min(sizes), max(sizes)
        return out

    def live_rows(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every shard's live rows (shard by shard) and their global indices."""
        rows, idx = [], []
        for i, s in enumerate(self.shards):
            r, ix = s.live_rows()
            if len(ix):
                rows.append(r)
                idx.append(encode(i, ix, self.k))
        if not rows:
            return {}, np.zeros(0, np.int64)
        return {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}, np.concatenate(idx)

    def close(self) -> None:
        for s in self.shards:
            s.close()

    def __enter__(self) -> ShardedReplay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
