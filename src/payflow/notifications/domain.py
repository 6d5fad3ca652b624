"""Notifications' types and rules: what a notice is, its ids, e-mail retries. No I/O."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from payflow.money import format_amount

# Ids are derived from (event, user): a transaction retried after a rollback, or an event
# delivered twice, writes the same rows, which the unique keys then keep single.
_NAMESPACE: Final = uuid.UUID("6a0f3d52-8c1e-4b9a-9d27-4e5b1c7f0a63")

QUEUED: Final = "queued"
SENT: Final = "sent"
FAILED: Final = "failed"
EMAIL_STATUSES: Final = (QUEUED, SENT, FAILED)

TITLE_LENGTH_MAX: Final = 200
BODY_LENGTH_MAX: Final = 2000
SUBJECT_LENGTH_MAX: Final = 200
ERROR_LENGTH_MAX: Final = 1000
# The longest wait between two attempts at one e-mail, however many have failed.
BACKOFF_S_MAX: Final = 3600.0


class MalformedEvent(ValueError):
    """An event whose data lacks what its notice needs: retried, then dead-lettered."""


@dataclass(frozen=True, slots=True)
class EmailText:
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class Notice:
    """What one user is told about one event: an inbox entry, perhaps also an e-mail."""

    user_id: uuid.UUID
    title: str
    body: str
    email: EmailText | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """An inbox entry as stored."""

    id: uuid.UUID
    user_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    title: str
    body: str
    created_at: int
    read_at: int | None


@dataclass(frozen=True, slots=True)
class QueuedEmail:
    """An e-mail claimed for sending. `lease_until` is the `next_attempt_at` the claim
    wrote: a later claim by another mailer writes another, so it also fences updates."""

    id: uuid.UUID
    to_address: str
    subject: str
    body: str
    attempts: int
    created_at: int
    lease_until: int


@dataclass(frozen=True, slots=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None
    password: str | None
    # `smtps://`: TLS from the first byte. `smtp://` upgrades with STARTTLS when offered.
    use_tls: bool


def inbox_id(event_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"inbox:{event_id}:{user_id}")


def email_id(event_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"email:{event_id}:{user_id}")


def clip(text: str, length_max: int) -> str:
    """`text` cut to `length_max` characters (an ellipsis marks the cut). Event data comes
    from other contexts: a long name or reason shortens a notice rather than losing it."""
    return text if len(text) <= length_max else text[: length_max - 1] + "…"


def money(amount: int, currency: str) -> str:
    """`12345, "INR"` → `"₹123.45"`; currencies without a symbol read `"1.234 KWD"`."""
    return format_amount(amount, currency, symbol=True)


def retry_delay_s(attempts: int, first_s: float) -> float:
    """How long to wait after the `attempts`-th failed attempt: exponential back-off with
    jitter (half to all of the ceiling), so mailers retrying together spread out."""
    assert attempts >= 1
    ceiling = min(BACKOFF_S_MAX, first_s * 2 ** min(attempts - 1, 32))
    return random.uniform(ceiling / 2, ceiling)


def gives_up(attempts: int, attempts_max: int, *, permanent: bool) -> bool:
    """True when an e-mail that has failed `attempts` times is not tried again."""
    return permanent or attempts >= attempts_max


def message_id(email: uuid.UUID, sender: str) -> str:
    """The Message-ID: one per e-mail, the same on every attempt, so a resend after a
    crash between sending and recording it is recognisable as the same message."""
    domain = sender.rsplit("@", 1)[-1].rstrip(">").strip() or "payflow.local"
    return f"<ntf.{email.hex}@{domain}>"


def parse_smtp_url(url: str) -> SmtpServer:
    """`smtp://[user:password@]host[:port]` (port 25) or `smtps://…` (port 465)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"{url!r} is not an smtp:// or smtps:// URL")
    use_tls = parts.scheme == "smtps"
    return SmtpServer(
        hostname=parts.hostname,
        port=parts.port or (465 if use_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
    )
