"""Redis Streams: one stream of all events, one consumer group per PayFlow consumer.

Names: the stream `<namespace>:events` holds entries `{"body": <event>}`; consumer `c` is
the group `c`, and every broker object reads as its own group member
(`<host>-<pid>-<random>`), so each process is a separate worker.

What this means for the relay and consumers:
- `publish` sends one pipeline of XADDs per batch, in order, one round trip. The stream
  is trimmed to about `stream_length_max` entries (approximate trimming is cheap);
  entries trimmed before a group read them are lost to that group (the outbox and the
  feed still have them) and are reported as a warning when found pending.
- A group created for the first time receives every entry still in the stream; the
  consumer runner acknowledges event types it does not subscribe to without handling
  them.
- `receive` reads, in this order: this member's own pending entries once after each
  `subscribe` (what it had read before an error and not acknowledged), entries other
  members left unacknowledged for longer than `reclaim_idle_s` (a crashed or stuck
  worker's), then new entries. `close` cannot hand entries back: they wait for
  `reclaim_idle_s`.
- Entries are acknowledged with XACK and never deleted: other groups read the same
  stream. Members without pending entries are removed on `close`, and after an hour
  idle by any other member's `subscribe`, so crashed processes do not pile up.
- Durability is Redis's: use AOF persistence (`appendfsync everysec` or `always`) and a
  replica for events to survive a Redis restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from payflow.events.brokers import Delivery
from payflow.events.domain import Event

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 5.0
# `receive` blocks at most this long in one call, safely within the socket timeout.
BLOCK_S_MAX: Final = 20.0
SOCKET_TIMEOUT_S: Final = BLOCK_S_MAX + 10.0
# How often, at most, pending entries are scanned for ones to reclaim.
RECLAIM_INTERVAL_S_MAX: Final = 5.0
# Group members idle this long without pending entries are removed.
MEMBER_IDLE_MS_MAX: Final = 3_600_000

# Removes the group's members that have no pending entries and have been idle longer
# than ARGV[2] ms, or only the member ARGV[3] when it is given. One script, so that a
# member cannot read entries between the check and the removal (which would drop them
# from the group's pending list).
PRUNE_MEMBERS: Final = """
local removed = 0
for _, member in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local fields = {}
  for i = 1, #member, 2 do fields[member[i]] = member[i + 1] end
  local chosen = ARGV[3] == '' or fields['name'] == ARGV[3]
  if chosen and fields['pending'] == 0 and fields['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], fields['name'])
    removed = removed + 1
  end
end
return removed
"""


# A stream entry as read: its id and fields (none when it was trimmed while pending).
_Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass(slots=True)
class _Group:
    """What this member remembers of one consumer group."""

    # Where the next read of this member's own pending entries starts; None once read.
    own_pending_after: str | None = "0"
    reclaim_cursor: str = "0-0"
    reclaim_at_s: float = 0.0


class RedisStreamsBroker:
    """PayFlow's events on Redis Streams (see the module docstring)."""

    name = "redis"

    def __init__(
        self, url: str, *, namespace: str, stream_length_max: int, reclaim_idle_s: float
    ) -> None:
        assert stream_length_max >= 1 and reclaim_idle_s > 0
        self.stream_key = f"{namespace}:events"
        self.member = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._url = url
        self._stream_length_max = stream_length_max
        self._reclaim_idle_ms = int(reclaim_idle_s * 1000)
        self._reclaim_interval_s = min(reclaim_idle_s / 2, RECLAIM_INTERVAL_S_MAX)
        self._client: Redis | None = None
        self._groups: dict[str, _Group] = {}

    def _redis(self) -> Redis:
        # The client's pool reconnects by itself after an outage.
        if self._client is None:
            self._client = Redis.from_url(
                self._url,
                protocol=2,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S,
            )
        return self._client

    async def start(self) -> None:
        await self._redis().ping()

    async def close(self) -> None:
        client, self._client = self._client, None
        groups, self._groups = list(self._groups), {}
        if client is None:
            return
        with contextlib.suppress(RedisError, OSError):
            for group in groups:
                await self._prune(client, group, idle_ms_min=-1, member=self.member)
        await client.aclose()

    async def _prune(self, client: Redis, group: str, *, idle_ms_min: int, member: str) -> None:
        removing = client.eval(PRUNE_MEMBERS, 1, self.stream_key, group, idle_ms_min, member)
        await cast(Awaitable[int], removing)

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        async with self._redis().pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(
                    self.stream_key,
                    {"body": event.encode()},
                    maxlen=self._stream_length_max,
                    approximate=True,
                )
            await pipe.execute()

    async def subscribe(self, consumer: str, event_types: frozenset[str]) -> None:
        client = self._redis()
        try:
            await client.xgroup_create(self.stream_key, consumer, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        await self._prune(client, consumer, idle_ms_min=MEMBER_IDLE_MS_MAX, member="")
        # After an error, read again what this member was handed and did not acknowledge.
        self._groups[consumer] = _Group()

    async def receive(self, consumer: str, *, count_max: int, timeout_s: float) -> list[Delivery]:
        assert count_max >= 1, count_max
        group = self._groups.get(consumer)
        if group is None:
            raise ConnectionError(f"Redis: {consumer} is not subscribed")
        entries: list[_Entry] = []
        if group.own_pending_after is not None:
            entries = await self._read(consumer, group.own_pending_after, count_max, None)
            more = len(entries) == count_max
            group.own_pending_after = entries[-1][0].decode() if more else None
        if not entries and time.monotonic() >= group.reclaim_at_s:
            entries = await self._reclaim(consumer, group, count_max)
        if not entries:
            block_ms = int(min(timeout_s, BLOCK_S_MAX) * 1000)
            # BLOCK 0 would wait forever; without BLOCK there is no wait at all.
            entries = await self._read(consumer, ">", count_max, block_ms or None)
        return await self._deliveries(consumer, entries)

    async def _read(
        self, consumer: str, after: str, count_max: int, block_ms: int | None
    ) -> list[_Entry]:
        response: Any = await self._redis().xreadgroup(
            consumer, self.member, {self.stream_key: after}, count=count_max, block=block_ms
        )
        if not response:
            return []
        [[_key, entries]] = response
        return list(entries)

    async def _reclaim(self, consumer: str, group: _Group, count_max: int) -> list[_Entry]:
        """Take over entries idle too long in other members' hands, a page at a time."""
        response: Any = await self._redis().xautoclaim(
            self.stream_key,
            consumer,
            self.member,
            min_idle_time=self._reclaim_idle_ms,
            start_id=group.reclaim_cursor,
            count=count_max,
        )
        cursor, entries, trimmed = response
        group.reclaim_cursor = cursor.decode()
        if group.reclaim_cursor == "0-0":
            # A full pass is done: the next one after the interval.
            group.reclaim_at_s = time.monotonic() + self._reclaim_interval_s
        if trimmed:
            # XAUTOCLAIM already removed them from the pending list.
            self._warn_trimmed(consumer, trimmed)
        return list(entries)

    async def _deliveries(self, consumer: str, entries: Sequence[_Entry]) -> list[Delivery]:
        trimmed = [entry_id for entry_id, fields in entries if not fields]
        if trimmed:
            # Trimmed while pending in this member's hands: nothing is left to deliver,
            # and acknowledging drops them from the pending list.
            self._warn_trimmed(consumer, trimmed)
            await self._redis().xack(self.stream_key, consumer, *trimmed)
        return [
            Delivery.of(fields.get(b"body", b""), handle=entry_id)
            for entry_id, fields in entries
            if fields
        ]

    def _warn_trimmed(self, consumer: str, entry_ids: Sequence[bytes]) -> None:
        log.warning(
            "Redis: %d events were trimmed from %s before consumer %s handled them: %s",
            len(entry_ids),
            self.stream_key,
            consumer,
            b", ".join(entry_ids).decode(),
        )

    async def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        entry_ids = [delivery.handle for delivery in deliveries]
        await self._redis().xack(self.stream_key, consumer, *entry_ids)
