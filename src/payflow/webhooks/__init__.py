"""Webhooks: signed HTTP deliveries of events to the endpoints users register.

`CONSUMER` queues one delivery per (endpoint, event) in the event's transaction;
`run_dispatcher` sends them outside any transaction, with retries, and disables
endpoints that keep failing; `router` serves endpoints, the delivery log and replays
(docs/webhooks.md).
"""

from payflow.webhooks.dispatcher import dispatch_due, run_dispatcher
from payflow.webhooks.handlers import CONSUMER

__all__ = ["CONSUMER", "dispatch_due", "run_dispatcher"]
