"""What payouts tell the rest of PayFlow: one event per saga step (docs/payouts.md).

The event type is the step's name (TRANSACTION_INITIATED, DEBIT_SUCCESS, ...); `data` is
the payout as `GET /v1/payouts/{id}` shows it (without its timeline), which includes the
owner's `user_id`, so webhooks and notifications know whom it concerns. Each event's id
is derived from (payout, step): a step is written once, however often it is retried.
"""

from __future__ import annotations

from payflow.events.domain import Event, derived_event_id
from payflow.payouts.domain import Payout, Step
from payflow.payouts.views import payout_view


def step_event(payout: Payout, step: Step, *, at: int) -> Event:
    """The event that says `payout` reached `step` (the payout already shows it)."""
    assert step is not Step.CREDIT_DUE, "CREDIT_DUE is the bank caller's queue, not an event"
    assert payout.step is step, (payout.step, step)
    data = payout_view(payout)
    return Event(
        id=derived_event_id(payout.id, step.value),
        type=step.value,
        aggregate_type="payout",
        aggregate_id=data["id"],
        occurred_at=at,
        data=data,
    )
