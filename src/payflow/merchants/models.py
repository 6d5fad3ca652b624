"""Merchants' tables. Constraints repeat domain.py's rules as a second guard."""

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
    Uuid,
)

metadata = MetaData()

# One profile per merchant user. Money reaches the merchant's wallet (`wallet_id`, in the
# settlement currency); settlement pays it out to the destination at another bank: a bank
# account (IFSC-style bank code + account number) or a UPI address, never both.
merchants = Table(
    "merchants",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False, unique=True),
    Column("wallet_id", Uuid, nullable=False),
    Column("business_name", String(100), nullable=False),
    Column("settlement_currency", String(3), nullable=False),
    Column("bank_code", String(11), nullable=True),
    Column("account_number", String(18), nullable=True),
    Column("vpa", String(100), nullable=True),
    Column("settlement_interval_s", Integer, nullable=False),
    Column("fee_bps", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint(
        "(bank_code IS NOT NULL AND account_number IS NOT NULL AND vpa IS NULL)"
        " OR (bank_code IS NULL AND account_number IS NULL AND vpa IS NOT NULL)",
        name="one_destination",
    ),
    CheckConstraint(
        "settlement_interval_s >= 60 AND settlement_interval_s <= 2592000",
        name="interval_in_range",
    ),
    CheckConstraint("fee_bps >= 0 AND fee_bps <= 10000", name="fee_in_range"),
    CheckConstraint("status IN ('active', 'suspended')", name="status_known"),
)
Index("merchants_created", merchants.c.created_at)
