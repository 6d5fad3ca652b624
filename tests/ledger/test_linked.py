"""Use case: linked chains — all of a chain applies, or none of it does."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.ids import uuid7
from payflow.ledger import (
    AccountFlags,
    PendingStatus,
    Transfer,
    TransferFlags,
    TransferResult,
    get_account_history,
    get_pending_status,
)
from tests.ledger.helpers import new_accounts, submit
from tests.ledger.support import codes, counters, expiry_rows, stored

R = TransferResult
L = TransferFlags.LINKED
PENDING = TransferFlags.PENDING
POST = TransferFlags.POST_PENDING
VOID = TransferFlags.VOID_PENDING
ZERO = (0, 0, 0, 0)


def _t(
    a: uuid.UUID,
    b: uuid.UUID,
    amount: int,
    flags: int = 0,
    *,
    currency: str = "INR",
    timeout_s: int = 0,
) -> Transfer:
    return Transfer(uuid7(), a, b, amount, currency, flags=flags, timeout_s=timeout_s)


async def _status(engine: AsyncEngine, transfer_id: uuid.UUID) -> PendingStatus | None:
    async with engine.begin() as conn:
        return await get_pending_status(conn, transfer_id)


class TestLinkedChains:
    async def test_chain_all_ok(self, db: AsyncEngine) -> None:
        a, b, c = await new_accounts(db, 3)
        chain = [_t(a, b, 10, L), _t(b, c, 5, L), _t(c, a, 1)]
        assert codes(await submit(db, chain)) == [R.OK] * 3
        assert await counters(db, [a, b, c]) == {
            a: (0, 10, 0, 1),
            b: (0, 5, 0, 10),
            c: (0, 1, 0, 5),
        }
        records = await stored(db, [t.id for t in chain])
        assert [r.flags for r in records] == [L, L, 0]

    @pytest.mark.parametrize("position", [0, 1, 2])
    async def test_failing_member_fails_the_whole_chain(
        self, db: AsyncEngine, position: int
    ) -> None:
        a, b, c = await new_accounts(db, 3)
        (broke,) = await new_accounts(db, 1, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        chain = [_t(a, b, 10, L), _t(b, c, 5, L), _t(c, a, 1, L)]
        chain[position] = _t(broke, b, 1, L)
        chain[-1] = chain[-1]._replace(flags=0)
        outcomes = await submit(db, chain)
        expected = [R.LINKED_EVENT_FAILED] * 3
        expected[position] = R.EXCEEDS_CREDITS
        assert codes(outcomes) == expected
        assert all(o.transfer is None for o in outcomes)
        assert await counters(db, [a, b, c, broke]) == dict.fromkeys([a, b, c, broke], ZERO)
        assert await stored(db, [t.id for t in chain]) == []

    async def test_invalid_member_fails_the_chain(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        chain = [_t(a, b, 10, L), _t(a, b, 0, L), _t(a, b, 10)]
        assert codes(await submit(db, chain)) == [
            R.LINKED_EVENT_FAILED,
            R.AMOUNT_MUST_NOT_BE_ZERO,
            R.LINKED_EVENT_FAILED,
        ]
        assert await counters(db, [a, b]) == {a: ZERO, b: ZERO}

    async def test_transfers_outside_the_chain_still_apply(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        before, after = _t(a, b, 7), _t(b, a, 2)
        chain = [_t(a, b, 10, L), _t(a, uuid7(), 5)]
        outcomes = await submit(db, [before, *chain, after])
        assert codes(outcomes) == [
            R.OK,
            R.LINKED_EVENT_FAILED,
            R.CREDIT_ACCOUNT_NOT_FOUND,
            R.OK,
        ]
        assert await counters(db, [a, b]) == {a: (0, 7, 0, 2), b: (0, 2, 0, 7)}
        assert [t.id for t in await stored(db, [before.id, *(t.id for t in chain), after.id])] == [
            before.id,
            after.id,
        ]

    async def test_rollback_restores_counters_changed_before_the_chain(
        self, db: AsyncEngine
    ) -> None:
        a, b = await new_accounts(db, 2)
        batch = [
            _t(a, b, 10),
            _t(a, b, 5, L),
            _t(b, a, 3, L),
            _t(a, b, 1, currency="USD"),
            _t(b, a, 4),
        ]
        assert codes(await submit(db, batch)) == [
            R.OK,
            R.LINKED_EVENT_FAILED,
            R.LINKED_EVENT_FAILED,
            R.CURRENCY_MISMATCH,
            R.OK,
        ]
        assert await counters(db, [a, b]) == {a: (0, 10, 0, 4), b: (0, 4, 0, 10)}

    async def test_single_transfers_are_not_a_chain(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        batch = [_t(a, b, 10), _t(a, b, 0), _t(a, b, 5)]
        assert codes(await submit(db, batch)) == [R.OK, R.AMOUNT_MUST_NOT_BE_ZERO, R.OK]


class TestOpenChain:
    async def test_chain_open_at_batch_end(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        chain = [_t(a, b, 10, L), _t(a, b, 5, L)]
        assert codes(await submit(db, chain)) == [
            R.LINKED_EVENT_FAILED,
            R.LINKED_EVENT_CHAIN_OPEN,
        ]
        assert await counters(db, [a, b]) == {a: ZERO, b: ZERO}
        assert await stored(db, [t.id for t in chain]) == []

    async def test_single_linked_transfer(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        assert codes(await submit(db, [_t(a, b, 10, L)])) == [R.LINKED_EVENT_CHAIN_OPEN]
        assert await counters(db, [a, b]) == {a: ZERO, b: ZERO}

    async def test_earlier_transfers_still_apply(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        outcomes = await submit(db, [_t(a, b, 3), _t(a, b, 10, L)])
        assert codes(outcomes) == [R.OK, R.LINKED_EVENT_CHAIN_OPEN]
        assert await counters(db, [a, b]) == {a: (0, 3, 0, 0), b: (0, 0, 0, 3)}

    @pytest.mark.parametrize("failing", [0, 1])
    async def test_open_chain_is_reported_even_after_a_failure(
        self, db: AsyncEngine, failing: int
    ) -> None:
        """As in TigerBeetle: the last event of an open chain is `linked_event_chain_open`,
        even when an earlier member already failed the chain."""
        a, b = await new_accounts(db, 2)
        chain = [_t(a, b, 10, L), _t(a, b, 10, L), _t(a, b, 10, L)]
        chain[failing] = _t(a, b, 0, L)
        expected = [R.LINKED_EVENT_FAILED, R.LINKED_EVENT_FAILED, R.LINKED_EVENT_CHAIN_OPEN]
        expected[failing] = R.AMOUNT_MUST_NOT_BE_ZERO
        assert codes(await submit(db, chain)) == expected
        assert await counters(db, [a, b]) == {a: ZERO, b: ZERO}


class TestConsecutiveChains:
    async def test_first_fails_second_succeeds(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        first = [_t(a, b, 10, L), _t(a, b, 1, currency="USD")]
        second = [_t(a, b, 20, L), _t(a, b, 2)]
        assert codes(await submit(db, [*first, *second])) == [
            R.LINKED_EVENT_FAILED,
            R.CURRENCY_MISMATCH,
            R.OK,
            R.OK,
        ]
        assert await counters(db, [a, b]) == {a: (0, 22, 0, 0), b: (0, 0, 0, 22)}
        assert await stored(db, [t.id for t in first]) == []
        assert [t.id for t in await stored(db, [t.id for t in second])] == [t.id for t in second]

    async def test_first_succeeds_second_fails(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        first = [_t(a, b, 10, L), _t(a, b, 1)]
        second = [_t(a, b, 20, L), _t(a, b, 2, L), _t(a, b, -1)]
        assert codes(await submit(db, [*first, *second])) == [
            R.OK,
            R.OK,
            R.LINKED_EVENT_FAILED,
            R.LINKED_EVENT_FAILED,
            R.AMOUNT_MUST_NOT_BE_NEGATIVE,
        ]
        assert await counters(db, [a, b]) == {a: (0, 11, 0, 0), b: (0, 0, 0, 11)}

    async def test_both_fail(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        batch = [_t(a, b, 0, L), _t(a, b, 1), _t(a, b, 2, L), _t(a, b, 0)]
        assert codes(await submit(db, batch)) == [
            R.AMOUNT_MUST_NOT_BE_ZERO,
            R.LINKED_EVENT_FAILED,
            R.LINKED_EVENT_FAILED,
            R.AMOUNT_MUST_NOT_BE_ZERO,
        ]
        assert await counters(db, [a, b]) == {a: ZERO, b: ZERO}


class TestChainsWithTwoPhase:
    async def test_pending_and_post_in_a_chain(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending = _t(a, b, 100, PENDING | L, timeout_s=60)
        post = Transfer(uuid7(), pending_id=pending.id, amount=70, flags=POST)
        assert codes(await submit(db, [pending, post])) == [R.OK, R.OK]
        assert await counters(db, [a, b]) == {a: (0, 70, 0, 0), b: (0, 0, 0, 70)}
        assert await expiry_rows(db, [pending.id]) == {}

    async def test_failed_chain_leaves_no_pending_and_no_expiry(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending = _t(a, b, 100, PENDING | L, timeout_s=60)
        post = Transfer(uuid7(), pending_id=pending.id, amount=101, flags=POST)
        assert codes(await submit(db, [pending, post])) == [
            R.LINKED_EVENT_FAILED,
            R.PENDING_AMOUNT_EXCEEDED,
        ]
        assert await counters(db, [a, b]) == {a: ZERO, b: ZERO}
        assert await stored(db, [pending.id, post.id]) == []
        assert await expiry_rows(db, [pending.id]) == {}

    async def test_failed_chain_undoes_a_post_of_an_earlier_pending(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        pending = _t(a, b, 100, PENDING, timeout_s=60)
        assert codes(await submit(db, [pending])) == [R.OK]
        post_in_chain = Transfer(uuid7(), pending_id=pending.id, flags=POST | L)
        post_after = Transfer(uuid7(), pending_id=pending.id, amount=40, flags=POST)
        outcomes = await submit(db, [post_in_chain, _t(a, b, 0), post_after])
        assert codes(outcomes) == [R.LINKED_EVENT_FAILED, R.AMOUNT_MUST_NOT_BE_ZERO, R.OK]
        assert await counters(db, [a, b]) == {a: (0, 40, 0, 0), b: (0, 0, 0, 40)}
        assert await stored(db, [post_in_chain.id]) == []
        assert await expiry_rows(db, [pending.id]) == {}
        assert await _status(db, pending.id) == PendingStatus.POSTED

    async def test_failed_chain_keeps_the_expiry_of_a_pending_it_posted(
        self, db: AsyncEngine
    ) -> None:
        a, b = await new_accounts(db, 2)
        pending = _t(a, b, 100, PENDING, timeout_s=60)
        assert codes(await submit(db, [pending])) == [R.OK]
        (record,) = await stored(db, [pending.id])
        post = Transfer(uuid7(), pending_id=pending.id, flags=POST | L)
        assert codes(await submit(db, [post, _t(a, b, 0)])) == [
            R.LINKED_EVENT_FAILED,
            R.AMOUNT_MUST_NOT_BE_ZERO,
        ]
        assert await expiry_rows(db, [pending.id]) == {pending.id: record.expires_at}
        assert await _status(db, pending.id) == PendingStatus.PENDING
        void = Transfer(uuid7(), pending_id=pending.id, flags=VOID)
        assert codes(await submit(db, [void])) == [R.OK]

    async def test_failed_chain_undoes_a_post_of_a_pending_from_the_same_batch(
        self, db: AsyncEngine
    ) -> None:
        a, b = await new_accounts(db, 2)
        pending = _t(a, b, 100, PENDING, timeout_s=60)
        post = Transfer(uuid7(), pending_id=pending.id, flags=POST | L)
        void = Transfer(uuid7(), pending_id=pending.id, flags=VOID)
        outcomes = await submit(db, [pending, post, _t(a, b, 0), void])
        assert codes(outcomes) == [
            R.OK,
            R.LINKED_EVENT_FAILED,
            R.AMOUNT_MUST_NOT_BE_ZERO,
            R.OK,
        ]
        assert await counters(db, [a, b]) == {a: ZERO, b: ZERO}
        assert await expiry_rows(db, [pending.id]) == {}
        assert await _status(db, pending.id) == PendingStatus.VOIDED

    async def test_failed_chain_undoes_a_post_then_the_pending_can_expire(
        self, db: AsyncEngine
    ) -> None:
        a, b = await new_accounts(db, 2)
        pending = _t(a, b, 100, PENDING, timeout_s=60)
        post = Transfer(uuid7(), pending_id=pending.id, flags=POST | L)
        outcomes = await submit(db, [pending, post, _t(a, b, 0)])
        assert codes(outcomes) == [R.OK, R.LINKED_EVENT_FAILED, R.AMOUNT_MUST_NOT_BE_ZERO]
        (record,) = await stored(db, [pending.id])
        assert await expiry_rows(db, [pending.id]) == {pending.id: record.expires_at}
        assert await counters(db, [a, b]) == {a: (100, 0, 0, 0), b: (0, 0, 100, 0)}
        void = Transfer(uuid7(), pending_id=pending.id, flags=VOID)
        assert codes(await submit(db, [void])) == [R.OK]


class TestChainEdgeCases:
    async def test_existing_transfer_fails_the_chain(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        existing = _t(a, b, 10, L)
        assert codes(await submit(db, [existing, _t(a, b, 1)])) == [R.OK, R.OK]
        retry = [existing, _t(a, b, 2)]
        assert codes(await submit(db, retry)) == [R.EXISTS, R.LINKED_EVENT_FAILED]
        assert await counters(db, [a, b]) == {a: (0, 11, 0, 0), b: (0, 0, 0, 11)}

    async def test_duplicate_id_in_a_failed_chain_can_apply_later(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2)
        transfer = _t(a, b, 10, L)
        batch = [transfer, _t(a, b, 0), transfer._replace(flags=0)]
        assert codes(await submit(db, batch)) == [
            R.LINKED_EVENT_FAILED,
            R.AMOUNT_MUST_NOT_BE_ZERO,
            R.OK,
        ]
        (record,) = await stored(db, [transfer.id])
        assert record.flags == 0

    async def test_failed_chain_writes_no_history(self, db: AsyncEngine) -> None:
        a, b = await new_accounts(db, 2, flags=AccountFlags.HISTORY)
        assert codes(await submit(db, [_t(a, b, 10, L), _t(a, b, 0)])) == [
            R.LINKED_EVENT_FAILED,
            R.AMOUNT_MUST_NOT_BE_ZERO,
        ]
        assert codes(await submit(db, [_t(a, b, 3)])) == [R.OK]
        async with db.begin() as conn:
            page = await get_account_history(conn, a)
        assert [(s.debits_posted, s.credits_posted) for s in page.items] == [(3, 0)]
