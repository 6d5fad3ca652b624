"""`create_transfers(..., with_writes=)`: the caller's rows go out with the batch's write."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import BigInteger, Column, MetaData, String, Table, Uuid, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.bulk import BulkWrite
from payflow.db import is_postgresql, run_in_transaction
from payflow.ids import uuid7
from payflow.ledger import AccountFlags, Transfer, TransferOutcome, create_transfers
from tests.ledger.helpers import balances, new_accounts
from tests.ledger.test_batch_size import count_statements


@pytest.fixture
async def notes(engine: AsyncEngine) -> AsyncIterator[Table]:
    """A table of this test's own: one row per transfer outcome."""
    metadata = MetaData()
    table = Table(
        f"ledger_notes_{uuid.uuid4().hex[:8]}",
        metadata,
        Column("transfer_id", Uuid, primary_key=True),
        Column("code", String(64), nullable=False),
        Column("amount", BigInteger, nullable=False),
    )
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield table
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)


def _noting(
    table: Table, calls: list[list[TransferOutcome]]
) -> Callable[[list[TransferOutcome]], BulkWrite]:
    def with_writes(outcomes: list[TransferOutcome]) -> BulkWrite:
        calls.append(outcomes)
        rows = [
            {
                "transfer_id": o.transfer.id if o.transfer else uuid7(),
                "code": o.code.name,
                "amount": 1,
            }
            for o in outcomes
        ]
        return BulkWrite({table: rows})

    return with_writes


async def _noted(engine: AsyncEngine, table: Table) -> dict[uuid.UUID, str]:
    async with engine.connect() as conn:
        return {r.transfer_id: r.code for r in await conn.execute(select(table))}


async def test_rows_are_written_with_the_batch_in_its_one_write_statement(
    db: AsyncEngine, notes: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await new_accounts(db, 2)
    transfers = [Transfer(uuid7(), a, b, 5, "INR") for _ in range(3)]
    calls: list[list[TransferOutcome]] = []
    with count_statements(db, monkeypatch) as sent:
        outcomes = await run_in_transaction(
            db, lambda conn: create_transfers(conn, transfers, with_writes=_noting(notes, calls))
        )
    assert [o.ok for o in outcomes] == [True] * 3
    assert calls == [outcomes]
    assert await _noted(db, notes) == {t.id: "OK" for t in transfers}
    written = [s for s in sent if "BEGIN" not in s]
    if is_postgresql(db):
        # Lock-and-load, then one write carrying the notes too.
        assert len(written) == 2, written
        assert notes.name in written[1]
    assert (await balances(db, [b]))[b].credits_posted == 15


async def test_rows_of_a_batch_whose_transfers_all_fail_are_still_written(
    db: AsyncEngine, notes: Table
) -> None:
    [limited] = await new_accounts(db, 1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    [other] = await new_accounts(db, 1)
    refused = Transfer(uuid7(), limited, other, 5, "INR")
    calls: list[list[TransferOutcome]] = []
    [outcome] = await run_in_transaction(
        db, lambda conn: create_transfers(conn, [refused], with_writes=_noting(notes, calls))
    )
    assert not outcome.ok
    assert len(await _noted(db, notes)) == 1
    assert (await balances(db, [other]))[other].credits_posted == 0


async def test_an_empty_batch_still_writes_the_rows(db: AsyncEngine, notes: Table) -> None:
    calls: list[list[TransferOutcome]] = []

    def with_writes(outcomes: list[TransferOutcome]) -> BulkWrite:
        calls.append(outcomes)
        return BulkWrite({notes: [{"transfer_id": uuid7(), "code": "NONE", "amount": 0}]})

    assert (
        await run_in_transaction(
            db, lambda conn: create_transfers(conn, [], with_writes=with_writes)
        )
        == []
    )
    assert calls == [[]]
    assert list((await _noted(db, notes)).values()) == ["NONE"]


async def test_a_refused_row_rolls_the_money_back_too(db: AsyncEngine, notes: Table) -> None:
    a, b = await new_accounts(db, 2)
    clash = uuid7()

    def with_writes(outcomes: list[TransferOutcome]) -> BulkWrite:
        row = {"transfer_id": clash, "code": "OK", "amount": 1}
        return BulkWrite({notes: [row, dict(row)]})

    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        async with db.begin() as conn:
            await create_transfers(
                conn, [Transfer(uuid7(), a, b, 5, "INR")], with_writes=with_writes
            )
    assert await _noted(db, notes) == {}
    assert (await balances(db, [b]))[b].credits_posted == 0
    async with db.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(notes)) == 0
