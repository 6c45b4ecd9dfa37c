"""Redis faults on the replay (issue 13): a killed managed server, a restart without
persistence, NaN bytes, a deleted meta key. Each case writes a row with
``tests.faults.summary.record``.

Counting: each fragment carries ``(seq, row)`` tags; a transition is *acknowledged* when
``add`` returned for its fragment. Lost = acknowledged tags absent from the buffer;
duplicated = tags present more than once.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
import time

import pytest
import redis

from tandem.replay import CorruptReplayError, RedisReplay, open_writer
from tandem.replay.server import MANAGED_APPENDFSYNC, managed_redis
from tests.batches import ROWS, sample_tagged, tagged
from tests.faults.summary import record

pytestmark = pytest.mark.integration


def tally(replay: RedisReplay, acked: list[int]) -> dict[str, int]:
    """counted / lost / duplicated of the acknowledged transitions in ``replay``'s mirror."""
    rows, _ = replay.live_rows()
    counts = collections.Counter(zip(rows["seq"].tolist(), rows["row"].tolist(), strict=True))
    want = {(s, r) for s in acked for r in range(ROWS)}
    return {
        "written": len(want),
        "counted": sum(counts.values()),
        "lost": len(want - set(counts)),
        "duplicated": sum(c - 1 for c in counts.values() if c > 1),
    }


class Traffic:
    """A worker's writer (``open_writer``) adding fragments 0..n-1 in a thread, and a learner's
    ``RedisReplay`` sampling in another thread all along."""

    def __init__(self, url: str, name: str, n: int, capacity: int, sleep_s: float = 0.002):
        self.writer = open_writer({"url": url, "name": name, "capacity": capacity, "reconnect_timeout_s": 30})
        self.reader = RedisReplay(url, name, capacity, example=tagged(0), reconnect_timeout_s=30, seed=0)
        self.n, self.sleep_s = n, sleep_s
        self.acked: list[int] = []
        self.samples = 0
        self.errors: list[BaseException] = []
        self.reader_errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _write(self) -> None:
        try:
            for seq in range(self.n):
                self.writer.add(tagged(seq))
                self.acked.append(seq)
                time.sleep(self.sleep_s)
        except BaseException as e:
            self.errors.append(e)

    def _read(self) -> None:
        try:
            while not self.stop.is_set():
                self.samples += sample_tagged(self.reader)
                time.sleep(0.001)
        except BaseException as e:
            self.reader_errors.append(e)

    def wait_acked(self, k: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < k and time.monotonic() < deadline and not self.errors:
            time.sleep(0.005)
        assert len(self.acked) >= k, self.errors

    def join(self) -> None:
        self.threads[0].join(timeout=60)
        self.stop.set()
        self.threads[1].join(timeout=10)

    def close(self) -> None:
        self.stop.set()
        self.writer.close()
        self.reader.close()


def wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_managed_redis_killed_is_restarted_and_loses_no_acknowledged_write(tmp_path, replay_name):
    server = managed_redis(dir=tmp_path / "redis")
    traffic = None
    try:
        assert server.supervise and server.aof
        n = 400
        traffic = Traffic(server.url, replay_name, n, capacity=8192)
        kills = 0
        for at in (100, 250):
            traffic.wait_acked(at)
            pid = server.pid
            os.kill(pid, signal.SIGKILL)  # a crash of redis-server, not a clean shutdown
            kills += 1
            assert wait_for(lambda k=kills: server.restarts == k and server.running), server.log_tail()
            assert server.pid != pid
            before, samples = len(traffic.acked), traffic.samples
            traffic.wait_acked(before + 20)  # writes resume after the restart
            assert wait_for(lambda samples=samples: traffic.samples > samples)  # so does sampling
        traffic.join()
        assert not traffic.errors and not traffic.reader_errors, (traffic.errors, traffic.reader_errors)
        assert traffic.acked == list(range(n))
        traffic.reader.sync()
        fresh = RedisReplay(server.url, replay_name)
        got = tally(fresh, traffic.acked)
        mirrored = tally(traffic.reader, traffic.acked)
        fresh.close()
        record(
            "redis_managed_kill9_restart",
            faults=f"{kills} x SIGKILL of the managed redis-server during writes and sampling "
            f"(AOF appendfsync {MANAGED_APPENDFSYNC}, supervised)",
            **got,
            mirror_lost=mirrored["lost"],
            mirror_duplicated=mirrored["duplicated"],
            restarts=server.restarts,
            outcome="restarted; writes and sampling resumed"
            if got["lost"] == got["duplicated"] == 0
            else "DATA LOST OR DUPLICATED",
        )
        assert got == {"written": n * ROWS, "counted": n * ROWS, "lost": 0, "duplicated": 0}
        assert mirrored == got
        assert traffic.reader.stats()["replay/epoch_changes"] == 0
    finally:
        if traffic is not None:
            traffic.close()
        server.stop(kill=True)


def test_restart_without_persistence_is_one_clear_error_not_an_empty_buffer(make_redis, replay_name):
    server = make_redis(aof=False)  # an external, non-persistent Redis (not supervised)
    traffic = Traffic(server.url, replay_name, 10_000, capacity=8192)
    try:
        traffic.wait_acked(40)
        traffic.reader.sync()
        held = len(traffic.reader)
        server.restart(kill=True, down_s=0.2)  # the buffer is gone
        traffic.threads[0].join(timeout=60)
        assert wait_for(lambda: traffic.reader_errors, 30)  # the sampling thread hits it too
        traffic.join()
        assert len(traffic.errors) == 1 and isinstance(traffic.errors[0], CorruptReplayError)
        wmsg = str(traffic.errors[0])
        assert wmsg.startswith("the replay lost its data when Redis restarted without persistence")
        assert "\n" not in wmsg and "appendonly" in wmsg
        lost = "lost its data when Redis restarted without persistence"
        with pytest.raises(CorruptReplayError, match=lost):
            for _ in range(200):  # the mirror thread notices within a poll or two
                traffic.reader.sample(4)
                time.sleep(0.01)
        assert len(traffic.reader_errors) == 1 and "lost its data" in str(traffic.reader_errors[0])
        # nothing was recreated behind the learner's back
        assert not redis.Redis.from_url(server.url).exists(f"tandem:{replay_name}:meta")
        record(
            "redis_external_restart_no_persistence",
            faults="SIGKILL + restart of a Redis without AOF during writes",
            written=len(traffic.acked) * ROWS,
            counted=0,
            lost=len(traffic.acked) * ROWS,
            duplicated=0,
            mirrored_before=held,
            outcome="writer and learner raise CorruptReplayError: " + wmsg[:80],
        )
    finally:
        traffic.close()


def test_nan_bytes_in_redis_are_refused_by_the_mirror(redis_url, replay_name):
    writer = open_writer({"url": redis_url, "name": replay_name, "capacity": 4096})
    for seq in range(4):
        writer.add(tagged(seq))
    client = redis.Redis.from_url(redis_url)
    key = f"tandem:{replay_name}:data:obs:0"
    client.setrange(key, 8, b"\xff" * 16)  # rows 1-2 of obs: NaN floats
    reader = RedisReplay(redis_url, replay_name)
    with pytest.raises(CorruptReplayError) as e:
        reader.sample(8)
    msg = str(e.value)
    assert msg.startswith(f"{key} at ") and "NaN or inf (row 1 of that chunk" in msg
    assert "\n" not in msg and "drop it" in msg
    record(
        "redis_nan_bytes",
        faults="SETRANGE 0xff over 2 obs rows of a shared buffer",
        written=4 * ROWS,
        counted=0,
        lost=0,
        duplicated=0,
        outcome="CorruptReplayError on the learner's first read: " + msg[:80],
    )
    # rows mirrored before the damage keep training: only new ranges are checked
    writer2 = open_writer({"url": redis_url, "name": replay_name})
    clean = RedisReplay(redis_url, replay_name + "-clean", 4096, example=tagged(0))
    clean.add(tagged(0))
    assert len(clean) == ROWS
    for r in (reader, writer, writer2, clean):
        r.close()
    client.close()


def test_deleted_meta_key_is_an_error_never_a_silent_wipe(redis_url, replay_name):
    writer = open_writer({"url": redis_url, "name": replay_name, "capacity": 64})
    for seq in range(3):
        writer.add(tagged(seq))
    client = redis.Redis.from_url(redis_url)
    before = client.get(f"tandem:{replay_name}:data:obs:0")
    client.delete(f"tandem:{replay_name}:meta")
    with pytest.raises(CorruptReplayError, match=r"^meta key deleted: tandem:.*:meta is gone"):
        writer.add(tagged(3))
    with pytest.raises(CorruptReplayError, match="meta key deleted"):  # a new process attaching
        RedisReplay(redis_url, replay_name, 64, example=tagged(0))
    with pytest.raises(CorruptReplayError, match="meta key deleted"):  # attaching by name only
        RedisReplay(redis_url, replay_name)
    with pytest.raises(CorruptReplayError, match="meta key deleted"):
        open_writer({"url": redis_url, "name": replay_name, "capacity": 64})
    assert client.get(f"tandem:{replay_name}:data:obs:0") == before  # nothing wiped
    record(
        "redis_meta_key_deleted",
        faults="DEL tandem:<name>:meta of a buffer holding 24 transitions",
        written=3 * ROWS,
        counted=3 * ROWS,
        lost=0,
        duplicated=0,
        outcome="CorruptReplayError 'meta key deleted' for writers and new readers; data kept",
    )
    writer.close()
    client.delete(*client.keys(f"tandem:{replay_name}:*"))
    client.close()
