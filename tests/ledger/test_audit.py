"""The audit finds tampering; the database's constraints refuse what they can, first.

Each tamper test corrupts the ledger inside a transaction, audits it there and rolls back,
so the ledger is whole again for the audit the `db` fixture runs afterwards.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from payflow.ids import uuid7
from payflow.ledger import (
    AccountFlags,
    AuditReport,
    Transfer,
    TransferFlags,
    TransferResult,
    audit,
    models,
)
from tests.ledger.helpers import new_accounts, submit
from tests.ledger.support import codes

accounts_table = models.accounts
transfers_table = models.transfers
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING
VOID = TransferFlags.VOID_PENDING


async def _audit_after(engine: AsyncEngine, *statements: Executable) -> AuditReport:
    """Run `statements`, audit, roll back."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            for statement in statements:
                await conn.execute(statement)
            return await audit(conn)
        finally:
            await transaction.rollback()


async def _pay(
    engine: AsyncEngine, currency: str = "KWD", amount: int = 100
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    a, b = await new_accounts(engine, 2, currency=currency)
    transfer = Transfer(uuid7(), a, b, amount, currency)
    assert codes(await submit(engine, [transfer])) == [TransferResult.OK]
    return a, b, transfer.id


async def _resolved(engine: AsyncEngine, flags: int) -> tuple[uuid.UUID, uuid.UUID]:
    """A pending transfer of 100 and its post (of 60) or void; returns their ids."""
    a, b = await new_accounts(engine, 2)
    pending = Transfer(uuid7(), a, b, 100, "INR", flags=PENDING)
    amount = 60 if flags == POST else None
    resolution = Transfer(uuid7(), pending_id=pending.id, amount=amount, flags=flags)
    assert codes(await submit(engine, [pending, resolution])) == [TransferResult.OK] * 2
    return pending.id, resolution.id


def _set_account(account_id: uuid.UUID, **values: Any) -> Executable:
    return update(accounts_table).where(accounts_table.c.id == account_id).values(**values)


def _set_transfer(transfer_id: uuid.UUID, **values: Any) -> Executable:
    return update(transfers_table).where(transfers_table.c.id == transfer_id).values(**values)


class TestAuditFindsTampering:
    async def test_clean_ledger(self, db: AsyncEngine) -> None:
        await _pay(db)
        await _resolved(db, POST)
        async with db.begin() as conn:
            report = await audit(conn)
        assert report.ok, report.violations
        assert report.violations == []
        assert report.transfers >= 3
        assert all(totals.balanced for totals in report.totals)
        assert "KWD" in {totals.currency for totals in report.totals}

    async def test_raised_credits_posted(self, db: AsyncEngine) -> None:
        _, b, _ = await _pay(db)
        report = await _audit_after(
            db, _set_account(b, credits_posted=accounts_table.c.credits_posted + 7)
        )
        assert not report.ok
        assert any(
            v.startswith(f"account {b}: counters (0, 0, 0, 107) ≠ sum of transfers (0, 0, 0, 100)")
            for v in report.violations
        ), report.violations
        assert any(v.startswith("KWD: debits") for v in report.violations), report.violations
        (kwd,) = [t for t in report.totals if t.currency == "KWD"]
        assert kwd.credits_posted == kwd.debits_posted + 7
        assert not kwd.balanced

    async def test_raised_debits_pending(self, db: AsyncEngine) -> None:
        a, _, _ = await _pay(db)
        report = await _audit_after(db, _set_account(a, debits_pending=5))
        assert any(v.startswith(f"account {a}: counters (5, 100, 0, 0)") for v in report.violations)
        (kwd,) = [t for t in report.totals if t.currency == "KWD"]
        assert kwd.debits_pending == kwd.credits_pending + 5

    async def test_changed_transfer_amount(self, db: AsyncEngine) -> None:
        a, b, transfer_id = await _pay(db)
        report = await _audit_after(db, _set_transfer(transfer_id, amount=101))
        mismatched = {v.split(":")[0] for v in report.violations}
        assert mismatched == {f"account {a}", f"account {b}"}
        # The counters still balance: only the comparison with the transfers finds it.
        assert all(totals.balanced for totals in report.totals)

    async def test_deleted_transfer(self, db: AsyncEngine) -> None:
        a, b, transfer_id = await _pay(db)
        report = await _audit_after(
            db, delete(transfers_table).where(transfers_table.c.id == transfer_id)
        )
        assert {v.split(":")[0] for v in report.violations} == {f"account {a}", f"account {b}"}

    async def test_transfer_in_another_currency_than_its_accounts(self, db: AsyncEngine) -> None:
        _, _, transfer_id = await _pay(db)
        report = await _audit_after(db, _set_transfer(transfer_id, currency="BHD"))
        assert report.violations == [
            f"transfer {transfer_id}: an account it names is missing or of another currency"
        ]

    async def test_transfer_naming_a_missing_account(self, db: AsyncEngine) -> None:
        a, _, transfer_id = await _pay(db)
        report = await _audit_after(db, _set_transfer(transfer_id, debit_account_id=uuid7()))
        assert (
            f"transfer {transfer_id}: an account it names is missing or of another currency"
            in report.violations
        )
        assert any(v.startswith(f"account {a}: counters") for v in report.violations)

    async def test_post_of_more_than_pending(self, db: AsyncEngine) -> None:
        pending_id, post_id = await _resolved(db, POST)
        report = await _audit_after(db, _set_transfer(post_id, amount=101))
        assert f"transfer {post_id}: posts more than pending ({pending_id})" in report.violations

    async def test_void_of_a_different_amount(self, db: AsyncEngine) -> None:
        pending_id, void_id = await _resolved(db, VOID)
        report = await _audit_after(db, _set_transfer(void_id, amount=99))
        assert f"transfer {void_id}: voids a different amount ({pending_id})" in report.violations

    async def test_resolution_of_a_transfer_that_is_not_pending(self, db: AsyncEngine) -> None:
        pending_id, post_id = await _resolved(db, POST)
        report = await _audit_after(db, _set_transfer(pending_id, flags=0))
        assert (
            f"transfer {post_id}: resolves a transfer that is not pending ({pending_id})"
            in report.violations
        )

    async def test_resolution_with_other_accounts(self, db: AsyncEngine) -> None:
        pending_id, post_id = await _resolved(db, POST)
        (other,) = await new_accounts(db, 1)
        report = await _audit_after(db, _set_transfer(post_id, credit_account_id=other))
        assert (
            f"transfer {post_id}: accounts differ from pending ({pending_id})" in report.violations
        )

    async def test_violations_max(self, db: AsyncEngine) -> None:
        _, _, transfer_id = await _pay(db)
        async with db.connect() as conn:
            transaction = await conn.begin()
            try:
                await conn.execute(_set_transfer(transfer_id, amount=101))
                report = await audit(conn, violations_max=1)
            finally:
                await transaction.rollback()
        assert len(report.violations) == 1

    async def test_rollback_restored_the_ledger(self, db: AsyncEngine) -> None:
        a, _, _ = await _pay(db)
        await _audit_after(db, _set_account(a, debits_posted=0))
        async with db.begin() as conn:
            assert (await audit(conn)).ok


async def _insert_transfer(conn: AsyncConnection, **override: Any) -> uuid.UUID:
    row: dict[str, Any] = {
        "id": uuid7(),
        "amount": 1,
        "currency": "INR",
        "code": 0,
        "flags": 0,
        "pending_id": None,
        "timeout_s": 0,
        "timestamp": time.time_ns(),
    }
    row.update(override)
    await conn.execute(transfers_table.insert().values(**row))
    return uuid.UUID(str(row["id"]))


async def _raises_integrity_error(engine: AsyncEngine, work: Any) -> None:
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await work(conn)


async def _succeeds_then_rolls_back(engine: AsyncEngine, work: Any) -> None:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            await work(conn)
        finally:
            await transaction.rollback()


class TestConstraints:
    """The second guard: what the batch engine refuses, the schema refuses too."""

    @pytest.mark.parametrize(
        ("valid", "invalid"),
        [
            ({"amount": 1}, {"amount": 0}),
            ({"amount": 1}, {"amount": -5}),
            ({"timeout_s": 0}, {"timeout_s": -1}),
            ({"flags": 0}, {"flags": int(POST)}),  # a post without pending_id
        ],
    )
    async def test_transfer_row(
        self, db: AsyncEngine, valid: dict[str, Any], invalid: dict[str, Any]
    ) -> None:
        a, b = await new_accounts(db, 2)
        sides = {"debit_account_id": a, "credit_account_id": b}
        await _succeeds_then_rolls_back(db, lambda conn: _insert_transfer(conn, **sides, **valid))
        await _raises_integrity_error(db, lambda conn: _insert_transfer(conn, **sides, **invalid))

    async def test_same_account_on_both_sides(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        await _succeeds_then_rolls_back(
            db, lambda conn: _insert_transfer(conn, debit_account_id=a, credit_account_id=b)
        )
        await _raises_integrity_error(
            db, lambda conn: _insert_transfer(conn, debit_account_id=a, credit_account_id=a)
        )

    async def test_pending_id_only_on_post_or_void(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending = Transfer(uuid7(), a, b, 10, "INR", flags=PENDING)
        assert codes(await submit(db, [pending])) == [TransferResult.OK]
        sides = {"debit_account_id": a, "credit_account_id": b, "amount": 10}
        await _succeeds_then_rolls_back(
            db, lambda conn: _insert_transfer(conn, flags=int(VOID), pending_id=pending.id, **sides)
        )
        await _raises_integrity_error(
            db, lambda conn: _insert_transfer(conn, flags=0, pending_id=pending.id, **sides)
        )
        void = Transfer(uuid7(), pending_id=pending.id, flags=VOID)
        assert codes(await submit(db, [void])) == [TransferResult.OK]

    async def test_second_resolution_of_one_pending(self, db: AsyncEngine) -> None:
        pending_id, _ = await _resolved(db, POST)
        async with db.begin() as conn:
            (pending,) = (
                await conn.execute(
                    transfers_table.select().where(transfers_table.c.id == pending_id)
                )
            ).all()
        await _raises_integrity_error(
            db,
            lambda conn: _insert_transfer(
                conn,
                debit_account_id=pending.debit_account_id,
                credit_account_id=pending.credit_account_id,
                amount=pending.amount,
                flags=int(VOID),
                pending_id=pending_id,
            ),
        )

    async def test_duplicate_transfer_id(self, db: AsyncEngine) -> None:
        _, _, transfer_id = await _pay(db, currency="INR")
        a, b = await new_accounts(db, 2)
        await _raises_integrity_error(
            db,
            lambda conn: _insert_transfer(
                conn, id=transfer_id, debit_account_id=a, credit_account_id=b
            ),
        )

    @pytest.mark.parametrize(
        "counter", ["debits_pending", "debits_posted", "credits_pending", "credits_posted"]
    )
    async def test_negative_counter(self, db: AsyncEngine, counter: str) -> None:
        (a,) = await new_accounts(db, 1)
        await _succeeds_then_rolls_back(
            db, lambda conn: conn.execute(_set_account(a, **{counter: 0}))
        )
        await _raises_integrity_error(
            db, lambda conn: conn.execute(_set_account(a, **{counter: -1}))
        )

    async def test_debits_must_not_exceed_credits(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        await _succeeds_then_rolls_back(
            db,
            lambda conn: conn.execute(
                _set_account(a, credits_posted=10, debits_posted=6, debits_pending=4)
            ),
        )
        await _raises_integrity_error(
            db,
            lambda conn: conn.execute(
                _set_account(a, credits_posted=10, debits_posted=6, debits_pending=5)
            ),
        )

    async def test_credits_must_not_exceed_debits(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1, flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
        await _succeeds_then_rolls_back(
            db,
            lambda conn: conn.execute(_set_account(a, debits_posted=10, credits_posted=10)),
        )
        await _raises_integrity_error(
            db,
            lambda conn: conn.execute(
                _set_account(a, debits_posted=10, credits_posted=10, credits_pending=1)
            ),
        )

    async def test_both_limit_flags(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1)
        await _succeeds_then_rolls_back(db, lambda conn: conn.execute(_set_account(a, flags=1)))
        await _raises_integrity_error(db, lambda conn: conn.execute(_set_account(a, flags=3)))

    @pytest.mark.parametrize(
        ("valid", "invalid"),
        [
            ({"code": 65_535}, {"code": 65_536}),
            ({"code": 0}, {"code": -1}),
            ({"currency": "USD"}, {"currency": "US"}),
        ],
    )
    async def test_account_fields(
        self, db: AsyncEngine, valid: dict[str, Any], invalid: dict[str, Any]
    ) -> None:
        (a,) = await new_accounts(db, 1)
        await _succeeds_then_rolls_back(db, lambda conn: conn.execute(_set_account(a, **valid)))
        await _raises_integrity_error(db, lambda conn: conn.execute(_set_account(a, **invalid)))

    async def test_expiry_of_a_missing_transfer(self, db: AsyncEngine) -> None:
        table = models.pending_expiries
        await _raises_integrity_error(
            db, lambda conn: conn.execute(table.insert().values(transfer_id=uuid7(), expires_at=1))
        )
