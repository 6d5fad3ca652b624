"""Time as PayFlow stores it: integer Unix nanoseconds, shown to people as RFC 3339 UTC."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now_ns() -> int:
    """The wall clock in Unix nanoseconds."""
    return time.time_ns()


def to_rfc3339(timestamp_ns: int) -> str:
    """`2026-11-21T10:15:30.123456Z`: microsecond precision, always UTC."""
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    return f"{_second(seconds)}.{nanos // 1000:06d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # Cached: every reply and event formats a time, and most fall in the same seconds.
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
