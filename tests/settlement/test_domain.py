"""Settlement's arithmetic: fees round down and never exceed what the merchant kept, and
every total is the sum of its lines."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payflow.settlement.domain import Item, fee_of, line_of, next_run_at, totals_of


@pytest.mark.parametrize(
    ("amount", "refunded", "fee_bps", "fee"),
    [
        (10_000, 0, 250, 250),
        (2_001, 0, 250, 50),  # 50.025 rounds down
        (99, 0, 100, 0),
        (10_000, 9_900, 250, 100),  # capped at what the merchant kept
        (10_000, 10_000, 250, 0),
        (10_000, 0, 10_000, 10_000),
        (2**63 - 1, 0, 10_000, 2**63 - 1),
    ],
)
def test_fee(amount: int, refunded: int, fee_bps: int, fee: int) -> None:
    assert fee_of(amount, refunded, fee_bps=fee_bps) == fee


@given(
    st.lists(
        st.tuples(st.integers(1, 2**40), st.integers(0, 100)).map(
            lambda t: (t[0], t[0] * t[1] // 100)
        ),
        min_size=1,
        max_size=20,
    ),
    st.integers(0, 10_000),
)
def test_lines_and_totals_add_up(payments: list[tuple[int, int]], fee_bps: int) -> None:
    lines = [
        line_of(Item(uuid.uuid4(), amount, refunded, 0), fee_bps=fee_bps)
        for amount, refunded in payments
    ]
    for line in lines:
        assert line.net_amount == line.amount - line.refunded_amount - line.fee_amount >= 0
    totals = totals_of(lines)
    assert totals.line_count == len(payments)
    assert totals.gross_amount == sum(amount for amount, _ in payments)
    assert totals.net_amount == sum(line.net_amount for line in lines)


def test_next_run() -> None:
    assert next_run_at(5, interval_s=60, batch_full=False) == 5 + 60 * 10**9
    # Payments were left out: the next settlement is due at once.
    assert next_run_at(5, interval_s=60, batch_full=True) == 5
