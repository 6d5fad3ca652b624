"""The API's own table: idempotency keys and the responses they replay."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)

metadata = MetaData()

idempotency_keys = Table(
    "api_idempotency_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("principal", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    # The id the effect will use (e.g. the ledger transfer id): a takeover after a crash
    # reuses it, so the ledger itself refuses a second effect.
    Column("resource_id", Uuid, nullable=False),
    Column("locked_until", BigInteger, nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    UniqueConstraint("principal", "key", name="api_idempotency_keys_principal_key"),
    CheckConstraint("status IN ('in_flight', 'completed')", name="status_known"),
)

Index("api_idempotency_keys_expires", idempotency_keys.c.expires_at)
