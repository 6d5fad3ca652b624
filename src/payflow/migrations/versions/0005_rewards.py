"""Rewards: cashback rules and paid cashbacks.

Revision ID: 0005_rewards
Revises: 0004_notifications
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_rewards"
down_revision = "0004_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rewards_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("rate_bp", sa.Integer(), nullable=False),
        sa.Column("cap_amount", sa.BigInteger(), nullable=False),
        sa.Column("minimum_amount", sa.BigInteger(), nullable=False),
        sa.Column("merchant_id", sa.Uuid(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("rate_bp >= 1 AND rate_bp <= 10000", name="rate_bp_in_range"),
        sa.CheckConstraint("cap_amount > 0", name="cap_amount_positive"),
        sa.CheckConstraint("minimum_amount >= 0", name="minimum_amount_not_negative"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rewards_rules", schema=None) as batch_op:
        batch_op.create_index("rewards_rules_match", ["currency", "merchant_id"], unique=False)
        batch_op.create_index("rewards_rules_created", ["created_at"], unique=False)

    op.create_table(
        "rewards_cashbacks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("clawed_back_amount", sa.BigInteger(), nullable=False),
        sa.Column("shortfall_amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("payment_amount > 0", name="payment_amount_positive"),
        sa.CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= payment_amount", name="refunded_bound"
        ),
        sa.CheckConstraint(
            "clawed_back_amount >= 0 AND shortfall_amount >= 0"
            " AND clawed_back_amount + shortfall_amount <= amount",
            name="clawback_bound",
        ),
        sa.CheckConstraint(
            "status IN ('paid', 'partially_clawed_back', 'clawed_back')", name="status_known"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rewards_cashbacks", schema=None) as batch_op:
        batch_op.create_index("rewards_cashbacks_source", ["source_id"], unique=True)
        batch_op.create_index("rewards_cashbacks_user", ["user_id", "created_at"], unique=False)

    op.create_table(
        "rewards_clawbacks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("refund_id", sa.String(length=64), nullable=False),
        sa.Column("cashback_id", sa.Uuid(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("due_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("shortfall_amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("applied_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("refunded_amount > 0", name="refunded_amount_positive"),
        sa.CheckConstraint(
            "amount >= 0 AND shortfall_amount >= 0 AND amount + shortfall_amount = due_amount",
            name="due_split",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rewards_clawbacks", schema=None) as batch_op:
        batch_op.create_index("rewards_clawbacks_source", ["source_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("rewards_clawbacks", schema=None) as batch_op:
        batch_op.drop_index("rewards_clawbacks_source")
    op.drop_table("rewards_clawbacks")
    with op.batch_alter_table("rewards_cashbacks", schema=None) as batch_op:
        batch_op.drop_index("rewards_cashbacks_user")
        batch_op.drop_index("rewards_cashbacks_source")
    op.drop_table("rewards_cashbacks")
    with op.batch_alter_table("rewards_rules", schema=None) as batch_op:
        batch_op.drop_index("rewards_rules_created")
        batch_op.drop_index("rewards_rules_match")
    op.drop_table("rewards_rules")
