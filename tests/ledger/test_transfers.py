"""Use case: single-phase transfers. Each bad input yields its code and writes nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import get_settings
from payflow.errors import PayFlowError
from payflow.ids import uuid7
from payflow.ledger import (
    AccountFlags,
    CloseResult,
    Transfer,
    TransferFlags,
    TransferResult,
    close_accounts,
    create_transfers,
)
from payflow.ledger.domain import NIL_ID, TIMEOUT_S_MAX
from payflow.money import AMOUNT_MAX
from tests.ledger.helpers import new_accounts, submit
from tests.ledger.support import codes, counters, fund, stored

R = TransferResult
MAX = AMOUNT_MAX
LINKED = TransferFlags.LINKED
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING
VOID = TransferFlags.VOID_PENDING

Make = Callable[[uuid.UUID, uuid.UUID], Transfer]


def _t(**fields: Any) -> Make:
    """A transfer from `a` to `b` of 10 INR with `fields` replaced."""

    def make(a: uuid.UUID, b: uuid.UUID) -> Transfer:
        base: dict[str, Any] = {
            "id": uuid7(),
            "debit_account_id": a,
            "credit_account_id": b,
            "amount": 10,
            "currency": "INR",
        }
        return Transfer(**{**base, **fields})

    return make


BAD_FIELDS: list[tuple[str, Make, R]] = [
    ("amount zero", _t(amount=0), R.AMOUNT_MUST_NOT_BE_ZERO),
    ("amount negative", _t(amount=-1), R.AMOUNT_MUST_NOT_BE_NEGATIVE),
    ("amount very negative", _t(amount=-(2**63)), R.AMOUNT_MUST_NOT_BE_NEGATIVE),
    ("amount 2^63", _t(amount=MAX + 1), R.AMOUNT_MUST_NOT_EXCEED_MAX),
    ("amount 2^64", _t(amount=2**64), R.AMOUNT_MUST_NOT_EXCEED_MAX),
    ("amount float", _t(amount=10.0), R.AMOUNT_MUST_BE_INTEGER),
    ("amount string", _t(amount="10"), R.AMOUNT_MUST_BE_INTEGER),
    ("amount True", _t(amount=True), R.AMOUNT_MUST_BE_INTEGER),
    ("amount None", _t(amount=None), R.AMOUNT_MUST_BE_INTEGER),
    ("currency None", _t(currency=None), R.CURRENCY_MUST_NOT_BE_EMPTY),
    ("currency empty", _t(currency=""), R.CURRENCY_MUST_NOT_BE_EMPTY),
    ("flags True", _t(flags=True), R.FLAGS_INVALID),
    ("currency unknown", _t(currency="XYZ"), R.CURRENCY_UNKNOWN),
    ("currency lowercase", _t(currency="inr"), R.CURRENCY_UNKNOWN),
    ("currency not a string", _t(currency=356), R.CURRENCY_UNKNOWN),
    ("currency differs from the accounts'", _t(currency="USD"), R.CURRENCY_MISMATCH),
    ("same account", lambda a, b: _t(credit_account_id=a)(a, b), R.ACCOUNTS_MUST_BE_DIFFERENT),
    ("debit unknown", _t(debit_account_id=uuid7()), R.DEBIT_ACCOUNT_NOT_FOUND),
    ("credit unknown", _t(credit_account_id=uuid7()), R.CREDIT_ACCOUNT_NOT_FOUND),
    ("debit None", _t(debit_account_id=None), R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
    ("debit nil", _t(debit_account_id=NIL_ID), R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
    ("credit None", _t(credit_account_id=None), R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
    ("credit nil", _t(credit_account_id=NIL_ID), R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
    ("debit not a uuid", _t(debit_account_id="acc"), R.DEBIT_ACCOUNT_ID_INVALID),
    ("credit not a uuid", _t(credit_account_id=7), R.CREDIT_ACCOUNT_ID_INVALID),
    ("id nil", _t(id=NIL_ID), R.ID_MUST_NOT_BE_ZERO),
    ("flags unknown bit", _t(flags=32), R.FLAGS_INVALID),
    ("flags huge", _t(flags=2**40), R.FLAGS_INVALID),
    ("flags expiry (sweeper only)", _t(flags=TransferFlags.EXPIRY), R.FLAGS_INVALID),
    ("flags negative", _t(flags=-2), R.FLAGS_INVALID),
    ("flags string", _t(flags="0"), R.FLAGS_INVALID),
    ("flags float", _t(flags=0.0), R.FLAGS_INVALID),
    ("flags None", _t(flags=None), R.FLAGS_INVALID),
    ("flags pending+post", _t(flags=PENDING | POST), R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ("flags pending+void", _t(flags=PENDING | VOID), R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ("flags post+void", _t(flags=POST | VOID), R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ("pending_id on single-phase", _t(pending_id=uuid7()), R.PENDING_ID_MUST_BE_ZERO),
    ("pending_id not a uuid", _t(pending_id="p"), R.PENDING_ID_INVALID),
    ("timeout on single-phase", _t(timeout_s=10), R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
    ("timeout negative", _t(timeout_s=-1), R.TIMEOUT_INVALID),
    ("timeout too large", _t(flags=PENDING, timeout_s=TIMEOUT_S_MAX + 1), R.TIMEOUT_INVALID),
    ("timeout float", _t(flags=PENDING, timeout_s=1.0), R.TIMEOUT_INVALID),
    ("timeout True", _t(flags=PENDING, timeout_s=True), R.TIMEOUT_INVALID),
    ("code negative", _t(code=-1), R.CODE_INVALID),
    ("code too large", _t(code=65_536), R.CODE_INVALID),
    ("code True", _t(code=True), R.CODE_INVALID),
    ("code string", _t(code="1"), R.CODE_INVALID),
]

GOOD_FIELDS: list[tuple[str, Make]] = [
    ("amount 1", _t(amount=1)),
    ("code 0", _t(code=0)),
    ("code 65535", _t(code=65_535)),
    ("pending_id nil", _t(pending_id=NIL_ID)),
    ("flags as int", _t(flags=0)),
    ("flags NONE", _t(flags=TransferFlags.NONE)),
    ("pending with the largest timeout", _t(flags=PENDING, timeout_s=TIMEOUT_S_MAX)),
]


class TestSinglePhase:
    async def test_moves_money_and_records_the_transfer(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        transfer_id = uuid7()
        now = time.time_ns()
        outcomes = await submit(db, [Transfer(transfer_id, a, b, 150, "INR", code=7)], now_ns=now)
        assert codes(outcomes) == [R.OK]
        assert await counters(db, [a, b]) == {a: (0, 150, 0, 0), b: (0, 0, 0, 150)}
        (record,) = await stored(db, [transfer_id])
        assert record == Transfer(transfer_id, a, b, 150, "INR", 7, 0, None, 0, now)
        assert outcomes[0].transfer == record

    @pytest.mark.parametrize(("case", "make"), GOOD_FIELDS, ids=[c for c, _ in GOOD_FIELDS])
    async def test_valid_fields(self, db: AsyncEngine, case: str, make: Make) -> None:
        a, b = await new_accounts(db, 2)
        transfer = make(a, b)
        assert codes(await submit(db, [transfer])) == [R.OK]
        assert [t.id for t in await stored(db, [transfer.id])] == [transfer.id]
        if transfer.flags & PENDING:
            void = Transfer(uuid7(), pending_id=transfer.id, flags=VOID)
            assert codes(await submit(db, [void])) == [R.OK]

    @pytest.mark.parametrize(
        ("case", "make", "expected"), BAD_FIELDS, ids=[c for c, _, _ in BAD_FIELDS]
    )
    async def test_bad_input_writes_nothing(
        self, db: AsyncEngine, case: str, make: Make, expected: R
    ) -> None:
        a, b = await new_accounts(db, 2)
        await fund(db, a, 1_000)
        before = await counters(db, [a, b])
        transfer = make(a, b)
        assert codes(await submit(db, [transfer])) == [expected]
        assert await counters(db, [a, b]) == before
        assert await stored(db, [transfer.id]) == []

    async def test_id_not_a_uuid(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        outcomes = await submit(db, [Transfer("txn_1", a, b, 10, "INR")])  # type: ignore[arg-type]
        assert codes(outcomes) == [R.ID_INVALID]
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}

    async def test_accounts_of_different_currencies(self, db: AsyncEngine) -> None:
        (inr,) = await new_accounts(db, 1, currency="INR")
        (usd,) = await new_accounts(db, 1, currency="USD")
        first, second = uuid7(), uuid7()
        outcomes = await submit(
            db, [Transfer(first, inr, usd, 10, "INR"), Transfer(second, inr, usd, 10, "USD")]
        )
        assert codes(outcomes) == [R.CURRENCY_MISMATCH, R.CURRENCY_MISMATCH]
        assert await counters(db, [inr, usd]) == {inr: (0, 0, 0, 0), usd: (0, 0, 0, 0)}
        assert await stored(db, [first, second]) == []

    async def test_same_currency_other_than_inr(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2, currency="JPY")
        outcomes = await submit(db, [Transfer(uuid7(), a, b, 500, "JPY")])
        assert codes(outcomes) == [R.OK]
        assert outcomes[0].transfer is not None
        assert outcomes[0].transfer.currency == "JPY"

    @pytest.mark.parametrize("side", ["debit", "credit"])
    async def test_closed_account(self, db: AsyncEngine, side: str) -> None:
        a, b = await new_accounts(db, 2)
        async with db.begin() as conn:
            closed = a if side == "debit" else b
            assert await close_accounts(conn, [closed]) == [CloseResult.OK]
        transfer = Transfer(uuid7(), a, b, 10, "INR")
        expected = R.DEBIT_ACCOUNT_CLOSED if side == "debit" else R.CREDIT_ACCOUNT_CLOSED
        assert codes(await submit(db, [transfer])) == [expected]
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}
        assert await stored(db, [transfer.id]) == []

    async def test_unknown_account_is_found_before_the_closed_check(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1)
        async with db.begin() as conn:
            await close_accounts(conn, [a])
        outcomes = await submit(db, [Transfer(uuid7(), a, uuid7(), 10, "INR")])
        assert codes(outcomes) == [R.CREDIT_ACCOUNT_NOT_FOUND]

    async def test_bad_items_do_not_block_others(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        ids = [uuid7() for _ in range(4)]
        outcomes = await submit(
            db,
            [
                Transfer(ids[0], a, b, 10, "INR"),
                Transfer(ids[1], a, b, 0, "INR"),
                Transfer(ids[2], a, uuid7(), 10, "INR"),
                Transfer(ids[3], b, a, 3, "INR"),
            ],
        )
        assert codes(outcomes) == [
            R.OK,
            R.AMOUNT_MUST_NOT_BE_ZERO,
            R.CREDIT_ACCOUNT_NOT_FOUND,
            R.OK,
        ]
        assert await counters(db, [a, b]) == {a: (0, 10, 0, 3), b: (0, 3, 0, 10)}
        assert [t.id for t in await stored(db, ids)] == [ids[0], ids[3]]
        assert [o.transfer is None for o in outcomes] == [False, True, True, False]

    async def test_empty_batch(self, db: AsyncEngine) -> None:
        assert await submit(db, []) == []

    async def test_batch_too_large(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        size_max = get_settings().ledger_batch_size_max
        batch = [Transfer(uuid7(), a, b, 1, "INR") for _ in range(size_max + 1)]
        with pytest.raises(PayFlowError) as caught:
            await submit(db, batch)
        assert caught.value.code == "batch_too_large"
        assert caught.value.http_status == 413
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}


@pytest.fixture
def batch_size_max_3(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PAYFLOW_LEDGER_BATCH_SIZE_MAX", "3")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class TestConfiguredBatchSize:
    async def test_at_the_configured_max(self, db: AsyncEngine, batch_size_max_3: None) -> None:
        a, b = await new_accounts(db, 2)
        batch = [Transfer(uuid7(), a, b, 1, "INR") for _ in range(3)]
        assert codes(await submit(db, batch)) == [R.OK] * 3

    async def test_above_the_configured_max(self, db: AsyncEngine, batch_size_max_3: None) -> None:
        a, b = await new_accounts(db, 2)
        batch = [Transfer(uuid7(), a, b, 1, "INR") for _ in range(4)]
        async with db.begin() as conn:
            with pytest.raises(PayFlowError) as caught:
                await create_transfers(conn, batch)
        assert caught.value.code == "batch_too_large"
        assert await stored(db, [t.id for t in batch]) == []


class TestIdempotency:
    @pytest.mark.parametrize("flags", [TransferFlags.NONE, PENDING])
    async def test_duplicate_in_one_batch_with_equal_fields(
        self, db: AsyncEngine, flags: int
    ) -> None:
        a, b = await new_accounts(db, 2)
        transfer = Transfer(uuid7(), a, b, 10, "INR", code=2, flags=flags)
        outcomes = await submit(db, [transfer, transfer])
        assert codes(outcomes) == [R.OK, R.EXISTS]
        assert outcomes[1].transfer == outcomes[0].transfer
        moved = (10, 0) if flags & PENDING else (0, 10)
        assert await counters(db, [a, b]) == {
            a: (*moved, 0, 0),
            b: (0, 0, *moved),
        }
        if flags & PENDING:
            void = Transfer(uuid7(), pending_id=transfer.id, flags=VOID)
            assert codes(await submit(db, [void])) == [R.OK]

    @pytest.mark.parametrize(
        ("change", "expected"),
        [
            ({"amount": 11}, R.EXISTS_WITH_DIFFERENT_AMOUNT),
            ({"debit_account_id": "c"}, R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
            ({"credit_account_id": "c"}, R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
            ({"currency": "USD"}, R.EXISTS_WITH_DIFFERENT_CURRENCY),
            ({"code": 3}, R.EXISTS_WITH_DIFFERENT_CODE),
            ({"code": 0}, R.EXISTS_WITH_DIFFERENT_CODE),
            ({"flags": PENDING}, R.EXISTS_WITH_DIFFERENT_FLAGS),
            ({"flags": PENDING, "timeout_s": 5}, R.EXISTS_WITH_DIFFERENT_FLAGS),
        ],
    )
    @pytest.mark.parametrize("where", ["same batch", "later batch"])
    async def test_duplicate_with_a_different_field(
        self, db: AsyncEngine, change: dict[str, Any], expected: R, where: str
    ) -> None:
        a, b, c = await new_accounts(db, 3)
        original = Transfer(uuid7(), a, b, 10, "INR", code=2)
        fields: dict[str, Any] = {k: (c if v == "c" else v) for k, v in change.items()}
        retry = original._replace(**fields)
        if where == "same batch":
            outcomes = await submit(db, [original, retry])
        else:
            outcomes = [*await submit(db, [original]), *await submit(db, [retry])]
        assert codes(outcomes) == [R.OK, expected]
        assert outcomes[1].transfer == outcomes[0].transfer
        assert await counters(db, [a, b, c]) == {
            a: (0, 10, 0, 0),
            b: (0, 0, 0, 10),
            c: (0, 0, 0, 0),
        }

    async def test_different_timeout(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        original = Transfer(uuid7(), a, b, 10, "INR", flags=PENDING, timeout_s=60)
        outcomes = await submit(db, [original, original._replace(timeout_s=61)])
        assert codes(outcomes) == [R.OK, R.EXISTS_WITH_DIFFERENT_TIMEOUT]
        void = Transfer(uuid7(), pending_id=original.id, flags=VOID)
        assert codes(await submit(db, [void])) == [R.OK]

    async def test_retry_in_a_later_batch(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        transfer = Transfer(uuid7(), a, b, 10, "INR")
        (first,) = await submit(db, [transfer])
        (second,) = await submit(db, [transfer])
        (third,) = await submit(db, [transfer._replace(code=0)])
        assert (first.code, second.code, third.code) == (
            R.OK,
            R.EXISTS,
            R.EXISTS,
        )
        assert second.transfer == first.transfer
        assert await counters(db, [a, b]) == {a: (0, 10, 0, 0), b: (0, 0, 0, 10)}

    async def test_failed_transfer_id_can_be_used_again(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        transfer_id = uuid7()
        (failed,) = await submit(db, [Transfer(transfer_id, a, b, 0, "INR")])
        (ok,) = await submit(db, [Transfer(transfer_id, a, b, 5, "INR")])
        assert (failed.code, ok.code) == (R.AMOUNT_MUST_NOT_BE_ZERO, R.OK)

    async def test_retry_of_an_existing_id_is_checked_for_fields_first(
        self, db: AsyncEngine
    ) -> None:
        a, b = await new_accounts(db, 2)
        transfer = Transfer(uuid7(), a, b, 10, "INR")
        await submit(db, [transfer])
        (retry,) = await submit(db, [transfer._replace(amount=0)])
        assert retry.code == R.AMOUNT_MUST_NOT_BE_ZERO


class TestBalanceLimits:
    async def test_debits_must_not_exceed_credits_boundary(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        (b,) = await new_accounts(db, 1)
        await fund(db, a, 100)
        over, exact, more = uuid7(), uuid7(), uuid7()
        assert codes(await submit(db, [Transfer(over, a, b, 101, "INR")])) == [R.EXCEEDS_CREDITS]
        assert codes(await submit(db, [Transfer(exact, a, b, 100, "INR")])) == [R.OK]
        assert codes(await submit(db, [Transfer(more, a, b, 1, "INR")])) == [R.EXCEEDS_CREDITS]
        assert (await counters(db, [a]))[a] == (0, 100, 0, 100)
        assert [t.id for t in await stored(db, [over, exact, more])] == [exact]

    async def test_debits_must_not_exceed_credits_with_no_credits(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        (b,) = await new_accounts(db, 1)
        assert codes(await submit(db, [Transfer(uuid7(), a, b, 1, "INR")])) == [R.EXCEEDS_CREDITS]
        # Crediting it is not limited.
        assert codes(await submit(db, [Transfer(uuid7(), b, a, 1, "INR")])) == [R.OK]

    async def test_pending_debits_count_against_the_limit(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        (b,) = await new_accounts(db, 1)
        await fund(db, a, 100)
        hold = Transfer(uuid7(), a, b, 60, "INR", flags=PENDING)
        assert codes(await submit(db, [hold])) == [R.OK]
        outcomes = await submit(
            db, [Transfer(uuid7(), a, b, 41, "INR"), Transfer(uuid7(), a, b, 40, "INR")]
        )
        assert codes(outcomes) == [R.EXCEEDS_CREDITS, R.OK]
        assert (await counters(db, [a]))[a] == (60, 40, 0, 100)
        void = Transfer(uuid7(), pending_id=hold.id, flags=VOID)
        assert codes(await submit(db, [void])) == [R.OK]

    async def test_credits_must_not_exceed_debits_boundary(self, db: AsyncEngine) -> None:
        (c,) = await new_accounts(db, 1, flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
        x, y = await new_accounts(db, 2)
        assert codes(await submit(db, [Transfer(uuid7(), c, x, 100, "INR")])) == [R.OK]
        over, exact, more = uuid7(), uuid7(), uuid7()
        assert codes(await submit(db, [Transfer(over, y, c, 101, "INR")])) == [R.EXCEEDS_DEBITS]
        assert codes(await submit(db, [Transfer(exact, y, c, 100, "INR")])) == [R.OK]
        assert codes(await submit(db, [Transfer(more, y, c, 1, "INR")])) == [R.EXCEEDS_DEBITS]
        assert (await counters(db, [c]))[c] == (0, 100, 0, 100)
        assert [t.id for t in await stored(db, [over, exact, more])] == [exact]

    async def test_pending_credits_count_against_the_limit(self, db: AsyncEngine) -> None:
        (c,) = await new_accounts(db, 1, flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
        x, y = await new_accounts(db, 2)
        assert codes(await submit(db, [Transfer(uuid7(), c, x, 50, "INR")])) == [R.OK]
        hold = Transfer(uuid7(), y, c, 50, "INR", flags=PENDING)
        assert codes(await submit(db, [hold])) == [R.OK]
        assert codes(await submit(db, [Transfer(uuid7(), y, c, 1, "INR")])) == [R.EXCEEDS_DEBITS]
        void = Transfer(uuid7(), pending_id=hold.id, flags=VOID)
        assert codes(await submit(db, [void])) == [R.OK]
        assert codes(await submit(db, [Transfer(uuid7(), y, c, 1, "INR")])) == [R.OK]

    async def test_limit_applies_within_one_batch(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        (b,) = await new_accounts(db, 1)
        await fund(db, a, 10)
        outcomes = await submit(db, [Transfer(uuid7(), a, b, 6, "INR") for _ in range(3)])
        assert codes(outcomes) == [R.OK, R.EXCEEDS_CREDITS, R.EXCEEDS_CREDITS]
        # Money credited earlier in the same batch can be spent later in it.
        outcomes = await submit(
            db, [Transfer(uuid7(), b, a, 2, "INR"), Transfer(uuid7(), a, b, 6, "INR")]
        )
        assert codes(outcomes) == [R.OK, R.OK]


class TestOverflow:
    """Counters are signed 64-bit: any sum that would pass 2^63 − 1 is refused.

    Each test uses a currency of its own: the audit sums each currency's counters over all
    accounts, and SQLite's sum() fails past 2^63 − 1 (see the report of these tests).
    """

    async def test_debits_posted(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3, currency="XAF")
        assert codes(await submit(db, [Transfer(uuid7(), a, b, MAX - 5, "XAF")])) == [R.OK]
        outcomes = await submit(
            db, [Transfer(uuid7(), a, c, 6, "XAF"), Transfer(uuid7(), a, c, 5, "XAF")]
        )
        assert codes(outcomes) == [R.OVERFLOWS_DEBITS_POSTED, R.OK]
        assert (await counters(db, [a]))[a] == (0, MAX, 0, 0)

    async def test_credits_posted(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3, currency="XOF")
        assert codes(await submit(db, [Transfer(uuid7(), a, b, MAX - 5, "XOF")])) == [R.OK]
        outcomes = await submit(
            db, [Transfer(uuid7(), c, b, 6, "XOF"), Transfer(uuid7(), c, b, 5, "XOF")]
        )
        assert codes(outcomes) == [R.OVERFLOWS_CREDITS_POSTED, R.OK]
        assert (await counters(db, [b]))[b] == (0, 0, 0, MAX)

    async def test_debits_pending(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3, currency="XPF")
        first = Transfer(uuid7(), a, b, MAX - 5, "XPF", flags=PENDING)
        assert codes(await submit(db, [first])) == [R.OK]
        over = Transfer(uuid7(), a, c, 6, "XPF", flags=PENDING)
        exact = Transfer(uuid7(), a, c, 5, "XPF", flags=PENDING)
        assert codes(await submit(db, [over, exact])) == [R.OVERFLOWS_DEBITS_PENDING, R.OK]
        assert (await counters(db, [a]))[a] == (MAX, 0, 0, 0)
        await _void(db, first.id, exact.id)

    async def test_credits_pending(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3, currency="VUV")
        first = Transfer(uuid7(), a, b, MAX - 5, "VUV", flags=PENDING)
        assert codes(await submit(db, [first])) == [R.OK]
        over = Transfer(uuid7(), c, b, 6, "VUV", flags=PENDING)
        exact = Transfer(uuid7(), c, b, 5, "VUV", flags=PENDING)
        assert codes(await submit(db, [over, exact])) == [R.OVERFLOWS_CREDITS_PENDING, R.OK]
        assert (await counters(db, [b]))[b] == (0, 0, MAX, 0)
        await _void(db, first.id, exact.id)

    async def test_debits_pending_plus_posted(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3, currency="UGX")
        assert codes(await submit(db, [Transfer(uuid7(), a, b, MAX - 5, "UGX")])) == [R.OK]
        over = Transfer(uuid7(), a, c, 6, "UGX", flags=PENDING)
        exact = Transfer(uuid7(), a, c, 5, "UGX", flags=PENDING)
        assert codes(await submit(db, [over, exact])) == [R.OVERFLOWS_DEBITS, R.OK]
        assert (await counters(db, [a]))[a] == (5, MAX - 5, 0, 0)
        await _void(db, exact.id)

    async def test_credits_pending_plus_posted(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3, currency="RWF")
        assert codes(await submit(db, [Transfer(uuid7(), a, b, MAX - 5, "RWF")])) == [R.OK]
        over = Transfer(uuid7(), c, b, 6, "RWF", flags=PENDING)
        exact = Transfer(uuid7(), c, b, 5, "RWF", flags=PENDING)
        assert codes(await submit(db, [over, exact])) == [R.OVERFLOWS_CREDITS, R.OK]
        assert (await counters(db, [b]))[b] == (0, 0, 5, MAX - 5)
        await _void(db, exact.id)

    async def test_posted_plus_pending_from_a_single_phase_transfer(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3, currency="PYG")
        hold = Transfer(uuid7(), a, b, MAX - 5, "PYG", flags=PENDING)
        assert codes(await submit(db, [hold])) == [R.OK]
        outcomes = await submit(
            db, [Transfer(uuid7(), a, c, 6, "PYG"), Transfer(uuid7(), a, c, 5, "PYG")]
        )
        assert codes(outcomes) == [R.OVERFLOWS_DEBITS, R.OK]
        await _void(db, hold.id)

    async def test_timeout(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2, currency="KMF")
        now = MAX - 10 * 1_000_000_000
        over = Transfer(uuid7(), a, b, 1, "KMF", flags=PENDING, timeout_s=11)
        exact = Transfer(uuid7(), a, b, 1, "KMF", flags=PENDING, timeout_s=10)
        # The second transfer of the batch is 1 ns later: give it 1 ns less of timeout room.
        outcomes = await submit(db, [over, exact], now_ns=now - 1)
        assert codes(outcomes) == [R.OVERFLOWS_TIMEOUT, R.OK]
        assert await stored(db, [over.id]) == []
        (record,) = await stored(db, [exact.id])
        assert record.expires_at == MAX
        # An explicit clock: with the default one, this account's timestamp near 2^63 would
        # become the process's "latest batch" and push every later batch there.
        await _void(db, exact.id, now_ns=now)


async def _void(engine: AsyncEngine, *pending_ids: uuid.UUID, now_ns: int | None = None) -> None:
    voids = [Transfer(uuid7(), pending_id=p, flags=VOID) for p in pending_ids]
    assert codes(await submit(engine, voids, now_ns=now_ns)) == [R.OK] * len(voids)


class TestTimestamps:
    async def test_batch_timestamps_are_consecutive(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        now = time.time_ns()
        outcomes = await submit(
            db, [Transfer(uuid7(), a, b, 1, "INR") for _ in range(3)], now_ns=now
        )
        assert [o.transfer.timestamp for o in outcomes if o.transfer] == [now, now + 1, now + 2]

    async def test_failed_items_use_up_their_timestamp(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        now = time.time_ns()
        outcomes = await submit(
            db,
            [Transfer(uuid7(), a, b, 0, "INR"), Transfer(uuid7(), a, b, 1, "INR")],
            now_ns=now,
        )
        assert outcomes[1].transfer is not None
        assert outcomes[1].transfer.timestamp == now + 1

    async def test_a_clock_behind_the_accounts_is_moved_forward(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        now = time.time_ns()
        first = await submit(db, [Transfer(uuid7(), a, b, 1, "INR")], now_ns=now)
        second = await submit(db, [Transfer(uuid7(), b, a, 1, "INR")], now_ns=now - 10**9)
        assert first[0].transfer is not None and second[0].transfer is not None
        assert second[0].transfer.timestamp > first[0].transfer.timestamp

    async def test_default_clock_is_increasing(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        c, d = await new_accounts(db, 2)
        before = time.time_ns()
        first = await submit(db, [Transfer(uuid7(), a, b, 1, "INR")])
        second = await submit(db, [Transfer(uuid7(), c, d, 1, "INR")])
        assert first[0].transfer is not None and second[0].transfer is not None
        assert before <= first[0].transfer.timestamp < second[0].transfer.timestamp
