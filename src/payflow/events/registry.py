"""PayFlow's consumers, by name: what `payflow worker` runs."""

from __future__ import annotations

from payflow.events.consumers import Consumer


def all_consumers() -> dict[str, Consumer]:
    """Every consumer PayFlow ships, by name (imported here so contexts stay decoupled)."""
    from payflow.notifications.handlers import CONSUMER as notifications
    from payflow.payouts.handlers import CONSUMER as payouts
    from payflow.rewards.handlers import CONSUMER as rewards
    from payflow.settlement.handlers import CONSUMER as settlement
    from payflow.webhooks.handlers import CONSUMER as webhooks

    return {
        consumer.name: consumer
        for consumer in (notifications, rewards, payouts, webhooks, settlement)
    }


def select_consumers(names: list[str] | None) -> dict[str, Consumer]:
    """The named consumers (all when `names` is empty); unknown names are an error."""
    known = all_consumers()
    if not names:
        return known
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown consumer(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return {name: known[name] for name in names}
