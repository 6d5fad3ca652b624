"""Rewards' tables. Constraints repeat domain.py's rules as a second guard."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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

# Cashback rules, managed by operators. Never deleted: cashbacks name the rule they came
# from, so a rule is deactivated instead.
rules = Table(
    "rewards_rules",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(100), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("rate_bp", Integer, nullable=False),
    Column("cap_amount", BigInteger, nullable=False),
    Column("minimum_amount", BigInteger, nullable=False),
    Column("merchant_id", Uuid, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created_by", Uuid, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint("rate_bp >= 1 AND rate_bp <= 10000", name="rate_bp_in_range"),
    CheckConstraint("cap_amount > 0", name="cap_amount_positive"),
    CheckConstraint("minimum_amount >= 0", name="minimum_amount_not_negative"),
)
Index("rewards_rules_match", rules.c.currency, rules.c.merchant_id)
Index("rewards_rules_created", rules.c.created_at)

# One row per cashback paid; `id` is its ledger transfer's id (derived from the event),
# and a payment earns at most one cashback (`source_id` is unique).
cashbacks = Table(
    "rewards_cashbacks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("event_id", Uuid, nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("rule_id", Uuid, nullable=False),
    Column("user_id", Uuid, nullable=False),
    Column("wallet_id", Uuid, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("clawed_back_amount", BigInteger, nullable=False),
    Column("shortfall_amount", BigInteger, nullable=False),
    Column("status", String(24), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="amount_positive"),
    CheckConstraint("payment_amount > 0", name="payment_amount_positive"),
    CheckConstraint(
        "refunded_amount >= 0 AND refunded_amount <= payment_amount", name="refunded_bound"
    ),
    CheckConstraint(
        "clawed_back_amount >= 0 AND shortfall_amount >= 0"
        " AND clawed_back_amount + shortfall_amount <= amount",
        name="clawback_bound",
    ),
    CheckConstraint(
        "status IN ('paid', 'partially_clawed_back', 'clawed_back')", name="status_known"
    ),
)
Index("rewards_cashbacks_source", cashbacks.c.source_id, unique=True)
Index("rewards_cashbacks_user", cashbacks.c.user_id, cashbacks.c.created_at)

# One row per refund event; `id` is its ledger transfer's id when money came back.
# `cashback_id` is null while the refund waits for its payment's cashback.
clawbacks = Table(
    "rewards_clawbacks",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("event_id", Uuid, nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("refund_id", String(64), nullable=False),
    Column("cashback_id", Uuid, nullable=True),
    Column("currency", String(3), nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("due_amount", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("shortfall_amount", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("applied_at", BigInteger, nullable=True),
    CheckConstraint("refunded_amount > 0", name="refunded_amount_positive"),
    CheckConstraint(
        "amount >= 0 AND shortfall_amount >= 0 AND amount + shortfall_amount = due_amount",
        name="due_split",
    ),
)
Index("rewards_clawbacks_source", clawbacks.c.source_id, clawbacks.c.created_at)
