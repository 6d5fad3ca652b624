"""Every operator action is written here in the same transaction as its effect."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, MetaData, String, Table, Uuid

metadata = MetaData()

audit_log = Table(
    "operator_audit_log",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("actor_id", Uuid, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(100), nullable=True),
    Column("details", JSON, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

Index("operator_audit_log_created", audit_log.c.created_at)
