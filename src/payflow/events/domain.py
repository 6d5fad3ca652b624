"""Events as PayFlow sends them: an immutable envelope around a JSON object.

An event says that something happened (past tense, `noun.verb`), to which aggregate, and
when. Its id is derived from what caused it wherever the cause has a stable id, so a
retried transaction writes the same event and never a second one.
"""

from __future__ import annotations

import functools
import json
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from payflow.jsontext import dumps_compact
from payflow.timestamps import to_rfc3339

_EVENT_NAMESPACE: Final = uuid.UUID("8e2f5c1a-93d4-4b7e-a0c6-51f2d8b3e947")
# Names are `<aggregate>.<past-tense verb>` (the payout saga keeps the seed's
# `TRANSACTION_INITIATED` style): ASCII letters, digits, dots and underscores.
TYPE_LENGTH_MAX: Final = 64
AGGREGATE_ID_LENGTH_MAX: Final = 64
# Per-event bound on the JSON body: events describe a change, they do not carry files.
DATA_BYTES_MAX: Final = 32 * 1024


class EventError(ValueError):
    """A malformed envelope: from a broker, that is a poison message."""


def derived_event_id(cause: uuid.UUID | str, event_type: str) -> uuid.UUID:
    """The event id for `event_type` caused by `cause` (a transfer id, a user id, ...)."""
    return uuid.uuid5(_EVENT_NAMESPACE, f"{event_type}:{cause}")


def partition_of(aggregate_id: str, partitions: int) -> int:
    """The relay partition of an aggregate: all its events go through one relay in order."""
    return zlib.crc32(aggregate_id.encode()) % partitions


def _dumps(data: Mapping[str, Any]) -> str:
    return dumps_compact(data)


@dataclass(frozen=True, slots=True)
class Event:
    """One event. `occurred_at` is Unix nanoseconds; `data` is JSON-ready."""

    id: uuid.UUID
    type: str
    aggregate_type: str
    aggregate_id: str
    occurred_at: int
    data: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1

    def __post_init__(self) -> None:
        assert _valid_type(self.type), f"bad event type {self.type!r}"
        assert _valid_type(self.aggregate_type), f"bad aggregate type {self.aggregate_type!r}"
        assert 0 < len(self.aggregate_id) <= AGGREGATE_ID_LENGTH_MAX, "bad aggregate id"
        assert self.version >= 1, "versions start at 1"

    def envelope(self) -> dict[str, Any]:
        """The public form: what brokers carry, the feed lists and webhooks will sign."""
        return {
            "id": f"evt_{self.id.hex}",
            "type": self.type,
            "version": self.version,
            "occurred_at": to_rfc3339(self.occurred_at),
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "data": dict(self.data),
        }

    def encode(self) -> bytes:
        """The wire form (JSON, UTF-8); nanosecond time kept for latency measurements."""
        envelope = self.envelope()
        envelope["occurred_at_ns"] = self.occurred_at
        return _dumps(envelope).encode()

    @classmethod
    def decode(cls, body: bytes | str) -> Event:
        """Parse the wire form; anything malformed raises `EventError`."""
        try:
            raw = json.loads(body)
            if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
                raise EventError("an event is a JSON object with a `data` object")
            text_id = raw["id"]
            if not isinstance(text_id, str) or not text_id.startswith("evt_"):
                raise EventError(f"bad event id {text_id!r}")
            occurred_at = raw.get("occurred_at_ns")
            if not isinstance(occurred_at, int) or isinstance(occurred_at, bool):
                occurred_at = _parse_rfc3339_ns(str(raw["occurred_at"]))
            version = raw.get("version", 1)
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise EventError(f"bad version {version!r}")
            for name in ("type", "aggregate_type", "aggregate_id"):
                if not isinstance(raw.get(name), str):
                    raise EventError(f"`{name}` must be a string")
            if not _valid_type(raw["type"]) or not _valid_type(raw["aggregate_type"]):
                raise EventError("bad event or aggregate type")
            if not 0 < len(raw["aggregate_id"]) <= AGGREGATE_ID_LENGTH_MAX:
                raise EventError("bad aggregate id")
            return cls(
                id=uuid.UUID(hex=text_id[4:]),
                type=raw["type"],
                aggregate_type=raw["aggregate_type"],
                aggregate_id=raw["aggregate_id"],
                occurred_at=occurred_at,
                data=raw["data"],
                version=version,
            )
        except EventError:
            raise
        except (ValueError, KeyError, TypeError) as error:
            raise EventError(f"malformed event: {error}") from error

    def data_json(self) -> str:
        text = _dumps(self.data)
        assert len(text.encode()) <= DATA_BYTES_MAX, f"{self.type} data is too large"
        return text


@functools.lru_cache(maxsize=1024)
def _valid_type(name: str) -> bool:
    # Cached: every event checks its two type names, and there are few distinct ones.
    return (
        0 < len(name) <= TYPE_LENGTH_MAX
        and name.isascii()
        and name[0].isalpha()
        and all(c.isalnum() or c in "._" for c in name)
    )


def _parse_rfc3339_ns(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise EventError(f"occurred_at {text!r} has no time zone")
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
