"""Identity's request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from payflow.api.schemas import StrictModel
from payflow.identity.domain import (
    EMAIL_PATTERN,
    HANDLE_PATTERN,
    PASSWORD_LENGTH_MAX,
    PASSWORD_LENGTH_MIN,
    User,
)
from payflow.ids import format_public_id
from payflow.timestamps import to_rfc3339

Email = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN, examples=["asha@example.com"])]
Password = Annotated[str, Field(min_length=PASSWORD_LENGTH_MIN, max_length=PASSWORD_LENGTH_MAX)]


class RegisterBody(StrictModel):
    email: Email
    password: Password
    name: Annotated[str, Field(min_length=1, max_length=100)]
    handle: Annotated[str, Field(pattern=HANDLE_PATTERN, examples=["asha"])]
    role: Literal["customer", "merchant"] = "customer"


class LoginBody(StrictModel):
    email: Annotated[str, Field(min_length=1, max_length=254)]
    password: Annotated[str, Field(min_length=1, max_length=PASSWORD_LENGTH_MAX)]


class RefreshBody(StrictModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=200)]


class TokenPair(StrictModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds until the access token expires")


class UserOut(StrictModel):
    id: str
    object: Literal["user"] = "user"
    email: str
    name: str
    handle: str
    address: str
    role: Literal["customer", "merchant", "operator"]
    created_at: str

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=format_public_id("usr", user.id),
            email=user.email,
            name=user.name,
            handle=user.handle,
            address=f"{user.handle}@payflow",
            role=user.role.value,
            created_at=to_rfc3339(user.created_at),
        )


class ApiKeyBody(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]


class ApiKeyOut(StrictModel):
    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str
    created_at: str
    revoked_at: str | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret key. Shown once: store it now.")
