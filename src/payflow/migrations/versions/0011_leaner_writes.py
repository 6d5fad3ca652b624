"""Leaner writes per transfer: idempotency keys on full pages again, and only resolving
transfers in the index of pending ids.

Since ledger batches insert their keys complete with the write, almost no key is updated
after its insert: fillfactor 30 (migration 0010) only made the table, which holds a day
of keys, three times larger and each batch dirty three times the pages. The keys that
are still claimed first (after a taken key, the payout routes) are updated off-page
again, as before 0010.

`ledger_transfers_pending_id_key` makes a pending transfer's resolution unique; every
other transfer has no `pending_id`, yet each wrote a NULL entry into it. Partial, it
holds the resolutions only: the same uniqueness, one index insert fewer per transfer.
Its lookups (`pending_id = <id>`) imply the predicate, so the planner still uses it.

Revision ID: 0011_leaner_writes
Revises: 0010_idempotency_fillfactor
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_leaner_writes"
down_revision = "0010_idempotency_fillfactor"
branch_labels = None
depends_on = None

_RESOLVING = sa.text("pending_id IS NOT NULL")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE api_idempotency_keys RESET (fillfactor)")
    op.drop_index("ledger_transfers_pending_id_key", table_name="ledger_transfers")
    op.create_index(
        "ledger_transfers_pending_id_key",
        "ledger_transfers",
        ["pending_id"],
        unique=True,
        postgresql_where=_RESOLVING,
        sqlite_where=_RESOLVING,
    )


def downgrade() -> None:
    op.drop_index("ledger_transfers_pending_id_key", table_name="ledger_transfers")
    op.create_index(
        "ledger_transfers_pending_id_key", "ledger_transfers", ["pending_id"], unique=True
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE api_idempotency_keys SET (fillfactor = 30)")
