"""Request/response building blocks shared by every route: strict types, pages, ids."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from payflow.api.idempotency import KEY_LENGTH_MAX
from payflow.api.problems import responses
from payflow.errors import PayFlowError
from payflow.ids import parse_public_id
from payflow.ledger import Cursor
from payflow.money import AMOUNT_MAX


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused; no coercion (a float, string or bool
    where an integer amount belongs is a 422, never silently converted).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # JSON can carry a NUL ("\u0000") that PostgreSQL text cannot store: refuse it
        # here (a 422) rather than fail (a 500) when the text reaches the database.
        # (Pydantic already refuses lone surrogates, which UTF-8 cannot encode.)
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        return value


Amount = Annotated[
    int,
    Field(strict=True, ge=1, le=AMOUNT_MAX, description="Integer minor units (paise for INR)"),
]
Currency = Annotated[
    str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code", examples=["INR"])
]
Note = Annotated[str, Field(min_length=1, max_length=140)]
Limit = Annotated[int, Field(ge=1, le=100)]


def idempotent() -> dict[str, Any]:
    """`openapi_extra` for a money-moving POST: the `Idempotency-Key` header it requires.

    Documented here rather than as a `Header()` parameter so that a missing key stays our
    400 `idempotency_key_missing` (a required `Header()` would make it FastAPI's 422).
    """
    return {
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "A unique key per intended effect, e.g. a UUID. A retry with "
                "the same key and body replays the first response (`Idempotent-Replayed: "
                "true`); the same key with another body is a 422; kept at least 24 h.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": KEY_LENGTH_MAX,
                    "pattern": "^[!-~]([ -~]*[!-~])?$",
                    "examples": ["5f0c2a4e-7d7b-4c36-9a55-3b0e7e1f0c11"],
                },
            }
        ]
    }


def money_moving(model: type[BaseModel], status: int = 201) -> dict[str, Any]:
    """Route arguments for a money-moving POST answering `status` with `model`.

    These routes return the reply (or its replay) as a `Response` themselves, so the
    success body is declared here, with the Idempotency-Key header and every problem the
    idempotency and ledger path can answer with (400 missing/invalid key or bad JSON,
    404 unknown wallet/recipient/hold, 409 key in flight or hold no longer held, 413,
    422 invalid or refused by the ledger, 503 overloaded or shutting down).
    """
    return {
        "status_code": status,
        "response_class": JSONResponse,
        "responses": {
            status: {"model": model, "description": "Done (or the replay of an earlier reply)"},
            **responses(400, 401, 404, 409, 413, 422, 429, 503),
        },
        "openapi_extra": idempotent(),
    }


def page(data: list[dict[str, Any]], cursor: Cursor | None) -> dict[str, Any]:
    """A list response: its items and the cursor for the next page (null at the end)."""
    return {"data": data, "next_cursor": cursor.encode() if cursor is not None else None}


def parse_cursor(after: str | None) -> Cursor | None:
    """The `after` query parameter; a malformed cursor is a 422 `cursor_invalid`."""
    return None if after is None else Cursor.decode(after)


def parse_id(prefix: str, text: str, *, not_found: str) -> uuid.UUID:
    """A public id from the path; a malformed one is simply not found (404)."""
    try:
        return parse_public_id(prefix, text)
    except PayFlowError:
        noun = not_found.removesuffix("_not_found").replace("_", " ")
        raise PayFlowError(not_found, f"no such {noun} {text!r}", http_status=404) from None
