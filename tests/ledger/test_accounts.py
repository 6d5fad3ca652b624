"""Use cases: create accounts, close accounts. Every rule with valid and invalid data."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import get_settings
from payflow.errors import PayFlowError
from payflow.ids import uuid7
from payflow.ledger import (
    Account,
    AccountFlags,
    AccountResult,
    CloseResult,
    Transfer,
    TransferFlags,
    TransferResult,
    close_accounts,
    create_accounts,
    lookup_accounts,
    models,
)
from payflow.ledger.domain import METADATA_BYTES_MAX, NIL_ID
from tests.ledger.helpers import balances, new_accounts, submit
from tests.ledger.support import codes, counters, fund, stored

R = AccountResult
DMNEC = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CMNED = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
HISTORY = AccountFlags.HISTORY


async def _create(engine: AsyncEngine, accounts: list[Account], **kw: Any) -> list[R]:
    async with engine.begin() as conn:
        return await create_accounts(conn, accounts, **kw)


async def _close(engine: AsyncEngine, ids: list[uuid.UUID]) -> list[CloseResult]:
    async with engine.begin() as conn:
        return await close_accounts(conn, ids)


async def _lookup(engine: AsyncEngine, ids: list[uuid.UUID]) -> list[Account]:
    async with engine.begin() as conn:
        return await lookup_accounts(conn, ids)


def _metadata_of_size(size: int) -> dict[str, str]:
    """A metadata object whose JSON is exactly `size` bytes."""
    overhead = len(json.dumps({"k": ""}).encode())
    return {"k": "a" * (size - overhead)}


class TestCreateAccounts:
    @pytest.mark.parametrize(
        "flags", [AccountFlags.NONE, DMNEC, CMNED, HISTORY, DMNEC | HISTORY, CMNED | HISTORY, 0, 5]
    )
    async def test_valid_flags(self, db: AsyncEngine, flags: Any) -> None:
        account_id = uuid7()
        assert await _create(db, [Account(account_id, "INR", flags=flags)]) == [R.OK]
        (account,) = await _lookup(db, [account_id])
        assert account.flags == flags

    async def test_stored_fields(self, db: AsyncEngine) -> None:
        ids = [uuid7(), uuid7()]
        metadata = {"owner": "merchant-7", "tags": ["a", "b"], "limit": 10}
        results = await _create(
            db,
            [
                Account(ids[0], "JPY", code=0, flags=HISTORY, metadata=metadata),
                Account(ids[1], "KWD", code=65_535),
            ],
            now_ns=1_000,
        )
        assert results == [R.OK, R.OK]
        first, second = await _lookup(db, ids)
        assert (first.currency, first.code, first.flags, first.metadata) == (
            "JPY",
            0,
            HISTORY,
            metadata,
        )
        assert (second.currency, second.code, second.flags, second.metadata) == (
            "KWD",
            65_535,
            AccountFlags.NONE,
            None,
        )
        assert (first.timestamp, second.timestamp) == (1_000, 1_001)
        for account in (first, second):
            assert (
                account.debits_pending,
                account.debits_posted,
                account.credits_pending,
                account.credits_posted,
            ) == (0, 0, 0, 0)

    async def test_empty_batch(self, db: AsyncEngine) -> None:
        assert await _create(db, []) == []

    async def test_retry_with_equal_fields_is_exists(self, db: AsyncEngine) -> None:
        account = Account(uuid7(), "INR", code=3, flags=HISTORY, metadata={"a": 1})
        assert await _create(db, [account], now_ns=5) == [R.OK]
        assert await _create(db, [account], now_ns=99) == [R.EXISTS]
        (stored_account,) = await _lookup(db, [account.id])
        assert stored_account.timestamp == 5

    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            ({"flags": DMNEC}, R.EXISTS_WITH_DIFFERENT_FLAGS),
            ({"flags": AccountFlags.NONE}, R.EXISTS_WITH_DIFFERENT_FLAGS),
            ({"code": 4}, R.EXISTS_WITH_DIFFERENT_CODE),
            ({"currency": "USD"}, R.EXISTS_WITH_DIFFERENT_CURRENCY),
            ({"metadata": {"a": 2}}, R.EXISTS_WITH_DIFFERENT_METADATA),
            ({"metadata": None}, R.EXISTS_WITH_DIFFERENT_METADATA),
        ],
    )
    async def test_retry_with_a_different_field(
        self, db: AsyncEngine, change: dict[str, Any], expected: R
    ) -> None:
        original = Account(uuid7(), "INR", code=3, flags=HISTORY, metadata={"a": 1})
        assert await _create(db, [original]) == [R.OK]
        changed = Account(**{**_fields(original), **change})
        assert await _create(db, [changed]) == [expected]
        (account,) = await _lookup(db, [original.id])
        assert _fields(account) == _fields(original)

    @pytest.mark.parametrize("bad_id", ["not-a-uuid", None, 42, "01a2022e1f4574bcb9820bfe800219b3"])
    async def test_id_invalid(self, db: AsyncEngine, bad_id: Any) -> None:
        valid = Account(uuid7(), "INR")
        results = await _create(db, [Account(bad_id, "INR"), valid])
        assert results == [R.ID_INVALID, R.OK]
        assert [a.id for a in await _lookup(db, [valid.id])] == [valid.id]

    async def test_id_nil(self, db: AsyncEngine) -> None:
        assert await _create(db, [Account(NIL_ID, "INR")]) == [R.ID_MUST_NOT_BE_ZERO]
        assert await _lookup(db, [NIL_ID]) == []

    @pytest.mark.parametrize(
        "flags",
        [
            AccountFlags.CLOSED,
            HISTORY | AccountFlags.CLOSED,
            16,
            32,
            2**31,
            2**40,
            -1,
            -16,
            True,
            False,
            "1",
            1.0,
            None,
        ],
    )
    async def test_flags_invalid(self, db: AsyncEngine, flags: Any) -> None:
        account_id = uuid7()
        assert await _create(db, [Account(account_id, "INR", flags=flags)]) == [R.FLAGS_INVALID]
        assert await _lookup(db, [account_id]) == []

    @pytest.mark.parametrize("flags", [DMNEC | CMNED, DMNEC | CMNED | HISTORY])
    async def test_flags_mutually_exclusive(self, db: AsyncEngine, flags: AccountFlags) -> None:
        account_id = uuid7()
        results = await _create(db, [Account(account_id, "INR", flags=flags)])
        assert results == [R.FLAGS_ARE_MUTUALLY_EXCLUSIVE]
        assert await _lookup(db, [account_id]) == []

    @pytest.mark.parametrize("currency", ["XYZ", "inr", "", "INRR", None, 356])
    async def test_currency_unknown(self, db: AsyncEngine, currency: Any) -> None:
        account_id = uuid7()
        assert await _create(db, [Account(account_id, currency)]) == [R.CURRENCY_UNKNOWN]
        assert await _lookup(db, [account_id]) == []

    @pytest.mark.parametrize("code", [0, 1, 65_535])
    async def test_code_in_range(self, db: AsyncEngine, code: int) -> None:
        account_id = uuid7()
        assert await _create(db, [Account(account_id, "INR", code=code)]) == [R.OK]
        assert [a.code for a in await _lookup(db, [account_id])] == [code]

    @pytest.mark.parametrize("code", [-1, 65_536, 2**40, True, 1.0, "1", None])
    async def test_code_invalid(self, db: AsyncEngine, code: Any) -> None:
        account_id = uuid7()
        assert await _create(db, [Account(account_id, "INR", code=code)]) == [R.CODE_INVALID]
        assert await _lookup(db, [account_id]) == []

    @pytest.mark.parametrize(
        "metadata", [{}, {"a": None}, {"nested": {"x": [1, 2.5, True]}}, "max"]
    )
    async def test_metadata_valid(self, db: AsyncEngine, metadata: Any) -> None:
        if metadata == "max":
            metadata = _metadata_of_size(METADATA_BYTES_MAX)
        account_id = uuid7()
        assert await _create(db, [Account(account_id, "INR", metadata=metadata)]) == [R.OK]
        assert [a.metadata for a in await _lookup(db, [account_id])] == [metadata]

    @pytest.mark.parametrize(
        "metadata",
        [
            ["a"],
            "text",
            1,
            {"x": float("nan")},
            {"x": float("inf")},
            {"x": object()},
            {("a", "b"): 1},
            "too-large",
        ],
    )
    async def test_metadata_invalid(self, db: AsyncEngine, metadata: Any) -> None:
        if metadata == "too-large":
            metadata = _metadata_of_size(METADATA_BYTES_MAX + 1)
        account_id = uuid7()
        results = await _create(db, [Account(account_id, "INR", metadata=metadata)])
        assert results == [R.METADATA_INVALID]
        assert await _lookup(db, [account_id]) == []

    async def test_metadata_retry_matches_in_the_same_batch_and_later(
        self, db: AsyncEngine
    ) -> None:
        """JSON turns int keys into strings and tuples into lists: a retry must still match."""
        account_id = uuid7()
        metadata = {1: ("a", "b")}
        same_batch = await _create(
            db,
            [Account(account_id, "INR", metadata=metadata)] * 2,  # type: ignore[dict-item]
        )
        later = await _create(db, [Account(account_id, "INR", metadata=metadata)])  # type: ignore[dict-item]
        assert same_batch == [R.OK, R.EXISTS]
        assert later == [R.EXISTS]
        assert [a.metadata for a in await _lookup(db, [account_id])] == [{"1": ["a", "b"]}]

    @pytest.mark.parametrize(
        "counter", ["debits_pending", "debits_posted", "credits_pending", "credits_posted"]
    )
    async def test_counters_cannot_be_set_by_the_client(
        self, db: AsyncEngine, counter: str
    ) -> None:
        account_id = uuid7()
        account = Account(account_id, "INR", **{counter: 5})  # type: ignore[arg-type]
        assert await _create(db, [account]) == [R.FLAGS_INVALID]
        assert await _lookup(db, [account_id]) == []

    async def test_duplicates_in_one_batch(self, db: AsyncEngine) -> None:
        same, different = uuid7(), uuid7()
        results = await _create(
            db,
            [
                Account(same, "INR", code=1),
                Account(same, "INR", code=1),
                Account(different, "INR", code=1),
                Account(different, "INR", code=2),
                Account(different, "USD", code=1),
            ],
        )
        assert results == [
            R.OK,
            R.EXISTS,
            R.OK,
            R.EXISTS_WITH_DIFFERENT_CODE,
            R.EXISTS_WITH_DIFFERENT_CURRENCY,
        ]
        stored_accounts = await _lookup(db, [same, different])
        assert [(a.currency, a.code) for a in stored_accounts] == [("INR", 1), ("INR", 1)]

    async def test_invalid_items_do_not_block_valid_ones(self, db: AsyncEngine) -> None:
        ids = [uuid7() for _ in range(3)]
        results = await _create(
            db, [Account(ids[0], "INR"), Account(ids[1], "XYZ"), Account(ids[2], "INR")]
        )
        assert results == [R.OK, R.CURRENCY_UNKNOWN, R.OK]
        assert [a.id for a in await _lookup(db, ids)] == [ids[0], ids[2]]

    async def test_batch_too_large(self, db: AsyncEngine) -> None:
        size_max = get_settings().ledger_batch_size_max
        accounts = [Account(uuid7(), "INR") for _ in range(size_max + 1)]
        with pytest.raises(PayFlowError) as caught:
            await _create(db, accounts)
        assert caught.value.code == "batch_too_large"
        assert await _lookup(db, [accounts[0].id]) == []


def _fields(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "currency": account.currency,
        "code": account.code,
        "flags": int(account.flags),
        "metadata": account.metadata,
    }


class TestCloseAccounts:
    async def test_close(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2, flags=HISTORY)
        assert await _close(db, [a]) == [CloseResult.OK]
        accounts = await balances(db, [a, b])
        assert accounts[a].flags == HISTORY | AccountFlags.CLOSED
        assert accounts[b].flags == HISTORY

    async def test_close_keeps_the_balance(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1)
        source = await fund(db, a, 250)
        assert await _close(db, [a]) == [CloseResult.OK]
        assert (await counters(db, [a, source])) == {
            a: (0, 0, 0, 250),
            source: (0, 250, 0, 0),
        }

    async def test_not_found(self, db: AsyncEngine) -> None:
        assert await _close(db, [uuid7()]) == [CloseResult.ACCOUNT_NOT_FOUND]

    async def test_retrying_the_creation_of_a_closed_account_is_exists(
        self, db: AsyncEngine
    ) -> None:
        (a,) = await new_accounts(db, 1, flags=HISTORY)
        assert await _close(db, [a]) == [CloseResult.OK]
        assert await _create(db, [Account(a, "INR", flags=HISTORY)]) == [R.EXISTS]
        assert await _create(db, [Account(a, "INR")]) == [R.EXISTS_WITH_DIFFERENT_FLAGS]

    async def test_already_closed(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1)
        assert await _close(db, [a]) == [CloseResult.OK]
        assert await _close(db, [a]) == [CloseResult.ACCOUNT_ALREADY_CLOSED]

    async def test_duplicate_in_one_call(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1)
        assert await _close(db, [a, a]) == [
            CloseResult.OK,
            CloseResult.ACCOUNT_ALREADY_CLOSED,
        ]

    async def test_mixed_results_in_order(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3)
        assert await _close(db, [c]) == [CloseResult.OK]
        missing = uuid7()
        assert await _close(db, [b, missing, c, a]) == [
            CloseResult.OK,
            CloseResult.ACCOUNT_NOT_FOUND,
            CloseResult.ACCOUNT_ALREADY_CLOSED,
            CloseResult.OK,
        ]

    async def test_has_pending_transfers(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending_id = uuid7()
        outcomes = await submit(
            db, [Transfer(pending_id, a, b, 40, "INR", flags=TransferFlags.PENDING)]
        )
        assert codes(outcomes) == [TransferResult.OK]
        # Both sides hold the pending amount: neither may close.
        assert await _close(db, [a, b]) == [CloseResult.ACCOUNT_HAS_PENDING_TRANSFERS] * 2
        assert not (await balances(db, [a]))[a].flags & AccountFlags.CLOSED
        void = Transfer(uuid7(), pending_id=pending_id, flags=TransferFlags.VOID_PENDING)
        assert codes(await submit(db, [void])) == [TransferResult.OK]
        assert await _close(db, [a, b]) == [CloseResult.OK, CloseResult.OK]

    async def test_batch_too_large(self, db: AsyncEngine) -> None:
        size_max = get_settings().ledger_batch_size_max
        with pytest.raises(PayFlowError) as caught:
            await _close(db, [uuid7() for _ in range(size_max + 1)])
        assert caught.value.code == "batch_too_large"

    async def test_closed_account_cannot_be_debited(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        await fund(db, a, 100)
        assert await _close(db, [a]) == [CloseResult.OK]
        before = await counters(db, [a, b])
        single, pending = uuid7(), uuid7()
        outcomes = await submit(
            db,
            [
                Transfer(single, a, b, 10, "INR"),
                Transfer(pending, a, b, 10, "INR", flags=TransferFlags.PENDING),
            ],
        )
        assert codes(outcomes) == [TransferResult.DEBIT_ACCOUNT_CLOSED] * 2
        assert await counters(db, [a, b]) == before
        assert await stored(db, [single, pending]) == []

    async def test_closed_account_cannot_be_credited(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        assert await _close(db, [b]) == [CloseResult.OK]
        single, pending = uuid7(), uuid7()
        outcomes = await submit(
            db,
            [
                Transfer(single, a, b, 10, "INR"),
                Transfer(pending, a, b, 10, "INR", flags=TransferFlags.PENDING),
            ],
        )
        assert codes(outcomes) == [TransferResult.CREDIT_ACCOUNT_CLOSED] * 2
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}
        assert await stored(db, [single, pending]) == []

    async def test_open_accounts_still_transfer_after_another_closes(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3)
        assert await _close(db, [c]) == [CloseResult.OK]
        outcomes = await submit(db, [Transfer(uuid7(), a, b, 10, "INR")])
        assert codes(outcomes) == [TransferResult.OK]

    @pytest.mark.parametrize("closed_side", ["debit", "credit"])
    async def test_hold_on_an_account_closed_behind_the_ledgers_back(
        self, db: AsyncEngine, closed_side: str
    ) -> None:
        """`close_accounts` refuses accounts with holds, so this state is reachable only by
        writing the flag directly: posting into a closed account is refused, voiding (which
        only releases the hold) is allowed."""
        a, b = await new_accounts(db, 2)
        pending_id = uuid7()
        pending = Transfer(pending_id, a, b, 30, "INR", flags=TransferFlags.PENDING)
        assert codes(await submit(db, [pending])) == [TransferResult.OK]
        closed = a if closed_side == "debit" else b
        table = models.accounts
        async with db.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.id == closed)
                .values(flags=table.c.flags.op("|")(int(AccountFlags.CLOSED)))
            )
        post = Transfer(uuid7(), pending_id=pending_id, flags=TransferFlags.POST_PENDING)
        expected = (
            TransferResult.DEBIT_ACCOUNT_CLOSED
            if closed_side == "debit"
            else TransferResult.CREDIT_ACCOUNT_CLOSED
        )
        assert codes(await submit(db, [post])) == [expected]
        assert await counters(db, [a, b]) == {a: (30, 0, 0, 0), b: (0, 0, 30, 0)}
        void = Transfer(uuid7(), pending_id=pending_id, flags=TransferFlags.VOID_PENDING)
        assert codes(await submit(db, [void])) == [TransferResult.OK]
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}
