"""The schema record: what a replay buffer stores, derived from the first batch.

A schema names each field (the transition fields plus extras), its dtype and its per-row shape.
Data is stored as raw little-endian numpy bytes, ``itemsize`` bytes per row and field, so the
schema is all a reader needs to rebuild arrays; pickle never crosses Redis.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tandem.core.types import TRANSITION_FIELDS, Batch
from tandem.replay.errors import CorruptReplayError, SchemaMismatchError

FORMAT_VERSION = 1
"""Bump when the Redis layout changes; a reader refuses a record with another version."""

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _le(dtype: np.dtype) -> np.dtype:
    """The little-endian spelling of ``dtype`` (single-byte dtypes are unchanged)."""
    return dtype.newbyteorder("<")


@dataclass(frozen=True)
class FieldSpec:
    """One stored field: ``name``, little-endian dtype string (``'<f4'``) and per-row shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @cached_property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @cached_property
    def itemsize(self) -> int:
        """Bytes per row."""
        return int(self.np_dtype.itemsize * int(np.prod(self.shape, dtype=np.int64)))

    def describe(self) -> str:
        return f"{self.name} {self.np_dtype.name}{list(self.shape)}"


@dataclass(frozen=True)
class Schema:
    """Field names, dtypes and per-row shapes of a buffer, plus the format version.

    Build one from an example batch with :meth:`from_batch`. ``to_json`` / ``from_json`` give
    the canonical record stored at ``tandem:<name>:schema``; ``digest`` is its SHA-1, which
    every insert carries so that Redis itself refuses a writer with another schema.
    """

    fields: tuple[FieldSpec, ...]
    version: int = FORMAT_VERSION

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Schema:
        """Schema of a flat name -> ``[B, ...]`` array dict (row shape = shape[1:])."""
        specs = []
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            if not _NAME.match(name):
                raise SchemaMismatchError(
                    f"field name {name!r} is not storable: use letters, digits, '_', '.' or '-'"
                )
            if arr.ndim == 0:
                raise SchemaMismatchError(
                    f"field {name!r} is a scalar: every field needs a batch axis [B, ...]"
                )
            if arr.dtype.kind not in "biuf":
                raise SchemaMismatchError(
                    f"field {name!r} has dtype {arr.dtype}: only bool, integer and float arrays can be stored"
                )
            specs.append(FieldSpec(name, _le(arr.dtype).str, tuple(int(d) for d in arr.shape[1:])))
        return cls(tuple(specs))

    @classmethod
    def from_batch(cls, batch: Batch) -> Schema:
        """Schema of ``batch.arrays()``: the six transition fields plus its extras."""
        return cls.from_arrays(batch.arrays())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @cached_property
    def row_bytes(self) -> int:
        """Bytes per transition, all fields together."""
        return sum(f.itemsize for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "format": "tandem-replay",
            "version": self.version,
            "fields": [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape)} for f in self.fields],
        }

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal schemas give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha1(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "schema record") -> Schema:
        """Parse a stored record; a record that is not a Tandem schema is a clear error."""
        try:
            d = json.loads(text)
            if d.get("format") != "tandem-replay":
                raise ValueError("no 'format': 'tandem-replay' entry")
            version = int(d["version"])
            fields = tuple(
                FieldSpec(str(f["name"]), np.dtype(f["dtype"]).str, tuple(int(x) for x in f["shape"]))
                for f in d["fields"]
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptReplayError(
                f"{where} is not a Tandem replay schema ({e}): delete the key or use another replay name"
            ) from None
        if version != FORMAT_VERSION:
            raise SchemaMismatchError(
                f"{where} has format version {version}, this Tandem reads version {FORMAT_VERSION}: "
                "use another replay name or the matching Tandem version"
            )
        return cls(fields, version)

    def diff(self, other: Schema) -> str:
        """A short human description of how ``other`` differs from ``self``."""
        mine = {f.name: f for f in self.fields}
        theirs = {f.name: f for f in other.fields}
        parts = []
        for name in mine.keys() | theirs.keys():
            a, b = mine.get(name), theirs.get(name)
            if a is None:
                parts.append(f"extra field {b.describe()}")
            elif b is None:
                parts.append(f"missing field {a.describe()}")
            elif a != b:
                parts.append(f"{a.describe()} != {b.describe()}")
        if not parts and self.names != other.names:
            parts.append(f"field order {list(self.names)} != {list(other.names)}")
        return "; ".join(sorted(parts)) or "identical"

    def validate(self, arrays: Mapping[str, np.ndarray], who: str = "batch") -> dict[str, np.ndarray]:
        """Check ``arrays`` against the schema; return them as contiguous little-endian arrays.

        Raises :class:`SchemaMismatchError` naming every difference: nothing is written then.
        """
        other = Schema.from_arrays(arrays)
        if other.fields != self.fields:
            raise SchemaMismatchError(
                f"{who} does not match the replay schema ({self.diff(other)}): "
                "write the same fields, dtypes and shapes as the first batch, or use another replay name"
            )
        sizes = {int(np.asarray(a).shape[0]) for a in arrays.values()}
        if len(sizes) != 1:
            raise SchemaMismatchError(
                f"{who} has fields of different lengths {sorted(sizes)}: one row per transition"
            )
        return {f.name: np.ascontiguousarray(arrays[f.name], dtype=f.np_dtype) for f in self.fields}


def batch_arrays(batch: Batch | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Flat name -> array dict of a Batch (or a dict that already is one)."""
    if isinstance(batch, Batch):
        return batch.arrays()
    missing = [k for k in TRANSITION_FIELDS if k not in batch]
    if missing:
        raise SchemaMismatchError(f"batch lacks the transition fields {missing}: pass a core.types.Batch")
    return dict(batch)
