"""Errors that tell the user what went wrong and what to do, in one line."""

from __future__ import annotations

import re

from tandem.core.errors import TandemError


class ReplayError(TandemError, ValueError):
    """A replay problem the user can fix (unreachable Redis, out of memory, bad config).

    The message is one line and names the fix, e.g. ``cannot reach Redis at
    redis://127.0.0.1:6379 (Connection refused): start redis-server or pass --replay memory``.
    A ``TandemError``, so the CLI prints it in one place; still a ``ValueError`` for callers
    that caught it as one.
    """


class SchemaMismatchError(ReplayError):
    """A batch or a stored buffer does not match this buffer's schema. Nothing was written."""


class CorruptReplayError(ReplayError):
    """Bytes in Redis are not what the schema record says they should be."""


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for error messages and logs."""
    return re.sub(r"(://)([^:@/]*):([^@/]*)@", r"\1\2:***@", url)
