"""The events context's tables: the outbox, consumers' records, dead letters, leases."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.schema import FetchedValue

metadata = MetaData()

# The transactional outbox and, in the embedded default, the event log itself.
# `txid` is the writing transaction's id on PostgreSQL (its server default) and 0 on
# SQLite, whose single writer commits in `sequence` order: the feed pages by
# (txid, sequence) and only up to the oldest transaction still running, so it never
# skips an event that commits late (docs/decisions.md, "the event feed").
outbox = Table(
    "events_outbox",
    metadata,
    Column("sequence", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("txid", BigInteger, nullable=False, server_default=FetchedValue()),
    Column("id", Uuid, nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("version", SmallInteger, nullable=False),
    Column("aggregate_type", String(64), nullable=False),
    Column("aggregate_id", String(64), nullable=False),
    Column("partition", SmallInteger, nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    # Set by the relay once the broker confirmed the event; unused in the embedded
    # default, where consumers read this table directly.
    Column("published_at", BigInteger, nullable=True),
    CheckConstraint("version >= 1", name="version_positive"),
    # Never reuse a sequence number, even after cleanup deleted the newest rows.
    sqlite_autoincrement=True,
)
Index("events_outbox_feed", outbox.c.txid, outbox.c.sequence)
Index(
    "events_outbox_unpublished",
    outbox.c.partition,
    outbox.c.sequence,
    postgresql_where=outbox.c.published_at.is_(None),
    sqlite_where=outbox.c.published_at.is_(None),
)
Index("events_outbox_occurred", outbox.c.occurred_at)

# What each consumer has processed: written in the same transaction as its effect.
processed = Table(
    "events_processed",
    metadata,
    Column("consumer", String(64), nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("processed_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("consumer", "event_id", name="events_processed_pkey"),
)
Index("events_processed_at", processed.c.processed_at)

# Messages a consumer gave up on after its retries, for operators to see and replay.
dead_letters = Table(
    "events_dead_letters",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("consumer", String(64), nullable=False),
    Column("event_id", Uuid, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("parked_at", BigInteger, nullable=False),
    Column("replay_requested_at", BigInteger, nullable=True),
    Column("resolved_at", BigInteger, nullable=True),
    CheckConstraint(
        "status IN ('parked', 'replaying', 'replayed')", name="dead_letter_status_known"
    ),
)
Index(
    "events_dead_letters_consumer_event",
    dead_letters.c.consumer,
    dead_letters.c.event_id,
    unique=True,
)
Index("events_dead_letters_status", dead_letters.c.status, dead_letters.c.id)

# Exclusive, expiring ownership: of a relay partition (`relay:3`) or of a consumer's
# position in the embedded log (`log:notifications`). A crashed owner's lease runs out.
leases = Table(
    "events_leases",
    metadata,
    Column("name", String(96), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# Each consumer's position in the embedded event log: (txid, sequence) of the last event
# it has passed.
offsets = Table(
    "events_offsets",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("txid", BigInteger, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
