"""Idempotency keys: room on each page for the reply to be written beside its claim.

A money-moving request's key is inserted as a claim and, in the same transaction, updated
with the stored reply (about three times the claim's size). With full pages most of those
updates moved the row to another page and wrote all three of its index entries again; at
fillfactor 30 nearly all of them are heap-only (HOT) updates that touch no index. It
applies to pages written from now on. PostgreSQL only: SQLite has no fillfactor.

Revision ID: 0010_idempotency_fillfactor
Revises: 0009_settlement
"""

from alembic import op

revision = "0010_idempotency_fillfactor"
down_revision = "0009_settlement"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE api_idempotency_keys SET (fillfactor = 30)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE api_idempotency_keys RESET (fillfactor)")
