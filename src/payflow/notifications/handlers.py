"""What notifications does when others' events arrive: fill inboxes, queue e-mails.

The handler runs in the consumer runner's transaction, after the runner recorded the
event as processed: it never commits and never calls the network. E-mails are only
queued here; the mailer sends them later, outside any transaction, so a slow or failing
mail server can hold up neither this consumer nor the payment that caused the event.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.events.consumers import Consumer
from payflow.events.domain import Event
from payflow.identity.service import get_users
from payflow.notifications import service, templates

EVENT_TYPES: Final = frozenset(templates.RENDERERS)
# The event version the templates read. Consumers ignore versions they do not know
# (docs/events.md): a newer version's data may not mean what these templates expect.
VERSION: Final = 1


async def handle(conn: AsyncConnection, event: Event) -> None:
    """Tell each user `event` concerns. Malformed data raises: retried, then parked."""
    if event.version != VERSION:
        return
    people = await get_users(conn, sorted(templates.parties(event)))
    notices = templates.render(event, people)
    await service.store(conn, event, notices, people)


CONSUMER: Final = Consumer(name="notifications", event_types=EVENT_TYPES, handle=handle)
