"""Every context's tables: what the migrations must build (Alembic's env and a test)."""

from __future__ import annotations

from sqlalchemy import MetaData


def all_metadata() -> list[MetaData]:
    """Each context's MetaData, in migration order."""
    from payflow.api.models import metadata as api
    from payflow.events.models import metadata as events
    from payflow.identity.models import metadata as identity
    from payflow.ledger.models import metadata as ledger
    from payflow.merchants.models import metadata as payments  # payments shares it
    from payflow.notifications.models import metadata as notifications
    from payflow.operators.models import metadata as operators
    from payflow.payments import models as _payments_tables  # noqa: F401  (its tables join it)
    from payflow.payouts.models import metadata as payouts
    from payflow.rewards.models import metadata as rewards
    from payflow.settlement.models import metadata as settlement
    from payflow.transfers.models import metadata as transfers
    from payflow.wallets.models import metadata as wallets
    from payflow.webhooks.models import metadata as webhooks

    return [
        ledger,
        identity,
        wallets,
        transfers,
        operators,
        api,
        events,
        notifications,
        rewards,
        webhooks,
        payments,
        payouts,
        settlement,
    ]
