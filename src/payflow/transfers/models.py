"""Transfers' tables: what the user asked for; the money itself is in the ledger."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    MetaData,
    String,
    Table,
    Uuid,
)

metadata = MetaData()

# One row per successful money movement a user sees; `id` is the ledger transfer's id.
transfers = Table(
    "transfers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("from_wallet_id", Uuid, nullable=True),
    Column("to_wallet_id", Uuid, nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("note", String(140), nullable=True),
    Column("hold_id", Uuid, nullable=True),
    Column("initiated_by", Uuid, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("kind IN ('p2p', 'topup', 'capture')", name="kind_known"),
)

Index("transfers_from_wallet", transfers.c.from_wallet_id, transfers.c.created_at)
Index("transfers_to_wallet", transfers.c.to_wallet_id, transfers.c.created_at)

# A hold is a pending ledger transfer (same id) from the wallet into the holds account;
# capture posts part or all of it and pays the payee in one linked chain; release voids it.
holds = Table(
    "holds",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("wallet_id", Uuid, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("note", String(140), nullable=True),
    Column("status", String(16), nullable=False),
    Column("captured_amount", BigInteger, nullable=False, server_default="0"),
    Column("payee_wallet_id", Uuid, nullable=True),
    Column("expires_at", BigInteger, nullable=True),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("resolved_at", BigInteger, nullable=True),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("captured_amount >= 0 AND captured_amount <= amount", name="captured_bound"),
    CheckConstraint("status IN ('held', 'captured', 'released')", name="status_known"),
)

Index("holds_wallet", holds.c.wallet_id, holds.c.created_at)
