"""Pure parts of the Redis replay: row segments, the non-finite check, error translation."""

import numpy as np
import pytest
import redis

from tandem.core.errors import TandemError
from tandem.replay.redis_conn import is_transient, translate
from tandem.replay.redis_mirror import first_non_finite
from tandem.replay.redis_scripts import segments


def test_segments_split_at_chunk_edges_and_the_wrap_around():
    # capacity 10 in chunks of 4 rows: slots 0-3 | 4-7 | 8-9
    assert segments(0, 3, 10, 4) == [(0, 0, 0, 3)]
    assert segments(3, 6, 10, 4) == [(0, 3, 0, 1), (1, 0, 1, 4), (2, 0, 5, 1)]
    assert segments(18, 4, 10, 4) == [(2, 0, 0, 2), (0, 0, 2, 2)]  # rows 18-21: slots 8, 9, 0, 1
    assert sum(k for *_, k in segments(7, 25, 10, 4)) == 25


def test_first_non_finite_finds_the_row():
    a = np.zeros((5, 3), np.float32)
    assert first_non_finite(a) is None
    a[3, 1] = np.inf
    a[4, 0] = np.nan
    assert first_non_finite(a) == 3
    assert first_non_finite(np.frombuffer(b"\xff" * 8, np.float64)) == 0  # 0xff bytes are NaN
    assert first_non_finite(np.array([1, 2], np.int64)) is None  # ints cannot be NaN
    assert first_non_finite(np.zeros((0, 2), np.float32)) is None


def test_translate_is_one_line_and_names_the_fix():
    url = "redis://:pw@127.0.0.1:1/0"
    e = translate(redis.ConnectionError("Error 111 connecting.\nmore"), url, waited_s=3)
    assert isinstance(e, TandemError) and "\n" not in str(e)
    assert str(e) == (
        "cannot reach Redis at redis://:***@127.0.0.1:1/0 for 3 s (Error 111 connecting.): "
        "start redis-server or pass --replay memory"
    )
    assert "put the password in the URL" in str(translate(redis.AuthenticationError("WRONGPASS"), url))
    assert "raise its maxmemory" in str(translate(redis.OutOfMemoryError("OOM command not allowed"), url))
    assert is_transient(redis.BusyLoadingError()) and not is_transient(redis.AuthenticationError())


@pytest.mark.parametrize("url", ["http://x", "redis://:pw@host:notaport/0"])
def test_bad_urls_are_one_line_errors(url):
    from tandem.replay.errors import ReplayError
    from tandem.replay.redis_conn import RedisConnection

    with pytest.raises(ReplayError, match="^bad replay URL .*: use redis://"):
        RedisConnection(url, connect_timeout_s=0.1)
