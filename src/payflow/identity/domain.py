"""Identity's rules: roles, what a valid e-mail/handle/password is, principals."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from payflow.errors import PayFlowError


class Role(StrEnum):
    CUSTOMER = "customer"
    MERCHANT = "merchant"
    OPERATOR = "operator"


HANDLE_PATTERN: Final = r"^[a-z0-9_]{3,32}$"
EMAIL_PATTERN: Final = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"
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
    if len(email) > 254 or not re.fullmatch(EMAIL_PATTERN, email):
        raise PayFlowError("email_invalid", f"{email!r} is not an e-mail address", http_status=422)


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

    @property
    def scope(self) -> str:
        """The namespace for this caller's idempotency keys and rate limits."""
        return f"usr_{self.user_id.hex}"

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
