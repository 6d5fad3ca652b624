"""Notifications: each user's in-app inbox, filled from events, and e-mails over SMTP.

`CONSUMER` fills inboxes and queues e-mails (idempotently, in the event's transaction);
`run_mailer` sends queued e-mails outside any transaction; `router` serves the inbox.
A slow or failing mail server never delays or fails a payment (docs/notifications.md).
"""

from payflow.notifications.handlers import CONSUMER
from payflow.notifications.mailer import run_mailer, send_due

__all__ = ["CONSUMER", "run_mailer", "send_due"]
