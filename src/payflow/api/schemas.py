"""Request/response building blocks shared by every route: strict types, pages, ids."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from payflow.errors import PayFlowError
from payflow.ids import parse_public_id
from payflow.ledger import Cursor
from payflow.money import AMOUNT_MAX


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused; no coercion (a float, string or bool
    where an integer amount belongs is a 422, never silently converted).
    """

    model_config = ConfigDict(extra="forbid", strict=True)


Amount = Annotated[
    int,
    Field(strict=True, ge=1, le=AMOUNT_MAX, description="Integer minor units (paise for INR)"),
]
Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code", examples=["INR"])
]
Note = Annotated[str, Field(min_length=1, max_length=140)]
Limit = Annotated[int, Field(ge=1, le=100)]


class Page(BaseModel):
    data: list[dict[str, Any]]
    next_cursor: str | None = Field(
        description="Pass as `after` for the next page; null at the end"
    )


def page(data: list[dict[str, Any]], cursor: Cursor | None) -> dict[str, Any]:
    return {"data": data, "next_cursor": cursor.encode() if cursor is not None else None}


def parse_cursor(after: str | None) -> Cursor | None:
    if after is None:
        return None
    return Cursor.decode(after)


def parse_id(prefix: str, text: str, *, not_found: str) -> uuid.UUID:
    """A public id from the path; a malformed one is simply not found (404)."""
    try:
        return parse_public_id(prefix, text)
    except PayFlowError:
        raise PayFlowError(not_found, f"no such {prefix} {text!r}", http_status=404) from None
