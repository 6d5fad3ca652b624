"""Time as PayFlow stores it: integer Unix nanoseconds, shown to people as RFC 3339 UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ns() -> int:
    """The wall clock in Unix nanoseconds."""
    return time.time_ns()


def to_rfc3339(timestamp_ns: int) -> str:
    """`2026-11-21T10:15:30.123456Z`: microsecond precision, always UTC."""
    seconds, nanos = divmod(timestamp_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=nanos // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
