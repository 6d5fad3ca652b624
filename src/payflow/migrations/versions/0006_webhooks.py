"""Webhooks: endpoints, deliveries and their attempts.

Revision ID: 0006_webhooks
Revises: 0005_rewards
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_webhooks"
down_revision = "0005_rewards"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhooks_endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("event_types", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("disabled_reason", sa.String(length=16), nullable=True),
        sa.Column("disabled_at", sa.BigInteger(), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_expires_at", sa.BigInteger(), nullable=True),
        sa.Column("failing_since", sa.BigInteger(), nullable=True),
        sa.Column("failed_deliveries", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("deleted_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('enabled', 'disabled')", name="webhook_endpoint_status_known"
        ),
        sa.CheckConstraint(
            "disabled_reason IS NULL OR disabled_reason IN ('gone', 'failing', 'owner')",
            name="webhook_endpoint_disabled_reason_known",
        ),
        sa.CheckConstraint("failed_deliveries >= 0", name="webhook_failed_deliveries_not_negative"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhooks_endpoints", schema=None) as batch_op:
        batch_op.create_index("webhooks_endpoints_owner", ["owner_id", "created_at"], unique=False)
        batch_op.create_index("webhooks_endpoints_created", ["created_at", "id"], unique=False)

    op.create_table(
        "webhooks_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("round_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed', 'cancelled')",
            name="webhook_delivery_status_known",
        ),
        sa.CheckConstraint(
            "attempts >= 0 AND round_attempts >= 0 AND round_attempts <= attempts",
            name="webhook_delivery_attempts_bound",
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhooks_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "webhooks_deliveries_endpoint_created", ["endpoint_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "webhooks_deliveries_endpoint_occurred", ["endpoint_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "webhooks_deliveries_due", ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "webhooks_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("attempted_at", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("response_excerpt", sa.String(length=1000), nullable=True),
        sa.CheckConstraint("duration_ms >= 0", name="webhook_attempt_duration_not_negative"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhooks_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "webhooks_attempts_delivery", ["delivery_id", "attempted_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhooks_attempts", schema=None) as batch_op:
        batch_op.drop_index("webhooks_attempts_delivery")
    op.drop_table("webhooks_attempts")
    with op.batch_alter_table("webhooks_deliveries", schema=None) as batch_op:
        batch_op.drop_index("webhooks_deliveries_due")
        batch_op.drop_index("webhooks_deliveries_endpoint_occurred")
        batch_op.drop_index("webhooks_deliveries_endpoint_created")
    op.drop_table("webhooks_deliveries")
    with op.batch_alter_table("webhooks_endpoints", schema=None) as batch_op:
        batch_op.drop_index("webhooks_endpoints_created")
        batch_op.drop_index("webhooks_endpoints_owner")
    op.drop_table("webhooks_endpoints")
