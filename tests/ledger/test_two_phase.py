"""Use case: two-phase transfers — pending holds, post, void, expiry."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.ids import uuid7
from payflow.ledger import (
    AccountFlags,
    PendingStatus,
    Transfer,
    TransferFlags,
    TransferResult,
    create_transfers,
    expire_pending_transfers,
    get_pending_status,
)
from payflow.ledger.domain import NIL_ID, expiry_transfer_id
from tests.ledger.helpers import new_accounts, submit
from tests.ledger.support import codes, counters, expiry_rows, fund, stored

R = TransferResult
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING
VOID = TransferFlags.VOID_PENDING
EXPIRY = TransferFlags.EXPIRY
LINKED = TransferFlags.LINKED
SECOND = 1_000_000_000


async def _hold(
    engine: AsyncEngine,
    amount: int = 100,
    *,
    timeout_s: int = 0,
    code: int = 5,
    now_ns: int | None = None,
) -> tuple[uuid.UUID, uuid.UUID, Transfer]:
    """Two fresh accounts and a pending transfer of `amount` between them."""
    a, b = await new_accounts(engine, 2)
    pending = Transfer(uuid7(), a, b, amount, "INR", code=code, flags=PENDING, timeout_s=timeout_s)
    (outcome,) = await submit(engine, [pending], now_ns=now_ns)
    assert outcome.code == R.OK and outcome.transfer is not None
    return a, b, outcome.transfer


def _post(pending_id: uuid.UUID, **fields: Any) -> Transfer:
    return Transfer(uuid7(), pending_id=pending_id, flags=POST, **fields)


def _void(pending_id: uuid.UUID, **fields: Any) -> Transfer:
    return Transfer(uuid7(), pending_id=pending_id, flags=VOID, **fields)


async def _status(engine: AsyncEngine, transfer_id: uuid.UUID) -> PendingStatus | None:
    async with engine.begin() as conn:
        return await get_pending_status(conn, transfer_id)


async def _sweep(engine: AsyncEngine, now_ns: int, limit: int | None = None) -> int:
    async with engine.begin() as conn:
        return await expire_pending_transfers(conn, now_ns=now_ns, limit=limit)


class TestPending:
    async def test_reserves_without_posting(self, db: AsyncEngine) -> None:
        a, b, pending = await _hold(db, 100)
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}
        assert pending.flags == PENDING
        assert pending.expires_at is None
        assert await _status(db, pending.id) == PendingStatus.PENDING
        assert await expiry_rows(db, [pending.id]) == {}
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]

    async def test_timeout_queues_an_expiry(self, db: AsyncEngine) -> None:
        _, _, pending = await _hold(db, timeout_s=30)
        assert pending.expires_at == pending.timestamp + 30 * SECOND
        assert await expiry_rows(db, [pending.id]) == {pending.id: pending.expires_at}
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]
        assert await expiry_rows(db, [pending.id]) == {}

    async def test_pending_counts_against_the_balance_limit(self, db: AsyncEngine) -> None:
        (a,) = await new_accounts(db, 1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        (b,) = await new_accounts(db, 1)
        await fund(db, a, 100)
        first = Transfer(uuid7(), a, b, 100, "INR", flags=PENDING)
        second = Transfer(uuid7(), a, b, 1, "INR", flags=PENDING)
        assert codes(await submit(db, [first, second])) == [R.OK, R.EXCEEDS_CREDITS]
        # Posting 30 of the 100 releases the other 70.
        assert codes(await submit(db, [_post(first.id, amount=30)])) == [R.OK]
        third = Transfer(uuid7(), a, b, 70, "INR", flags=PENDING)
        fourth = Transfer(uuid7(), a, b, 1, "INR", flags=PENDING)
        assert codes(await submit(db, [third, fourth])) == [R.OK, R.EXCEEDS_CREDITS]
        assert codes(await submit(db, [_void(third.id)])) == [R.OK]


class TestPost:
    async def test_full_amount_when_none(self, db: AsyncEngine) -> None:
        a, b, pending = await _hold(db, 100, code=5)
        post = _post(pending.id)
        (outcome,) = await submit(db, [post])
        assert outcome.code == R.OK
        assert await counters(db, [a, b]) == {a: (0, 100, 0, 0), b: (0, 0, 0, 100)}
        (record,) = await stored(db, [post.id])
        assert record == outcome.transfer
        assert (record.debit_account_id, record.credit_account_id) == (a, b)
        assert (record.amount, record.currency, record.code) == (100, "INR", 5)
        assert (record.flags, record.pending_id, record.timeout_s) == (POST, pending.id, 0)
        assert await _status(db, pending.id) == PendingStatus.POSTED

    async def test_full_amount_given(self, db: AsyncEngine) -> None:
        a, b, pending = await _hold(db, 100)
        assert codes(await submit(db, [_post(pending.id, amount=100)])) == [R.OK]
        assert await counters(db, [a, b]) == {a: (0, 100, 0, 0), b: (0, 0, 0, 100)}

    @pytest.mark.parametrize("amount", [1, 60, 99])
    async def test_partial_releases_the_remainder(self, db: AsyncEngine, amount: int) -> None:
        a, b, pending = await _hold(db, 100)
        post = _post(pending.id, amount=amount)
        assert codes(await submit(db, [post])) == [R.OK]
        assert await counters(db, [a, b]) == {a: (0, amount, 0, 0), b: (0, 0, 0, amount)}
        (record,) = await stored(db, [post.id])
        assert record.amount == amount
        assert await _status(db, pending.id) == PendingStatus.POSTED

    @pytest.mark.parametrize("amount", [101, 2**63 - 1])
    async def test_more_than_pending(self, db: AsyncEngine, amount: int) -> None:
        a, b, pending = await _hold(db, 100)
        post = _post(pending.id, amount=amount)
        assert codes(await submit(db, [post])) == [R.PENDING_AMOUNT_EXCEEDED]
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}
        assert await stored(db, [post.id]) == []
        assert await _status(db, pending.id) == PendingStatus.PENDING
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]

    async def test_fields_equal_to_the_pending_ones(self, db: AsyncEngine) -> None:
        a, b, pending = await _hold(db, 100, code=5)
        post = _post(pending.id, debit_account_id=a, credit_account_id=b, currency="INR", code=5)
        assert codes(await submit(db, [post])) == [R.OK]

    async def test_nil_accounts_are_taken_from_the_pending(self, db: AsyncEngine) -> None:
        a, b, pending = await _hold(db, 100)
        post = _post(pending.id, debit_account_id=NIL_ID, credit_account_id=NIL_ID)
        assert codes(await submit(db, [post])) == [R.OK]
        (record,) = await stored(db, [post.id])
        assert (record.debit_account_id, record.credit_account_id) == (a, b)

    @pytest.mark.parametrize(
        ("field", "expected"),
        [
            ("debit_account_id", R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID),
            ("credit_account_id", R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID),
            ("currency", R.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY),
            ("code", R.PENDING_TRANSFER_HAS_DIFFERENT_CODE),
        ],
    )
    @pytest.mark.parametrize("resolve", [_post, _void])
    async def test_field_differs_from_the_pending(
        self, db: AsyncEngine, field: str, expected: R, resolve: Any
    ) -> None:
        a, b, pending = await _hold(db, 100, code=5)
        (other,) = await new_accounts(db, 1)
        value = {
            "debit_account_id": other,
            "credit_account_id": other,
            "currency": "USD",
            "code": 6,
        }[field]
        resolution = resolve(pending.id, **{field: value})
        assert codes(await submit(db, [resolution])) == [expected]
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}
        assert await stored(db, [resolution.id]) == []
        assert await _status(db, pending.id) == PendingStatus.PENDING
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({"pending_id": None}, R.PENDING_ID_MUST_NOT_BE_ZERO),
            ({"pending_id": NIL_ID}, R.PENDING_ID_MUST_NOT_BE_ZERO),
            ({"pending_id": "p"}, R.PENDING_ID_INVALID),
            ({"timeout_s": 5}, R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
            ({"amount": 0}, R.AMOUNT_MUST_NOT_BE_ZERO),
            ({"amount": -1}, R.AMOUNT_MUST_NOT_BE_NEGATIVE),
            ({"amount": 1.0}, R.AMOUNT_MUST_BE_INTEGER),
            ({"currency": "XYZ"}, R.CURRENCY_UNKNOWN),
            ({"code": 70_000}, R.CODE_INVALID),
            ({"flags": POST | EXPIRY}, R.FLAGS_INVALID),
            ({"flags": POST | VOID}, R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
        ],
    )
    async def test_bad_fields(self, db: AsyncEngine, fields: dict[str, Any], expected: R) -> None:
        a, b, pending = await _hold(db, 100)
        post = Transfer(uuid7(), pending_id=pending.id, flags=POST)._replace(**fields)
        assert codes(await submit(db, [post])) == [expected]
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}
        assert await _status(db, pending.id) == PendingStatus.PENDING
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]

    async def test_pending_id_equal_to_own_id(self, db: AsyncEngine) -> None:
        transfer_id = uuid7()
        post = Transfer(transfer_id, pending_id=transfer_id, flags=POST)
        assert codes(await submit(db, [post])) == [R.PENDING_ID_MUST_BE_DIFFERENT]

    @pytest.mark.parametrize("resolve", [_post, _void])
    async def test_pending_transfer_not_found(self, db: AsyncEngine, resolve: Any) -> None:
        resolution = resolve(uuid7())
        assert codes(await submit(db, [resolution])) == [R.PENDING_TRANSFER_NOT_FOUND]
        assert await stored(db, [resolution.id]) == []

    @pytest.mark.parametrize("resolve", [_post, _void])
    async def test_single_phase_transfer_is_not_pending(
        self, db: AsyncEngine, resolve: Any
    ) -> None:
        a, b = await new_accounts(db, 2)
        single = Transfer(uuid7(), a, b, 10, "INR")
        assert codes(await submit(db, [single])) == [R.OK]
        assert codes(await submit(db, [resolve(single.id)])) == [R.PENDING_TRANSFER_NOT_PENDING]
        assert await counters(db, [a, b]) == {a: (0, 10, 0, 0), b: (0, 0, 0, 10)}

    async def test_a_post_is_not_pending(self, db: AsyncEngine) -> None:
        _, _, pending = await _hold(db, 100)
        post = _post(pending.id, amount=50)
        assert codes(await submit(db, [post])) == [R.OK]
        assert codes(await submit(db, [_post(post.id)])) == [R.PENDING_TRANSFER_NOT_PENDING]


class TestVoid:
    async def test_void_releases_the_hold(self, db: AsyncEngine) -> None:
        a, b, pending = await _hold(db, 100, code=5)
        void = _void(pending.id)
        (outcome,) = await submit(db, [void])
        assert outcome.code == R.OK
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}
        (record,) = await stored(db, [void.id])
        assert record == outcome.transfer
        assert (record.amount, record.code, record.flags, record.pending_id) == (
            100,
            5,
            VOID,
            pending.id,
        )
        assert await _status(db, pending.id) == PendingStatus.VOIDED

    async def test_void_with_the_pending_amount(self, db: AsyncEngine) -> None:
        a, b, pending = await _hold(db, 100)
        assert codes(await submit(db, [_void(pending.id, amount=100)])) == [R.OK]
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}

    @pytest.mark.parametrize(
        ("amount", "expected"),
        [
            (1, R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT),
            (99, R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT),
            # As in TigerBeetle, more than pending is exceeded for a void as for a post.
            (101, R.PENDING_AMOUNT_EXCEEDED),
            (2**63 - 1, R.PENDING_AMOUNT_EXCEEDED),
        ],
    )
    async def test_void_with_a_different_amount(
        self, db: AsyncEngine, amount: int, expected: R
    ) -> None:
        a, b, pending = await _hold(db, 100)
        void = _void(pending.id, amount=amount)
        assert codes(await submit(db, [void])) == [expected]
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}
        assert await stored(db, [void.id]) == []
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]


class TestResolvedTwice:
    @pytest.mark.parametrize(
        ("first", "second", "expected"),
        [
            (_post, _post, R.PENDING_TRANSFER_ALREADY_POSTED),
            (_post, _void, R.PENDING_TRANSFER_ALREADY_POSTED),
            (_void, _post, R.PENDING_TRANSFER_ALREADY_VOIDED),
            (_void, _void, R.PENDING_TRANSFER_ALREADY_VOIDED),
        ],
    )
    @pytest.mark.parametrize("where", ["same batch", "later batch"])
    async def test_second_resolution(
        self, db: AsyncEngine, first: Any, second: Any, expected: R, where: str
    ) -> None:
        a, b, pending = await _hold(db, 100)
        one, two = first(pending.id), second(pending.id)
        if where == "same batch":
            outcomes = await submit(db, [one, two])
        else:
            outcomes = [*await submit(db, [one]), *await submit(db, [two])]
        assert codes(outcomes) == [R.OK, expected]
        posted = 100 if first is _post else 0
        assert await counters(db, [a, b]) == {a: (0, posted, 0, 0), b: (0, 0, 0, posted)}
        assert [t.id for t in await stored(db, [one.id, two.id])] == [one.id]
        # Retrying the first resolution itself is idempotent.
        assert codes(await submit(db, [one])) == [R.EXISTS]


class TestSameBatch:
    async def test_pending_and_post(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending = Transfer(uuid7(), a, b, 100, "INR", flags=PENDING, timeout_s=60)
        post = _post(pending.id, amount=40)
        assert codes(await submit(db, [pending, post])) == [R.OK, R.OK]
        assert await counters(db, [a, b]) == {a: (0, 40, 0, 0), b: (0, 0, 0, 40)}
        assert await expiry_rows(db, [pending.id]) == {}
        assert await _status(db, pending.id) == PendingStatus.POSTED

    async def test_pending_and_void(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending = Transfer(uuid7(), a, b, 100, "INR", flags=PENDING, timeout_s=60)
        assert codes(await submit(db, [pending, _void(pending.id)])) == [R.OK, R.OK]
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}
        assert await expiry_rows(db, [pending.id]) == {}

    async def test_post_before_its_pending(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending = Transfer(uuid7(), a, b, 100, "INR", flags=PENDING)
        post = _post(pending.id)
        assert codes(await submit(db, [post, pending])) == [R.PENDING_TRANSFER_NOT_FOUND, R.OK]
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]

    async def test_failed_pending_cannot_be_posted(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending = Transfer(uuid7(), a, b, 100, "USD", flags=PENDING)
        post = _post(pending.id)
        assert codes(await submit(db, [pending, post])) == [
            R.CURRENCY_MISMATCH,
            R.PENDING_TRANSFER_NOT_FOUND,
        ]


class TestExpiryQueue:
    async def test_post_removes_the_row(self, db: AsyncEngine) -> None:
        _, _, pending = await _hold(db, timeout_s=60)
        assert pending.id in await expiry_rows(db, [pending.id])
        assert codes(await submit(db, [_post(pending.id)])) == [R.OK]
        assert await expiry_rows(db, [pending.id]) == {}

    async def test_failed_resolution_keeps_the_row(self, db: AsyncEngine) -> None:
        _, _, pending = await _hold(db, timeout_s=60)
        assert codes(await submit(db, [_post(pending.id, amount=101)])) == [
            R.PENDING_AMOUNT_EXCEEDED
        ]
        assert await expiry_rows(db, [pending.id]) == {pending.id: pending.expires_at}
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]
        assert await expiry_rows(db, [pending.id]) == {}


class TestExpiry:
    async def test_sweeper_expires_once(self, db: AsyncEngine) -> None:
        now = time.time_ns()
        a, b, pending = await _hold(db, 100, timeout_s=1, now_ns=now)
        expires_at = pending.expires_at
        assert expires_at == now + SECOND
        await _sweep(db, expires_at - 1)  # earlier tests' leftovers; this one is not due
        assert await _status(db, pending.id) == PendingStatus.PENDING
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}

        assert await _sweep(db, expires_at) == 1
        assert await _sweep(db, expires_at) == 0
        assert await _status(db, pending.id) == PendingStatus.EXPIRED
        assert await counters(db, [a, b]) == {a: (0, 0, 0, 0), b: (0, 0, 0, 0)}
        assert await expiry_rows(db, [pending.id]) == {}
        (void,) = await stored(db, [expiry_transfer_id(pending.id)])
        assert (void.flags, void.pending_id, void.amount) == (VOID | EXPIRY, pending.id, 100)
        assert void.timestamp == expires_at

        later = expires_at + 10
        for resolution in (_post(pending.id), _void(pending.id)):
            (outcome,) = await submit(db, [resolution], now_ns=later)
            assert outcome.code == R.PENDING_TRANSFER_EXPIRED
            assert await stored(db, [resolution.id]) == []

    async def test_post_just_before_the_timeout(self, db: AsyncEngine) -> None:
        now = time.time_ns()
        a, b, pending = await _hold(db, 100, timeout_s=1, now_ns=now)
        assert pending.expires_at is not None
        post = _post(pending.id)
        assert codes(await submit(db, [post], now_ns=pending.expires_at - 1)) == [R.OK]
        assert await counters(db, [a, b]) == {a: (0, 100, 0, 0), b: (0, 0, 0, 100)}
        assert await expiry_rows(db, [pending.id]) == {}

    @pytest.mark.parametrize("resolve", [_post, _void])
    async def test_resolving_after_the_timeout_before_the_sweeper(
        self, db: AsyncEngine, resolve: Any
    ) -> None:
        now = time.time_ns()
        a, b, pending = await _hold(db, 100, timeout_s=1, now_ns=now)
        assert pending.expires_at is not None
        resolution = resolve(pending.id)
        outcomes = await submit(db, [resolution], now_ns=pending.expires_at)
        assert codes(outcomes) == [R.PENDING_TRANSFER_EXPIRED]
        assert await stored(db, [resolution.id]) == []
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}
        assert await _status(db, pending.id) == PendingStatus.PENDING
        await _sweep(db, pending.expires_at - 1)
        assert await _sweep(db, pending.expires_at) == 1
        assert await _status(db, pending.id) == PendingStatus.EXPIRED

    async def test_no_timeout_never_expires(self, db: AsyncEngine) -> None:
        now = time.time_ns()
        _, _, pending = await _hold(db, 100, now_ns=now)
        await _sweep(db, now + 86_400 * SECOND)
        assert await _status(db, pending.id) == PendingStatus.PENDING
        void = _void(pending.id)
        assert codes(await submit(db, [void], now_ns=now + 86_400 * SECOND)) == [R.OK]

    async def test_sweeper_limit(self, db: AsyncEngine) -> None:
        now = time.time_ns()
        holds = [await _hold(db, 10, timeout_s=1, now_ns=now + i) for i in range(3)]
        pendings = [pending for _, _, pending in holds]
        first_due = min(p.expires_at or 0 for p in pendings)
        last_due = max(p.expires_at or 0 for p in pendings)
        await _sweep(db, first_due - 1)
        assert await _sweep(db, last_due, limit=2) == 2
        # The earliest expire first.
        statuses = [await _status(db, p.id) for p in pendings]
        assert statuses == [PendingStatus.EXPIRED, PendingStatus.EXPIRED, PendingStatus.PENDING]
        assert await _sweep(db, last_due, limit=2) == 1
        assert await _status(db, pendings[2].id) == PendingStatus.EXPIRED

    async def test_already_resolved_pending_is_not_expired(self, db: AsyncEngine) -> None:
        now = time.time_ns()
        a, b, pending = await _hold(db, 100, timeout_s=1, now_ns=now)
        assert codes(await submit(db, [_post(pending.id)], now_ns=now + 1)) == [R.OK]
        assert pending.expires_at is not None
        await _sweep(db, pending.expires_at)
        assert await _status(db, pending.id) == PendingStatus.POSTED
        assert await stored(db, [expiry_transfer_id(pending.id)]) == []
        assert await counters(db, [a, b]) == {a: (0, 100, 0, 0), b: (0, 0, 0, 100)}

    async def test_clients_cannot_send_the_expiry_flag(self, db: AsyncEngine) -> None:
        _, _, pending = await _hold(db, 100)
        expiry = Transfer(uuid7(), pending_id=pending.id, flags=VOID | EXPIRY)
        assert codes(await submit(db, [expiry])) == [R.FLAGS_INVALID]
        assert await _status(db, pending.id) == PendingStatus.PENDING
        # Even the sweeper's own flag is only valid on a void.
        post = Transfer(uuid7(), pending_id=pending.id, flags=POST | EXPIRY)
        async with db.begin() as conn:
            (outcome,) = await create_transfers(conn, [post], allow_expiry=True)
        assert outcome.code == R.FLAGS_INVALID
        assert codes(await submit(db, [_void(pending.id)])) == [R.OK]


class TestPendingStatus:
    async def test_unknown_id(self, db: AsyncEngine) -> None:
        assert await _status(db, uuid7()) is None

    async def test_single_phase_transfer(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        single = Transfer(uuid7(), a, b, 1, "INR")
        assert codes(await submit(db, [single])) == [R.OK]
        assert await _status(db, single.id) is None

    async def test_resolution_is_not_a_pending_transfer(self, db: AsyncEngine) -> None:
        _, _, pending = await _hold(db)
        void = _void(pending.id)
        assert codes(await submit(db, [void])) == [R.OK]
        assert await _status(db, void.id) is None
        assert await _status(db, pending.id) == PendingStatus.VOIDED

    @pytest.mark.parametrize(
        ("resolve", "expected"),
        [
            (None, PendingStatus.PENDING),
            (_post, PendingStatus.POSTED),
            (_void, PendingStatus.VOIDED),
        ],
    )
    async def test_status(self, db: AsyncEngine, resolve: Any, expected: PendingStatus) -> None:
        _, _, pending = await _hold(db)
        if resolve is not None:
            assert codes(await submit(db, [resolve(pending.id)])) == [R.OK]
        assert await _status(db, pending.id) == expected
        if resolve is None:
            assert codes(await submit(db, [_void(pending.id)])) == [R.OK]


class TestLinkedResolution:
    async def test_linked_post(self, db: AsyncEngine) -> None:
        a, b, pending = await _hold(db, 100)
        post = Transfer(uuid7(), pending_id=pending.id, flags=POST | LINKED)
        single = Transfer(uuid7(), b, a, 5, "INR")
        assert codes(await submit(db, [post, single])) == [R.OK, R.OK]
        (record,) = await stored(db, [post.id])
        assert record.flags == POST | LINKED
        assert await counters(db, [a, b]) == {a: (0, 100, 0, 5), b: (0, 5, 0, 100)}
