"""RedisReplay against a real redis-server: many writers, idempotency, errors, mirror."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import redis

from tandem.core.types import Batch
from tandem.replay import CorruptReplayError, RedisReplay, ReplayError, SchemaMismatchError
from tandem.replay.server import free_port

pytestmark = pytest.mark.integration


def tagged(writer: int, seq: int, rows: int = 16, obs_dim: int = 3) -> Batch:
    """A fragment whose rows say who wrote them: extras writer, seq, row."""
    w = np.full(rows, writer, np.int32)
    s = np.full(rows, seq, np.int64)
    row = np.arange(rows, dtype=np.int32)
    obs = np.stack([w, s, row], axis=1).astype(np.float32)[:, :obs_dim]
    return Batch(
        obs=obs,
        actions=np.zeros((rows, 2), np.float32),
        rewards=s.astype(np.float32),
        next_obs=obs,
        terminated=np.zeros(rows, bool),
        truncated=np.zeros(rows, bool),
        extras={"writer": w, "seq": s, "row": row},
    )


def keys_of(rows: dict) -> list[tuple[int, int, int]]:
    return list(zip(rows["writer"].tolist(), rows["seq"].tolist(), rows["row"].tolist(), strict=True))


def _writer_main(url: str, name: str, writer: int, fragments: int, rows: int, barrier) -> None:
    """A writer process: every fragment once, about a third of them sent twice (a retry)."""
    rng = np.random.default_rng(writer)
    r = RedisReplay(url, name, example=tagged(writer, 0, rows))
    barrier.wait()
    for seq in range(fragments):
        b = tagged(writer, seq, rows)
        r.add(b, seq=seq)
        if rng.random() < 0.3:
            r.add(b, seq=seq)  # the same (writer id, seq): must not duplicate
    r.close()


def test_four_writer_processes_lose_and_duplicate_nothing(redis_url, replay_name):
    writers, fragments, rows = 4, 40, 32
    total = writers * fragments * rows
    reader = RedisReplay(redis_url, replay_name, 2 * total, example=tagged(0, 0, rows))
    ctx = mp.get_context("forkserver")  # a clean process (no inherited threads), forked fast
    ctx.set_forkserver_preload([__name__])
    barrier = ctx.Barrier(writers)
    procs = [
        ctx.Process(target=_writer_main, args=(redis_url, replay_name, w, fragments, rows, barrier))
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert reader.remote_size() == total
    reader.sync()
    rows_, _ = reader.live_rows()
    got = keys_of(rows_)
    assert len(got) == total and len(set(got)) == total
    assert set(got) == {(w, s, i) for w in range(writers) for s in range(fragments) for i in range(rows)}
    # each fragment landed contiguously, in row order (slots were allocated atomically)
    frag = np.asarray(got).reshape(-1, rows, 3)
    assert np.all(frag[:, :, 0] == frag[:, :1, 0]) and np.all(frag[:, :, 1] == frag[:, :1, 1])
    assert np.all(frag[:, :, 2] == np.arange(rows))
    reader.drop()
    reader.close()


class DropReplyProxy:
    """TCP proxy to Redis that, when armed, swallows the next reply and cuts the connection:
    the command ran on the server but the client never heard back, so redis-py retries."""

    def __init__(self, port: int):
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while data := src.recv(65536):
                if replies and self.armed.is_set():
                    self.armed.clear()
                    self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()


def test_a_retried_insert_whose_reply_was_lost_is_not_duplicated(redis_server, replay_name):
    proxy = DropReplyProxy(redis_server.port)
    try:
        w = RedisReplay(f"redis://127.0.0.1:{proxy.port}/0", replay_name, 1000, example=tagged(0, 0))
        w.add(tagged(0, 0))
        proxy.armed.set()
        w.add(tagged(0, 1))  # executed, reply lost, retried by redis-py: applied once
        assert proxy.dropped == 1
        w.add(tagged(0, 2))
        assert w.remote_size() == 48
        rows, _ = w.live_rows()
        assert sorted(set(rows["seq"].tolist())) == [0, 1, 2] and len(rows["seq"]) == 48
        w.drop()
        w.close()
    finally:
        proxy.close()


def test_explicit_retry_and_stale_sequence(redis_url, replay_name):
    w = RedisReplay(redis_url, replay_name, 100, writer_id="worker-7")
    w.add(tagged(7, 5), seq=5)
    w.add(tagged(7, 5), seq=5)
    assert w.remote_size() == 16
    with pytest.raises(ReplayError, match="older sequence number.*own writer_id"):
        w.add(tagged(7, 3), seq=3)
    assert w.remote_size() == 16
    w.add(tagged(7, 6))  # the automatic sequence continues after the largest used
    assert w.remote_size() == 32
    # a second object with its own (default) writer id shares nothing with the first
    other = RedisReplay(redis_url, replay_name)
    other.add(tagged(8, 5), seq=5)
    assert other.remote_size() == 48
    w.drop()


def test_schema_mismatch_between_processes_writes_nothing(redis_url, replay_name):
    a = RedisReplay(redis_url, replay_name, 64, example=tagged(0, 0))
    a.add(tagged(0, 0))
    b = RedisReplay(redis_url, replay_name, 64)  # attaches: adopts the stored schema
    assert b.schema == a.schema and b.capacity == 64
    with pytest.raises(SchemaMismatchError, match="obs float32\\[3\\] != obs float32\\[2\\]"):
        b.add(tagged(1, 0, obs_dim=2))
    with pytest.raises(SchemaMismatchError, match="capacity 64, this process asked for 65"):
        RedisReplay(redis_url, replay_name, 65)
    with pytest.raises(SchemaMismatchError, match="stores other fields"):
        RedisReplay(redis_url, replay_name, 64, example=tagged(0, 0, obs_dim=2))
    assert a.remote_size() == 16
    a.drop()


def test_a_writer_whose_buffer_changed_schema_is_refused(redis_url, replay_name):
    a = RedisReplay(redis_url, replay_name, 64, example=tagged(0, 0))
    a.drop()
    b = RedisReplay(redis_url, replay_name, 64, example=tagged(0, 0, obs_dim=2))
    b.add(tagged(1, 0, obs_dim=2))
    with pytest.raises(SchemaMismatchError, match="stores other fields"):
        a.add(tagged(0, 1))
    assert b.remote_size() == 16
    b.drop()


def test_corrupt_schema_record_and_bytes_are_clear_errors(redis_url, replay_name):
    client = redis.Redis.from_url(redis_url)
    w = RedisReplay(redis_url, replay_name, 8, example=tagged(0, 0, rows=4))
    w.add(tagged(0, 0, rows=4))
    # a data string cut short: the insert refuses (nothing written), the reader refuses
    key = f"tandem:{replay_name}:data:obs:0"
    good = client.get(key)
    client.set(key, good[:10])
    with pytest.raises(CorruptReplayError, match=f"{key} holds 10 bytes, expected 96"):
        w.add(tagged(0, 1, rows=4))
    assert w.remote_size() == 4
    with pytest.raises(CorruptReplayError, match="returned 10 bytes for 4 rows"):
        len(RedisReplay(redis_url, replay_name))
    client.set(key, good)
    # bytes that are not booleans in a bool field
    client.setrange(f"tandem:{replay_name}:data:terminated:0", 1, b"\x07")
    with pytest.raises(CorruptReplayError, match="not booleans"):
        RedisReplay(redis_url, replay_name).sample(1)
    # a schema record that is not ours
    client.set(f"tandem:{replay_name}:schema", b"{not json")
    with pytest.raises(CorruptReplayError, match="is not a Tandem replay schema"):
        RedisReplay(redis_url, replay_name)
    w.drop()
    client.close()


def test_scripts_survive_a_script_flush(redis_url, replay_name):
    w = RedisReplay(redis_url, replay_name, 100, example=tagged(0, 0))
    w.add(tagged(0, 0))
    redis.Redis.from_url(redis_url).script_flush()
    w.add(tagged(0, 1))
    assert len(w) == 32
    w.drop()


def test_reader_that_fell_behind_skips_to_the_live_window(redis_url, replay_name):
    w = RedisReplay(redis_url, replay_name, 32, example=tagged(0, 0))
    r = RedisReplay(redis_url, replay_name, prefetch=False, max_sync_bytes=200)  # ~5 rows a trip
    assert len(r) == 0
    for seq in range(6):  # 96 rows into a ring of 32
        w.add(tagged(0, seq))
    b = r.sample(4)
    assert set(b.extras["seq"].tolist()) <= {4, 5}
    rows, _ = r.live_rows()
    assert rows["seq"].tolist() == [4] * 16 + [5] * 16
    s = r.stats()
    assert s["replay/inserted"] == 96 and s["replay/evicted"] == 64
    assert s["replay/uses_hist_evicted"][0] == 64
    w.drop()


def test_mirror_thread_follows_other_writers(redis_url, replay_name):
    w = RedisReplay(redis_url, replay_name, 1000, example=tagged(0, 0))
    r = RedisReplay(redis_url, replay_name, poll_interval_s=0.001)
    w.add(tagged(0, 0))
    assert len(r) == 16  # attaching pulls what exists
    for seq in range(1, 5):
        w.add(tagged(0, seq))
    deadline = time.monotonic() + 5
    while len(r) < 80 and time.monotonic() < deadline:
        r.sample(8)
        time.sleep(0.005)
    assert len(r) == 80
    assert r.stats()["replay/mirror_lag"] == 0
    r.close()
    w.drop()


def test_pickled_replay_gets_its_own_writer_id(redis_url, replay_name):
    w = RedisReplay(redis_url, replay_name, 100, example=tagged(0, 0))
    w.add(tagged(0, 0))
    w2 = pickle.loads(pickle.dumps(w))
    assert w2.writer_id != w.writer_id and w2.schema == w.schema
    w2.add(tagged(1, 0))  # seq 0 again, but another writer: inserted
    assert w.remote_size() == 32
    w.drop()


def test_unreachable_redis_is_a_one_line_error():
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(ReplayError) as e:
        RedisReplay(f"redis://:pw@127.0.0.1:{port}/0", "x", 10, connect_timeout_s=0.3)
    msg = str(e.value)
    assert time.monotonic() - t0 < 3
    assert msg.startswith(f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0 (")
    assert msg.endswith("start redis-server or pass --replay memory")
    assert "\n" not in msg and "pw@" not in msg


def test_password_urls(make_redis, replay_name):
    server = make_redis(password="s3cret")
    r = RedisReplay(server.url, replay_name, 10, example=tagged(0, 0, rows=2))
    r.add(tagged(0, 0, rows=2))
    assert len(r) == 2
    with pytest.raises(ReplayError, match="refused the login.*redis://:PASSWORD@host:port"):
        RedisReplay(f"redis://127.0.0.1:{server.port}/0", replay_name, connect_timeout_s=0.5)
    with pytest.raises(ReplayError, match="refused the login") as e:
        RedisReplay(f"redis://:wrong@127.0.0.1:{server.port}/0", replay_name, connect_timeout_s=0.5)
    assert "wrong" not in str(e.value)


def test_tls_url(make_redis, replay_name, tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    tls_port = free_port()
    try:
        make_redis(
            password="tls-pw",
            config={
                "tls-port": str(tls_port),
                "tls-cert-file": str(cert),
                "tls-key-file": str(key),
                "tls-ca-cert-file": str(cert),
                "tls-auth-clients": "no",
            },
        )
    except ReplayError as e:  # redis-server built without TLS
        pytest.skip(f"redis-server has no TLS: {e}")
    url = f"rediss://:tls-pw@127.0.0.1:{tls_port}/0"
    r = RedisReplay(
        url, replay_name, 10, example=tagged(0, 0, rows=2), redis_kwargs={"ssl_ca_certs": str(cert)}
    )
    r.add(tagged(0, 0, rows=2))
    assert len(r) == 2 and r.sample(2).extras["writer"].tolist() == [0, 0]
    r.close()


def test_out_of_memory_is_a_clear_error(make_redis, replay_name):
    server = make_redis(maxmemory="4mb")
    with pytest.raises(
        ReplayError, match="needs .* but Redis at .* has maxmemory 4.0 MiB.*lower the replay capacity"
    ):
        RedisReplay(server.url, replay_name, 1_000_000, example=tagged(0, 0))
    r = RedisReplay(server.url, replay_name, 100, example=tagged(0, 0))
    r.add(tagged(0, 0))  # the ring is preallocated: inserts need no new memory
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory", "1mb")  # now Redis is over its limit: writes fail with OOM
    with pytest.raises(ReplayError, match="out of memory .*raise its maxmemory"):
        r.add(tagged(0, 1))
    assert r.remote_size() == 16
    client.close()


def test_loading_and_connection_errors_are_retried(redis_url, replay_name, monkeypatch):
    w = RedisReplay(redis_url, replay_name, 100, example=tagged(0, 0))
    real = w._writer._insert
    failures = [
        redis.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
        redis.ConnectionError("gone"),
    ]

    def flaky(*a, **kw):
        if failures:
            raise failures.pop(0)
        return real(*a, **kw)

    monkeypatch.setattr(w._writer, "_insert", flaky)
    w.add(tagged(0, 0))
    assert not failures and w.remote_size() == 16
    w.drop()


def test_close_forgets_the_writer_entry(redis_url, replay_name):
    w = RedisReplay(redis_url, replay_name, 100, example=tagged(0, 0))
    w.add(tagged(0, 0))
    client = redis.Redis.from_url(redis_url)
    assert client.hexists(f"tandem:{replay_name}:writers", w.writer_id)
    w.close()
    assert not client.hexists(f"tandem:{replay_name}:writers", w.writer_id)
    RedisReplay(redis_url, replay_name).drop()
    client.close()


def test_mirror_thread_ends_when_the_replay_is_dropped(redis_url, replay_name):
    import gc

    w = RedisReplay(redis_url, replay_name, 100, example=tagged(0, 0))
    w.add(tagged(0, 0))
    r = RedisReplay(redis_url, replay_name)
    assert len(r) == 16
    thread = r._mirror._thread
    assert thread is not None and thread.is_alive()
    del r
    gc.collect()
    thread.join(timeout=2)
    assert not thread.is_alive()
    w.drop()
