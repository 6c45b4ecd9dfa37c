"""Schema records: derived from the first batch, canonical JSON, clear errors."""

import json

import numpy as np
import pytest

from tandem.core.types import Batch
from tandem.replay.errors import CorruptReplayError, SchemaMismatchError
from tandem.replay.schema import FORMAT_VERSION, Schema


def batch(n=4, obs_dim=3, obs_dtype=np.float32, **extras):
    obs = np.zeros((n, obs_dim), obs_dtype)
    return Batch(
        obs=obs,
        actions=np.zeros((n, 2), np.float32),
        rewards=np.zeros(n, np.float32),
        next_obs=obs.copy(),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        extras=extras,
    )


def test_from_batch_names_dtypes_shapes():
    s = Schema.from_batch(batch(logp=np.zeros(4, np.float32)))
    assert s.names == ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "logp")
    assert s.field("obs").dtype == "<f4" and s.field("obs").shape == (3,)
    assert s.field("terminated").dtype == "|b1"
    assert s.row_bytes == 12 + 8 + 4 + 12 + 1 + 1 + 4
    assert s.version == FORMAT_VERSION


def test_json_roundtrip_and_digest():
    s = Schema.from_batch(batch())
    again = Schema.from_json(s.to_json())
    assert again == s and again.digest == s.digest
    assert Schema.from_batch(batch(obs_dim=4)).digest != s.digest


def test_big_endian_input_is_stored_little_endian():
    s = Schema.from_batch(batch(obs_dtype=np.dtype(">f4")))
    assert s.field("obs").dtype == "<f4"
    rows = s.validate(batch(obs_dtype=np.dtype(">f4")).arrays())
    assert rows["obs"].dtype.str == "<f4"


@pytest.mark.parametrize(
    "other, needle",
    [
        (batch(obs_dim=4), "obs float32[3] != obs float32[4]"),
        (batch(obs_dtype=np.float64), "obs float32[3] != obs float64[3]"),
        (batch(logp=np.zeros(4, np.float32)), "extra field logp"),
    ],
)
def test_validate_names_the_difference(other, needle):
    s = Schema.from_batch(batch())
    with pytest.raises(SchemaMismatchError, match="does not match the replay schema") as e:
        s.validate(other.arrays())
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_unstorable_fields_are_refused():
    with pytest.raises(SchemaMismatchError, match="only bool, integer and float"):
        Schema.from_batch(batch(tag=np.array(["a"] * 4, dtype=object)))
    with pytest.raises(SchemaMismatchError, match="not storable"):
        Schema.from_arrays({**batch().arrays(), "bad name": np.zeros(4)})
    with pytest.raises(SchemaMismatchError, match="different lengths"):
        Schema.from_batch(batch()).validate({**batch().arrays(), "rewards": np.zeros(5, np.float32)})


@pytest.mark.parametrize(
    "text",
    [b"not json", b'{"fields": []}', json.dumps({"format": "tandem-replay", "version": 1}).encode()],
)
def test_corrupt_record_is_a_clear_error(text):
    with pytest.raises(CorruptReplayError, match="is not a Tandem replay schema"):
        Schema.from_json(text, "tandem:x:schema")


def test_other_format_version_is_refused():
    d = Schema.from_batch(batch()).to_dict()
    d["version"] = FORMAT_VERSION + 1
    with pytest.raises(SchemaMismatchError, match="format version"):
        Schema.from_json(json.dumps(d))


def test_redact_hides_passwords():
    from tandem.replay.errors import redact

    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://user:pw@host:1") == "rediss://user:***@host:1"
    assert redact("redis://host:6379") == "redis://host:6379"
