"""Time-ordered identifiers (UUIDv7, RFC 9562) and their public, type-prefixed form."""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid

from payflow.errors import PayFlowError

_lock = threading.Lock()
_last_ms = 0
_last_rand_a = 0


def uuid7() -> uuid.UUID:
    """A new UUIDv7, strictly increasing within this process.

    Layout: 48-bit Unix milliseconds, version 7, a 12-bit counter seeded randomly each
    millisecond (RFC 9562 method 3 style), variant, 62 random bits. When the counter runs
    out inside one millisecond, the timestamp is advanced by one so order still holds.
    """
    global _last_ms, _last_rand_a
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _last_rand_a = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            _last_rand_a += 1
            if _last_rand_a > 0xFFF:
                _last_ms += 1
                _last_rand_a = 0
        ms, rand_a = _last_ms, _last_rand_a
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def uuid7_time_ms(value: uuid.UUID) -> int:
    """The Unix-millisecond timestamp inside a UUIDv7."""
    assert value.version == 7, "not a UUIDv7"
    return value.int >> 80


def format_public_id(prefix: str, value: uuid.UUID) -> str:
    """`txn_0190…`: a type prefix makes ids readable in logs and stops mix-ups across types."""
    assert _is_prefix(prefix), "prefix must be lowercase letters"
    return f"{prefix}_{value.hex}"


@functools.lru_cache(maxsize=64)
def _is_prefix(prefix: str) -> bool:
    # Cached: a few prefixes, checked on every id a reply or an event shows.
    return prefix.isalpha() and prefix.islower()


def parse_public_id(prefix: str, text: str) -> uuid.UUID:
    """Parse `prefix_<32 hex>` (or a bare UUID); a malformed id is an expected failure."""
    body = text[len(prefix) + 1 :] if text.startswith(prefix + "_") else text
    try:
        return uuid.UUID(body)
    except ValueError:
        raise PayFlowError(
            "invalid_id", f"{text!r} is not a valid {prefix} id", http_status=422
        ) from None
