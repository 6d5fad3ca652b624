"""The ledger: accounts, transfers, pending expiries, account balance history.

Revision ID: 0001_ledger
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

COUNTERS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")
            for name in COUNTERS
        ),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("last_transfer_timestamp", sa.BigInteger(), nullable=False, server_default="0"),
        *(sa.CheckConstraint(f"{name} >= 0", name=f"{name}_not_negative") for name in COUNTERS),
        sa.CheckConstraint("length(currency) = 3", name="currency_is_iso_4217"),
        sa.CheckConstraint("code >= 0 AND code <= 65535", name="code_in_range"),
        sa.CheckConstraint("(flags & 3) <> 3", name="limit_flags_exclusive"),
        sa.CheckConstraint(
            "(flags & 1) = 0 OR debits_pending + debits_posted <= credits_posted",
            name="debits_must_not_exceed_credits",
        ),
        sa.CheckConstraint(
            "(flags & 2) = 0 OR credits_pending + credits_posted <= debits_posted",
            name="credits_must_not_exceed_debits",
        ),
        postgresql_with={"fillfactor": 85},
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        # No foreign keys to accounts: see payflow/ledger/models.py.
        sa.Column("debit_account_id", sa.Uuid(), nullable=False),
        sa.Column("credit_account_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("pending_id", sa.Uuid(), sa.ForeignKey("ledger_transfers.id"), nullable=True),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("debit_account_id <> credit_account_id", name="accounts_different"),
        sa.CheckConstraint(
            "(pending_id IS NULL) = ((flags & 12) = 0)", name="pending_id_iff_post_or_void"
        ),
        sa.CheckConstraint("timeout_s >= 0", name="timeout_not_negative"),
    )
    op.create_index(
        "ledger_transfers_pending_id_key", "ledger_transfers", ["pending_id"], unique=True
    )
    op.create_index(
        "ledger_transfers_debit_account", "ledger_transfers", ["debit_account_id", "timestamp"]
    )
    op.create_index(
        "ledger_transfers_credit_account", "ledger_transfers", ["credit_account_id", "timestamp"]
    )
    op.create_table(
        "ledger_pending_expiries",
        sa.Column("transfer_id", sa.Uuid(), sa.ForeignKey("ledger_transfers.id"), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ledger_pending_expiries_due", "ledger_pending_expiries", ["expires_at"])
    op.create_table(
        "ledger_account_balances",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.PrimaryKeyConstraint("account_id", "timestamp", "transfer_id"),
    )


def downgrade() -> None:
    op.drop_table("ledger_account_balances")
    op.drop_table("ledger_pending_expiries")
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")
