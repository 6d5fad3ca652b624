"""Identity's rules: roles, what a valid e-mail/handle/password is, principals."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from payflow.errors import PayFlowError


class Role(StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"
    OPERATOR = "operator"


HANDLE_PATTERN: Final = r"^[a-z0-9_]{3,32}$"
# No whitespace or control characters anywhere: PostgreSQL cannot store NUL in text,
# and an address with control characters is not one anybody can write to.
EMAIL_PATTERN: Final = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"
PASSWORD_LENGTH_MIN: Final = 8
PASSWORD_LENGTH_MAX: Final = 128
# Handles that would read as PayFlow itself in an address (`payflow@payflow`).
HANDLES_RESERVED: Final = frozenset(
    {"payflow", "admin", "operator", "operators", "system", "support", "root", "bank"}
)


def normalize_email(email: str) -> str:
    """E-mail addresses compare case-insensitively; store one spelling."""
    return email.strip().lower()


def check_email(email: str) -> None:
    if not is_email(email):
        raise PayFlowError("email_invalid", f"{email!r} is not an e-mail address", http_status=422)


def is_email(email: str) -> bool:
    return len(email) <= 254 and re.fullmatch(EMAIL_PATTERN, email) is not None


def check_name(name: str, *, what: str = "name") -> None:
    """A display name (a user's, an API key's): some visible text, no control characters
    (PostgreSQL cannot store NUL, and the others garble every screen they are shown on)."""
    if not name.strip() or any(unicodedata.category(c) == "Cc" for c in name):
        raise PayFlowError(
            "name_invalid",
            f"a {what} needs visible text and no control characters",
            http_status=422,
        )


def check_handle(handle: str) -> None:
    if not re.fullmatch(HANDLE_PATTERN, handle):
        raise PayFlowError("handle_invalid", "a handle is 3-32 of a-z, 0-9 and _", http_status=422)
    if handle in HANDLES_RESERVED:
        raise PayFlowError("handle_reserved", f"the handle {handle!r} is reserved", http_status=422)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user by access token, or a merchant by API key."""

    user_id: uuid.UUID
    role: Role
    api_key_id: uuid.UUID | None = None
    # The namespace for this caller's idempotency keys and rate limits (derived, so it
    # plays no part in equality).
    scope: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", f"usr_{self.user_id.hex}")

    @property
    def is_operator(self) -> bool:
        return self.role is Role.OPERATOR


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    email: str
    name: str
    handle: str
    role: Role
    disabled: bool
    created_at: int
