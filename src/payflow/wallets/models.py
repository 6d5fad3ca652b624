"""Wallets' tables. A wallet's id is its ledger account's id."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, UniqueConstraint, Uuid

metadata = MetaData()

wallets = Table(
    "wallets",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    # The owner's handle, kept here so addresses resolve without reading identity's tables.
    Column("handle", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("user_id", "currency", name="wallets_one_per_user_currency"),
    UniqueConstraint("handle", "currency", name="wallets_handle_currency"),
)

# The platform's own ledger accounts, by role and currency: where top-ups come from,
# where holds wait, where manual adjustments are booked.
system_accounts = Table(
    "wallets_system_accounts",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("account_id", Uuid, nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
)

Index("wallets_user", wallets.c.user_id)
