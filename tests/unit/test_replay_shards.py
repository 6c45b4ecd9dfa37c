"""Replay shards without any service: shard choice, index encoding, proportional sampling.

The shards here are in-memory rings; ``ShardedReplay`` only sees the ``RingReplay`` API, which
the Redis mirrors share (tests/integration/test_replay_shards.py runs it on real servers)."""

import numpy as np
import pytest

from tandem.replay import InMemoryReplay, ReplayError
from tandem.replay.shards import (
    ShardedReplay,
    decode,
    encode,
    global_weights,
    parse_urls,
    shard_of,
    split_counts,
)
from tests.batches import id_batch


def test_writer_indices_spread_evenly_and_ids_map_stably():
    k = 4
    counts = np.bincount([shard_of(i, k) for i in range(64)], minlength=k)
    assert counts.tolist() == [16, 16, 16, 16]
    assert shard_of("host-12-abcd", 3) == shard_of("host-12-abcd", 3)  # crc32, not salted hash
    assert {shard_of(f"w{i}", 3) for i in range(50)} == {0, 1, 2}
    assert all(shard_of(i, 1) == 0 for i in range(10))
    with pytest.raises(ReplayError):
        shard_of(0, 0)


def test_index_encoding_round_trips_and_is_identity_for_one_shard():
    local = np.array([0, 5, 1_000_000_007, 2**40])
    for k in (1, 2, 3, 7):
        for s in range(k):
            shard, back = decode(encode(s, local, k), k)
            assert (shard == s).all() and (back == local).all()
    assert (encode(0, local, 1) == local).all()


def test_split_counts_is_multinomial_over_masses():
    rng = np.random.default_rng(0)
    counts = np.sum([split_counts(rng, 100, [1.0, 3.0, 0.0, 4.0]) for _ in range(2000)], axis=0)
    assert counts[2] == 0
    assert counts.sum() == 200_000
    np.testing.assert_allclose(counts / 200_000, [1 / 8, 3 / 8, 0, 4 / 8], atol=0.005)
    with pytest.raises(ReplayError, match="empty"):
        split_counts(rng, 5, [0.0, 0.0])


def test_global_weights_rescale_to_the_smallest_priority_anywhere():
    # shard min 2, global min 1, beta 0.5: a row of priority 8 has shard weight (8/2)^-0.5
    w = global_weights(np.array([(8 / 2) ** -0.5], np.float32), 2.0, 1.0, 0.5)
    np.testing.assert_allclose(w, [(8 / 1) ** -0.5], rtol=1e-6)


def test_parse_urls():
    assert parse_urls("redis://a:1/0, redis://b:2/0") == ["redis://a:1/0", "redis://b:2/0"]
    with pytest.raises(ReplayError):
        parse_urls(" , ")


def test_uniform_shards_are_sampled_in_proportion_to_their_sizes():
    a, b = InMemoryReplay(100, seed=1), InMemoryReplay(100, seed=2)
    a.add(id_batch(range(0, 10)))  # 10 rows
    b.add(id_batch(range(100, 130)))  # 30 rows
    r = ShardedReplay([a, b], seed=0)
    assert len(r) == 40
    ids = np.concatenate([r.sample(200).extras["id"] for _ in range(200)])
    share_b = (ids >= 100).mean()
    assert abs(share_b - 0.75) < 0.01  # 40 000 draws: sd 0.002
    # every row equally likely, as in one buffer of 40
    freq = np.bincount(np.where(ids >= 100, ids - 90, ids), minlength=40) / len(ids)
    np.testing.assert_allclose(freq, 1 / 40, atol=0.004)
    batch = r.sample(64)
    assert (batch.weights == 1).all()
    shard, _ = decode(batch.indices, 2)
    assert ((batch.extras["id"] >= 100) == (shard == 1)).all()


def test_prioritized_shards_equal_one_big_prioritized_buffer():
    """Same rows and priorities in two shards and in one buffer: the same P(i) and weights."""
    alpha, beta = 0.7, 0.4
    prios = np.array([1.0, 2.0, 4.0, 0.5, 8.0, 3.0, 1.5, 6.0])
    ids = np.arange(8)
    one = InMemoryReplay(16, prioritized=True, alpha=alpha, beta=beta, seed=0)
    one.add(id_batch(ids))
    one.update_priorities(np.arange(8), prios)
    s1 = InMemoryReplay(16, prioritized=True, alpha=alpha, beta=beta, seed=1)
    s2 = InMemoryReplay(16, prioritized=True, alpha=alpha, beta=beta, seed=2)
    s1.add(id_batch(ids[:3]))  # a small shard with the small priorities ...
    s2.add(id_batch(ids[3:]))  # ... and a big one holding the largest and the smallest
    r = ShardedReplay([s1, s2], seed=3)
    # route priorities through global indices: shard 0 holds local 0..2, shard 1 local 0..4
    idx = np.concatenate([encode(0, np.arange(3), 2), encode(1, np.arange(5), 2)])
    r.update_priorities(idx, prios)
    p = (prios + 1e-6) ** alpha
    expected = p / p.sum()
    draws = np.concatenate([r.sample(256).extras["id"] for _ in range(250)])
    freq = np.bincount(draws, minlength=8) / len(draws)
    np.testing.assert_allclose(freq, expected, atol=0.006)  # 64 000 draws: sd <= 0.0017
    # weights: (N P(i))^-beta / max_j w_j = (p_i / min p)^-beta, the same as the single buffer's
    batch = r.sample(512)
    want = (p[batch.extras["id"]] / p.min()) ** -beta
    np.testing.assert_allclose(batch.weights, want, rtol=1e-5)
    single = one.sample(512)
    np.testing.assert_allclose(single.weights, (p[single.extras["id"]] / p.min()) ** -beta, rtol=1e-5)


def test_priority_updates_reach_the_shard_that_holds_the_row():
    s1 = InMemoryReplay(8, prioritized=True, alpha=1.0, beta=1.0, seed=1)
    s2 = InMemoryReplay(8, prioritized=True, alpha=1.0, beta=1.0, seed=2)
    s1.add(id_batch([0, 1]))
    s2.add(id_batch([10, 11]))
    r = ShardedReplay([s1, s2], seed=0)
    rows, idx = r.live_rows()
    assert sorted(rows["id"].tolist()) == [0, 1, 10, 11]
    # all the mass on row 11 (shard 1), almost none elsewhere
    r.update_priorities(idx, np.where(rows["id"] == 11, 1000.0, 1e-3))
    assert s2.mass()[0] == pytest.approx(1000.0 + 1e-3, rel=1e-4)
    assert s1.mass()[0] == pytest.approx(2e-3, rel=1e-2)
    ids = r.sample(500).extras["id"]
    assert (ids == 11).mean() > 0.99


def test_stats_merge_counts_and_weight_means():
    a, b = InMemoryReplay(4, seed=1), InMemoryReplay(4, seed=2)
    a.add(id_batch(range(4)))
    b.add(id_batch(range(10, 12)))
    r = ShardedReplay([a, b], seed=0)
    r.sample(60)
    st = r.stats()
    assert st["replay/size"] == 6 and st["replay/sampled"] == 60
    assert st["replay/shards"] == 2 and st["replay/shard_size_min"] == 2 and st["replay/shard_size_max"] == 4
    assert st["replay/uses_mean_live"] == pytest.approx(10.0)  # 60 draws over 6 live rows
    assert sum(st["replay/uses_hist_live"]) == 6


def test_mixed_shard_kinds_are_refused():
    with pytest.raises(ReplayError, match="all prioritized"):
        ShardedReplay([InMemoryReplay(4), InMemoryReplay(4, prioritized=True)])


def test_config_takes_shards_and_url_lists_and_records_a_managed_replay_without_secrets():
    from tandem.core.errors import TandemError
    from tandem.learners.registry import get_algo
    from tandem.runner.config import RunConfig, check_value, to_yaml_dict

    check_value("replay_shards", 4)
    with pytest.raises(TandemError, match="replay_shards"):
        check_value("replay_shards", 0)
    check_value("replay", "redis://:pw@a:1/0,rediss://b:2/0")
    with pytest.raises(TandemError, match="comma-separated"):
        check_value("replay", "redis://a:1/0,memory")
    algo_cfg = get_algo("dqn").config_cls()
    managed = to_yaml_dict(RunConfig(algo="dqn", replay_shards=2), algo_cfg)
    assert managed["replay_managed"] is True and managed["replay"] is None and managed["replay_shards"] == 2
    urls = "redis://:s3cret@a:1/0,redis://:s3cret@b:1/0"
    given = to_yaml_dict(RunConfig(algo="dqn", replay=urls), algo_cfg)
    assert given["replay_managed"] is False and "s3cret" not in str(given)
    assert to_yaml_dict(RunConfig(algo="ppo"), get_algo("ppo").config_cls())["replay_managed"] is False
