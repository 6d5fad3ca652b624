"""The bank's own store: its accounts, the credits it received, its nostro book.

Not PayFlow's database: the simulator creates these tables itself at start
(`metadata.create_all`), in a SQLite file by default or any PostgreSQL database.
"""

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
    Text,
)

metadata = MetaData()

accounts = Table(
    "banksim_accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bank_code", String(11), nullable=False),
    Column("account_number", String(18), nullable=False),
    Column("vpa", String(96), nullable=True, unique=True),
    Column("name", String(140), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("closed", Boolean, nullable=False, default=False),
    # PayFlow's own account at this bank: credits are paid from it, statements are of it.
    Column("nostro", Boolean, nullable=False, default=False),
    Column("opening_balance", BigInteger, nullable=False, default=0),
    Column("created_at_ns", BigInteger, nullable=False),
    Index("banksim_accounts_number", "bank_code", "account_number", unique=True),
)

credits = Table(
    "banksim_credits",
    metadata,
    Column("reference", String(64), primary_key=True),
    # The request as received (canonical JSON): a retry must send exactly this again.
    Column("request", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("not_after", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(32), nullable=True),
    Column("bank_transaction_id", String(16), nullable=True, unique=True),
    Column("received_at_ns", BigInteger, nullable=False),
    Column("completed_at_ns", BigInteger, nullable=True),
    CheckConstraint("amount > 0", name="banksim_credit_amount_positive"),
    CheckConstraint(
        "status IN ('credited', 'rejected', 'processing')", name="banksim_credit_status"
    ),
    Index("banksim_credits_processing", "status"),
)

# The nostro account's book: one row per statement line. Amounts are positive; the
# direction says which way the money went.
entries = Table(
    "banksim_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", Integer, nullable=False),
    Column("booked_on", String(10), nullable=False),
    Column("value_on", String(10), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("direction", String(1), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("bank_transaction_id", String(16), nullable=False),
    Column("narrative", String(140), nullable=False),
    Column("booked_at_ns", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="banksim_entry_amount_positive"),
    CheckConstraint("direction IN ('D', 'C')", name="banksim_entry_direction"),
    CheckConstraint("kind IN ('payment', 'fee', 'unexpected')", name="banksim_entry_kind"),
    Index("banksim_entries_day", "account_id", "booked_on", "id"),
)
