"""Reads: lookups, an account's transfers page by page, history, balance at a point in time."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.errors import PayFlowError
from payflow.ids import uuid7
from payflow.ledger import (
    AccountFlags,
    BalanceSnapshot,
    Cursor,
    Transfer,
    TransferFlags,
    TransferResult,
    expire_pending_transfers,
    get_account_balance_at,
    get_account_history,
    get_account_transfers,
    lookup_accounts,
    lookup_transfers,
)
from payflow.ledger.domain import NIL_ID
from payflow.ledger.queries import PAGE_SIZE_MAX
from tests.ledger.helpers import new_accounts, submit
from tests.ledger.support import codes, counters

R = TransferResult
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING
VOID = TransferFlags.VOID_PENDING
SECOND = 1_000_000_000


async def _ok(engine: AsyncEngine, transfers: list[Transfer], now_ns: int) -> list[Transfer]:
    outcomes = await submit(engine, transfers, now_ns=now_ns)
    assert codes(outcomes) == [R.OK] * len(transfers)
    return [o.transfer for o in outcomes if o.transfer is not None]


class TestLookup:
    async def test_transfers_in_the_order_asked(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        records = await _ok(
            db, [Transfer(uuid7(), a, b, n, "INR") for n in (1, 2, 3)], time.time_ns()
        )
        first, second, third = records
        missing = uuid7()
        async with db.begin() as conn:
            found = await lookup_transfers(conn, [third.id, missing, first.id, third.id])
            assert found == [third, first, third]
            assert await lookup_transfers(conn, [second.id]) == [second]
            assert await lookup_transfers(conn, [missing]) == []
            assert await lookup_transfers(conn, []) == []

    async def test_accounts_in_the_order_asked(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        missing = uuid7()
        async with db.begin() as conn:
            found = await lookup_accounts(conn, [b, missing, a])
            assert [account.id for account in found] == [b, a]
            assert await lookup_accounts(conn, []) == []

    @pytest.mark.parametrize("lookup", [lookup_transfers, lookup_accounts])
    async def test_too_many_ids(self, db: AsyncEngine, lookup: Any) -> None:
        async with db.begin() as conn:
            assert await lookup(conn, [uuid7() for _ in range(8190)]) == []
            with pytest.raises(PayFlowError) as caught:
                await lookup(conn, [uuid7() for _ in range(8191)])
        assert caught.value.code == "batch_too_large"


class TestAccountTransfers:
    async def _setup(self, db: AsyncEngine, count: int) -> tuple[uuid.UUID, list[Transfer]]:
        """`count` transfers on `a`, alternately debiting and crediting it, over several
        batches; plus transfers between other accounts that must not show up."""
        a, b, c = await new_accounts(db, 3)
        transfers = [
            Transfer(uuid7(), a, b, 1, "INR") if n % 2 == 0 else Transfer(uuid7(), c, a, 2, "INR")
            for n in range(count)
        ]
        now = time.time_ns()
        created: list[Transfer] = []
        for start in range(0, count, 7):
            batch = transfers[start : start + 7]
            created += await _ok(db, [*batch, Transfer(uuid7(), b, c, 5, "INR")], now)
            now += 1_000
        return a, [t for t in created if a in (t.debit_account_id, t.credit_account_id)]

    async def _pages(
        self, db: AsyncEngine, account_id: uuid.UUID, limit: int
    ) -> list[list[Transfer]]:
        pages: list[list[Transfer]] = []
        after: Cursor | None = None
        async with db.begin() as conn:
            while True:
                page = await get_account_transfers(conn, account_id, limit=limit, after=after)
                pages.append(page.items)
                if page.next_cursor is None:
                    return pages
                last = page.items[-1]
                assert page.next_cursor == Cursor(last.timestamp, last.id)
                after = Cursor.decode(page.next_cursor.encode())

    async def test_pagination_over_25_transfers(self, db: AsyncEngine) -> None:
        a, expected = await self._setup(db, 25)
        pages = await self._pages(db, a, 10)
        assert [len(page) for page in pages] == [10, 10, 5]
        items = [t for page in pages for t in page]
        assert items == sorted(expected, key=lambda t: (t.timestamp, t.id.int))
        assert len({t.id for t in items}) == 25
        assert sum(t.debit_account_id == a for t in items) == 13
        assert sum(t.credit_account_id == a for t in items) == 12

    async def test_exact_multiple_of_the_limit_has_no_empty_page(self, db: AsyncEngine) -> None:
        a, expected = await self._setup(db, 20)
        pages = await self._pages(db, a, 10)
        assert [len(page) for page in pages] == [10, 10]
        assert [t.id for page in pages for t in page] == [t.id for t in expected]

    async def test_limit_one(self, db: AsyncEngine) -> None:
        a, expected = await self._setup(db, 4)
        pages = await self._pages(db, a, 1)
        assert [t.id for page in pages for t in page] == [t.id for t in expected]

    async def test_one_page_when_the_limit_is_large(self, db: AsyncEngine) -> None:
        a, expected = await self._setup(db, 5)
        async with db.begin() as conn:
            page = await get_account_transfers(conn, a, limit=PAGE_SIZE_MAX)
        assert page.items == expected
        assert page.next_cursor is None

    async def test_no_transfers(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1)
        async with db.begin() as conn:
            page = await get_account_transfers(conn, a)
            assert (page.items, page.next_cursor) == ([], None)
            page = await get_account_transfers(conn, uuid7())
            assert (page.items, page.next_cursor) == ([], None)

    async def test_cursor_after_the_last(self, db: AsyncEngine) -> None:
        a, expected = await self._setup(db, 3)
        last = expected[-1]
        async with db.begin() as conn:
            page = await get_account_transfers(conn, a, after=Cursor(last.timestamp, last.id))
            assert (page.items, page.next_cursor) == ([], None)
            # Same timestamp, smaller id: the last one is still after the cursor.
            page = await get_account_transfers(conn, a, after=Cursor(last.timestamp, NIL_ID))
            assert page.items == [last]

    @pytest.mark.parametrize("limit", [0, -1, PAGE_SIZE_MAX + 1, True, 1.5, "10"])
    async def test_limit_invalid(self, db: AsyncEngine, limit: Any) -> None:
        (a,) = await new_accounts(db, 1)
        async with db.begin() as conn:
            for read in (get_account_transfers, get_account_history):
                with pytest.raises(PayFlowError) as caught:
                    await read(conn, a, limit=limit)
                assert caught.value.code == "limit_invalid"
                assert caught.value.http_status == 422

    @pytest.mark.parametrize("limit", [1, PAGE_SIZE_MAX])
    async def test_limit_at_bounds(self, db: AsyncEngine, limit: int) -> None:
        (a,) = await new_accounts(db, 1)
        async with db.begin() as conn:
            assert (await get_account_transfers(conn, a, limit=limit)).items == []
            assert (await get_account_history(conn, a, limit=limit)).items == []


class TestCursor:
    def test_round_trip(self) -> None:
        cursor = Cursor(1_700_000_000_123_456_789, uuid7())
        text = cursor.encode()
        assert text == f"1700000000123456789.{cursor.id.hex}"
        assert Cursor.decode(text) == cursor

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "abc",
            "123",
            "123.",
            ".abc",
            "x." + "0" * 32,
            "12.zz",
            "1.2.3",
            "12.0",
            "-1." + "0" * 32,
            " 1." + "0" * 32,
            "1_0." + "0" * 32,
            "1." + "0" * 31 + "_",
            "1." + "A" * 32,
            "1." + "0" * 33,
            "1" * 20 + "." + "0" * 32,
        ],
    )
    def test_invalid(self, text: str) -> None:
        with pytest.raises(PayFlowError) as caught:
            Cursor.decode(text)
        assert caught.value.code == "cursor_invalid"
        assert caught.value.http_status == 422


class TestAccountHistory:
    async def test_running_balances(self, db: AsyncEngine) -> None:
        (h,) = await new_accounts(db, 1, flags=AccountFlags.HISTORY)
        s, x = await new_accounts(db, 2)
        now = time.time_ns()
        pending = Transfer(uuid7(), h, x, 20, "INR", flags=PENDING)
        steps = [
            Transfer(uuid7(), s, h, 100, "INR"),
            Transfer(uuid7(), h, x, 30, "INR"),
            pending,
            Transfer(uuid7(), pending_id=pending.id, amount=15, flags=POST),
        ]
        for n, step in enumerate(steps):
            await _ok(db, [step], now + n * 10)
        async with db.begin() as conn:
            page = await get_account_history(conn, h)
        assert page.next_cursor is None
        assert page.items == [
            BalanceSnapshot(h, steps[0].id, now, 0, 0, 0, 100),
            BalanceSnapshot(h, steps[1].id, now + 10, 0, 30, 0, 100),
            BalanceSnapshot(h, steps[2].id, now + 20, 20, 30, 0, 100),
            BalanceSnapshot(h, steps[3].id, now + 30, 0, 45, 0, 100),
        ]
        assert [snapshot.balance for snapshot in page.items] == [100, 70, 70, 55]
        assert await counters(db, [h]) == {h: (0, 45, 0, 100)}

    async def test_pagination(self, db: AsyncEngine) -> None:
        (h,) = await new_accounts(db, 1, flags=AccountFlags.HISTORY)
        (s,) = await new_accounts(db, 1)
        records = await _ok(
            db, [Transfer(uuid7(), s, h, n, "INR") for n in range(1, 6)], time.time_ns()
        )
        async with db.begin() as conn:
            first = await get_account_history(conn, h, limit=3)
            assert first.next_cursor is not None
            second = await get_account_history(conn, h, limit=3, after=first.next_cursor)
        assert second.next_cursor is None
        snapshots = first.items + second.items
        assert [snapshot.transfer_id for snapshot in snapshots] == [r.id for r in records]
        assert [snapshot.credits_posted for snapshot in snapshots] == [1, 3, 6, 10, 15]

    async def test_non_history_account_has_none(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        await _ok(db, [Transfer(uuid7(), a, b, 5, "INR")], time.time_ns())
        async with db.begin() as conn:
            page = await get_account_history(conn, a)
        assert (page.items, page.next_cursor) == ([], None)

    async def test_both_sides_of_a_transfer(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2, flags=AccountFlags.HISTORY)
        (record,) = await _ok(db, [Transfer(uuid7(), a, b, 5, "INR")], time.time_ns())
        async with db.begin() as conn:
            (debit,) = (await get_account_history(conn, a)).items
            (credit,) = (await get_account_history(conn, b)).items
        assert debit == BalanceSnapshot(a, record.id, record.timestamp, 0, 5, 0, 0)
        assert credit == BalanceSnapshot(b, record.id, record.timestamp, 0, 0, 0, 5)


class TestBalanceAt:
    @pytest.mark.parametrize("flags", [AccountFlags.NONE, AccountFlags.HISTORY])
    async def test_through_pending_posted_voided_and_expired(
        self, db: AsyncEngine, flags: AccountFlags
    ) -> None:
        a, b = await new_accounts(db, 2, flags=flags)
        (s,) = await new_accounts(db, 1)
        t = time.time_ns()
        first = Transfer(uuid7(), a, b, 300, "INR", flags=PENDING)
        second = Transfer(uuid7(), a, b, 100, "INR", flags=PENDING)
        third = Transfer(uuid7(), a, b, 50, "INR", flags=PENDING, timeout_s=1)
        await _ok(db, [Transfer(uuid7(), s, a, 1000, "INR")], t)
        await _ok(db, [first], t + 100)
        await _ok(db, [Transfer(uuid7(), pending_id=first.id, amount=200, flags=POST)], t + 200)
        await _ok(db, [second], t + 300)
        await _ok(db, [Transfer(uuid7(), pending_id=second.id, flags=VOID)], t + 400)
        await _ok(db, [third], t + 500)
        expires_at = t + 500 + SECOND
        async with db.begin() as conn:
            await expire_pending_transfers(conn, now_ns=expires_at - 1)  # older leftovers
            assert await expire_pending_transfers(conn, now_ns=expires_at) >= 1

        expected_a = {
            t - 1: (0, 0, 0, 0),
            t: (0, 0, 0, 1000),
            t + 99: (0, 0, 0, 1000),
            t + 100: (300, 0, 0, 1000),
            t + 199: (300, 0, 0, 1000),
            t + 200: (0, 200, 0, 1000),
            t + 300: (100, 200, 0, 1000),
            t + 400: (0, 200, 0, 1000),
            t + 500: (50, 200, 0, 1000),
            expires_at - 1: (50, 200, 0, 1000),
            expires_at: (0, 200, 0, 1000),
            expires_at + 10 * SECOND: (0, 200, 0, 1000),
        }
        async with db.begin() as conn:
            for at, expected in expected_a.items():
                snapshot = await get_account_balance_at(conn, a, at)
                assert snapshot is not None
                assert snapshot.account_id == a
                got = (
                    snapshot.debits_pending,
                    snapshot.debits_posted,
                    snapshot.credits_pending,
                    snapshot.credits_posted,
                )
                assert got == expected, at - t
                dp, dpo = expected[:2]
                credit_side = await get_account_balance_at(conn, b, at)
                assert credit_side is not None
                assert (credit_side.credits_pending, credit_side.credits_posted) == (dp, dpo)
        assert (await counters(db, [a]))[a] == expected_a[expires_at]

    async def test_unknown_account(self, db: AsyncEngine) -> None:
        async with db.begin() as conn:
            assert await get_account_balance_at(conn, uuid7(), time.time_ns()) is None

    @pytest.mark.parametrize("flags", [AccountFlags.NONE, AccountFlags.HISTORY])
    async def test_no_transfers_yet(self, db: AsyncEngine, flags: AccountFlags) -> None:
        (a,) = await new_accounts(db, 1, flags=flags)
        async with db.begin() as conn:
            snapshot = await get_account_balance_at(conn, a, time.time_ns())
        assert snapshot is not None
        assert (
            snapshot.debits_pending,
            snapshot.debits_posted,
            snapshot.credits_pending,
            snapshot.credits_posted,
        ) == (0, 0, 0, 0)
        assert snapshot.balance == 0

    @pytest.mark.parametrize("flags", [AccountFlags.NONE, AccountFlags.HISTORY])
    async def test_within_one_batch(self, db: AsyncEngine, flags: AccountFlags) -> None:
        a, b = await new_accounts(db, 2, flags=flags)
        t = time.time_ns()
        await _ok(db, [Transfer(uuid7(), b, a, n, "INR") for n in (1, 2, 4)], t)
        async with db.begin() as conn:
            balances = [await get_account_balance_at(conn, a, t + i) for i in range(-1, 3)]
        assert [snapshot.balance for snapshot in balances if snapshot] == [0, 1, 3, 7]
