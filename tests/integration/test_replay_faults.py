"""Kill and restart redis-server mid-stream: writers reconnect, readers never crash.

With AOF nothing is lost or doubled. A restart without persistence is an error for writers
and readers alike (tests/faults/test_replay_faults_redis.py), never a silently empty buffer.
"""

from __future__ import annotations

import threading
import time

import pytest

from tandem.replay import RedisReplay
from tests.batches import ROWS, sample_tagged, tagged

pytestmark = pytest.mark.integration


class Stream:
    """A writer thread adding fragments 0..n-1 and a reader thread sampling all along."""

    def __init__(self, url: str, name: str, n: int, capacity: int):
        self.writer = RedisReplay(url, name, capacity, example=tagged(0), reconnect_timeout_s=30)
        self.reader = RedisReplay(url, name, reconnect_timeout_s=30, poll_interval_s=0.001)
        assert len(self.reader) == 0
        self.n, self.written, self.samples = n, 0, 0
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write), threading.Thread(target=self._read)]
        for t in self.threads:
            t.start()

    def _write(self) -> None:
        try:
            for seq in range(self.n):
                self.writer.add(tagged(seq))
                self.written = seq + 1
                time.sleep(0.002)
        except BaseException as e:  # pragma: no cover - reported by the test
            self.errors.append(e)

    def _read(self) -> None:
        try:
            while not self.stop.is_set():
                self.samples += sample_tagged(self.reader)
                time.sleep(0.001)
        except BaseException as e:  # pragma: no cover - reported by the test
            self.errors.append(e)

    def wait_written(self, k: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.written < k and time.monotonic() < deadline and not self.errors:
            time.sleep(0.005)
        assert self.written >= k, self.errors

    def finish(self) -> None:
        self.threads[0].join(timeout=60)
        self.stop.set()
        self.threads[1].join(timeout=10)
        assert not self.errors, self.errors


def seq_row_pairs(replay: RedisReplay) -> list[tuple[int, int]]:
    rows, _ = replay.live_rows()
    return list(zip(rows["seq"].tolist(), rows["row"].tolist(), strict=True))


def test_kill_and_restart_with_aof_loses_and_doubles_nothing(make_redis, replay_name):
    server = make_redis(aof=True)
    n = 150
    stream = Stream(server.url, replay_name, n, capacity=4096)
    stream.wait_written(50)
    server.restart(kill=True, down_s=0.3)  # SIGKILL: a crash, not a clean shutdown
    stream.wait_written(100)
    samples_before = stream.samples
    server.restart(kill=True)
    stream.finish()
    assert stream.samples > samples_before  # the reader kept sampling through the outages
    expected = [(s, r) for s in range(n) for r in range(ROWS)]
    fresh = RedisReplay(server.url, replay_name)
    assert fresh.remote_size() == n * ROWS
    assert seq_row_pairs(fresh) == expected  # every transition once, in insert order
    stream.reader.sync()
    assert seq_row_pairs(stream.reader) == expected
    assert stream.reader.stats()["replay/epoch_changes"] == 0
    for r in (fresh, stream.reader, stream.writer):
        r.close()
