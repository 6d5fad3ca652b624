"""Cashback and clawback arithmetic, by example at the edges and by property."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payflow.money import AMOUNT_MAX
from payflow.rewards.domain import (
    CLAWED_BACK,
    PAID,
    PARTIALLY_CLAWED_BACK,
    Cashback,
    Clawback,
    Rule,
    apply_refund,
    best_rule,
    cashback_for,
    clawback_due,
)

MERCHANT = uuid.uuid4()


def rule(
    *,
    rate_bp: int = 500,
    cap_amount: int = 10_000,
    minimum_amount: int = 0,
    merchant_id: uuid.UUID | None = None,
    currency: str = "INR",
    active: bool = True,
    created_at: int = 1,
) -> Rule:
    return Rule(
        id=uuid.uuid4(),
        name=None,
        currency=currency,
        rate_bp=rate_bp,
        cap_amount=cap_amount,
        minimum_amount=minimum_amount,
        merchant_id=merchant_id,
        active=active,
        created_by=uuid.uuid4(),
        created_at=created_at,
        updated_at=created_at,
    )


def cashback(amount: int, payment_amount: int) -> Cashback:
    return Cashback(
        id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        source_id="txn_x",
        rule_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        wallet_id=uuid.uuid4(),
        amount=amount,
        currency="INR",
        payment_amount=payment_amount,
        refunded_amount=0,
        clawed_back_amount=0,
        shortfall_amount=0,
        status=PAID,
        created_at=1,
        updated_at=1,
    )


def refund(amount: int) -> Clawback:
    return Clawback(
        id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        source_id="txn_x",
        refund_id="re_x",
        cashback_id=None,
        currency="INR",
        refunded_amount=amount,
        due_amount=0,
        amount=0,
        shortfall_amount=0,
        created_at=1,
        applied_at=None,
    )


class TestCashbackFor:
    @pytest.mark.parametrize(
        ("rate_bp", "cap", "minimum", "amount", "expected"),
        [
            (500, 10_000, 0, 10_000, 500),  # 5 % of ₹100.00
            (500, 300, 0, 10_000, 300),  # capped
            (500, 500, 0, 10_000, 500),  # exactly at the cap
            (500, 10_000, 10_000, 9_999, 0),  # one paisa below the minimum
            (500, 10_000, 10_000, 10_000, 500),  # exactly the minimum
            (1, 10_000, 0, 9_999, 0),  # 0.01 % of 9,999 rounds down to nothing
            (1, 10_000, 0, 10_000, 1),
            (10_000, 10**12, 0, 12_345, 12_345),  # 100 %: the whole payment
            (333, 10**12, 0, 100, 3),  # 3.33 % of 100 = 3.33: floor
            (10_000, AMOUNT_MAX, 0, AMOUNT_MAX, AMOUNT_MAX),  # no overflow at the top
        ],
    )
    def test_edges(self, rate_bp: int, cap: int, minimum: int, amount: int, expected: int) -> None:
        found = cashback_for(rule(rate_bp=rate_bp, cap_amount=cap, minimum_amount=minimum), amount)
        assert found == expected

    def test_an_inactive_rule_pays_nothing(self) -> None:
        assert cashback_for(rule(active=False), 10_000) == 0

    @given(
        rate_bp=st.integers(1, 10_000),
        cap=st.integers(1, AMOUNT_MAX),
        minimum=st.integers(0, AMOUNT_MAX),
        amount=st.integers(1, AMOUNT_MAX),
    )
    def test_never_above_cap_or_amount_and_nothing_below_minimum(
        self, rate_bp: int, cap: int, minimum: int, amount: int
    ) -> None:
        found = cashback_for(rule(rate_bp=rate_bp, cap_amount=cap, minimum_amount=minimum), amount)
        assert type(found) is int
        assert 0 <= found <= min(cap, amount)
        if amount < minimum:
            assert found == 0
        else:
            # Exact rational arithmetic: the floor of amount × rate, then the cap.
            assert found == min(cap, amount * rate_bp // 10_000)
            assert found * 10_000 <= amount * rate_bp < (found + 1) * 10_000 or found == cap


class TestBestRule:
    def test_the_merchants_own_rule_beats_a_richer_global_one(self) -> None:
        own = rule(rate_bp=100, merchant_id=MERCHANT)
        everywhere = rule(rate_bp=900)
        found = best_rule([everywhere, own], merchant_id=MERCHANT, currency="INR", amount=10_000)
        assert found == (own, 100)

    def test_global_rules_apply_when_no_own_rule_pays(self) -> None:
        own = rule(rate_bp=100, merchant_id=MERCHANT, minimum_amount=50_000)
        everywhere = rule(rate_bp=200)
        found = best_rule([own, everywhere], merchant_id=MERCHANT, currency="INR", amount=10_000)
        assert found == (everywhere, 200)

    def test_most_cashback_wins_and_a_tie_goes_to_the_oldest(self) -> None:
        newer = rule(rate_bp=300, created_at=20)
        older = rule(rate_bp=300, created_at=10)
        capped = rule(rate_bp=900, cap_amount=100, created_at=1)
        found = best_rule(
            [newer, capped, older], merchant_id=MERCHANT, currency="INR", amount=10_000
        )
        assert found == (older, 300)

    def test_other_merchants_currencies_and_inactive_rules_do_not_apply(self) -> None:
        rules = [
            rule(merchant_id=uuid.uuid4()),
            rule(currency="USD"),
            rule(active=False),
            rule(minimum_amount=20_000),
        ]
        assert best_rule(rules, merchant_id=MERCHANT, currency="INR", amount=10_000) is None
        assert best_rule([], merchant_id=MERCHANT, currency="INR", amount=10_000) is None


class TestClawback:
    def test_full_refund_takes_all(self) -> None:
        after, taken = apply_refund(cashback(500, 10_000), refund(10_000), available=10**6, at=2)
        assert (taken.due_amount, taken.amount, taken.shortfall_amount) == (500, 500, 0)
        assert (after.clawed_back_amount, after.status) == (500, CLAWED_BACK)
        assert taken.cashback_id == after.id

    def test_partial_refunds_add_up_exactly(self) -> None:
        # 5 of 10 back per ₹ refunded: 3 then 7 would floor to 1 + 3 per refund; on the
        # running total they give 1, then the remaining 4.
        state = cashback(5, 10)
        state, first = apply_refund(state, refund(3), available=100, at=2)
        assert (first.amount, state.status) == (1, PARTIALLY_CLAWED_BACK)
        state, second = apply_refund(state, refund(7), available=100, at=3)
        assert (second.amount, state.clawed_back_amount, state.status) == (4, 5, CLAWED_BACK)

    def test_a_spent_cashback_is_written_off_as_shortfall(self) -> None:
        state, taken = apply_refund(cashback(500, 10_000), refund(10_000), available=120, at=2)
        assert (taken.due_amount, taken.amount, taken.shortfall_amount) == (500, 120, 380)
        assert (state.clawed_back_amount, state.shortfall_amount) == (120, 380)
        assert state.status == PARTIALLY_CLAWED_BACK
        # Nothing more is due once it is settled, however much more is "refunded".
        state, again = apply_refund(state, refund(5_000), available=10**6, at=3)
        assert again.due_amount == 0 and state.refunded_amount == 10_000

    @given(
        amount=st.integers(1, 10**12),
        payment_amount=st.integers(1, 10**12),
        refunds=st.lists(st.integers(1, 10**12), max_size=8),
        available=st.lists(st.integers(0, 10**12), min_size=8, max_size=8),
    )
    def test_never_more_than_the_cashback_and_all_of_it_on_a_full_refund(
        self, amount: int, payment_amount: int, refunds: list[int], available: list[int]
    ) -> None:
        state = cashback(amount, payment_amount)
        taken_total = 0
        for refunded, wallet in zip(refunds, available, strict=False):
            state, taken = apply_refund(state, refund(refunded), available=wallet, at=2)
            assert 0 <= taken.amount <= wallet
            assert taken.amount + taken.shortfall_amount == taken.due_amount
            taken_total += taken.amount
        assert taken_total == state.clawed_back_amount
        assert state.clawed_back_amount + state.shortfall_amount <= amount
        refunded_total = min(sum(refunds), payment_amount)
        assert state.clawed_back_amount + state.shortfall_amount == (
            amount * refunded_total // payment_amount
        )

    @given(
        cashback_amount=st.integers(1, 10**12),
        payment_amount=st.integers(1, 10**12),
        refunded_total=st.integers(0, 2 * 10**12),
    )
    def test_due_is_proportional_and_bounded(
        self, cashback_amount: int, payment_amount: int, refunded_total: int
    ) -> None:
        due = clawback_due(
            cashback_amount=cashback_amount,
            payment_amount=payment_amount,
            refunded_total=refunded_total,
            settled_amount=0,
        )
        assert 0 <= due <= cashback_amount
        assert due * payment_amount <= cashback_amount * min(refunded_total, payment_amount)

    def test_rows_refuse_impossible_states(self) -> None:
        with pytest.raises(AssertionError):
            replace(cashback(500, 10_000), clawed_back_amount=600, status=PARTIALLY_CLAWED_BACK)
        with pytest.raises(AssertionError):
            rule(rate_bp=0)
