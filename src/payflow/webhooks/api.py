"""HTTP routes for webhook endpoints, their delivery log and replays.

An endpoint belongs to the calling user (a merchant's API key acts for its merchant);
only its owner changes it. Operators may list and read every endpoint and its log.
Another user's endpoint answers as an unknown one does (404): ids cannot be probed.
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.deps import Caller, Conn, State
from payflow.api.problems import responses
from payflow.api.schemas import Limit, parse_cursor, parse_id
from payflow.db import read, run_in_transaction
from payflow.errors import PayFlowError
from payflow.identity.domain import Principal
from payflow.webhooks import catalogue, deliveries, service
from payflow.webhooks.domain import DISABLED, NS_PER_S, Endpoint
from payflow.webhooks.network import parse_allowed, resolve
from payflow.webhooks.schemas import (
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    EndpointBody,
    EndpointCreated,
    EndpointOut,
    EndpointPage,
    EndpointPatch,
    ReplayOut,
    ReplayRangeBody,
    RotateBody,
    SecretOut,
    delivery_view,
    detail_view,
    endpoint_view,
)

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"], responses=responses(401, 429))
After = Annotated[str | None, Query(max_length=100, description="`next_cursor` of the page before")]
_BODY = (400, 413, 422)
NOT_FOUND = "webhook_endpoint_not_found"


def _not_found(endpoint_id: str) -> PayFlowError:
    return PayFlowError(NOT_FOUND, f"no such webhook endpoint {endpoint_id!r}", http_status=404)


def _check_description(description: str | None) -> None:
    if description is not None and any(
        unicodedata.category(c) == "Cc" and c not in "\n\t" for c in description
    ):
        raise PayFlowError(
            "description_invalid",
            "a description has no control characters (other than line breaks and tabs)",
            http_status=422,
        )


async def _check_url(state: State, url: str) -> None:
    # Resolving is a network call: it happens here, before any transaction opens.
    await resolve(url, parse_allowed(state.settings.webhook_allowed_private))


async def _readable(conn: AsyncConnection, principal: Principal, endpoint_id: str) -> Endpoint:
    """The endpoint if the caller owns it or is an operator; else 404."""
    parsed = parse_id("we", endpoint_id, not_found=NOT_FOUND)
    owner = None if principal.is_operator else principal.user_id
    found = await service.get_endpoint(conn, parsed, owner_id=owner)
    if found is None:
        raise _not_found(endpoint_id)
    return found


async def _owned(state: State, principal: Principal, endpoint_id: str) -> uuid.UUID:
    """The id of an endpoint the caller owns: others' are 404, also to operators (403)."""
    parsed = parse_id("we", endpoint_id, not_found=NOT_FOUND)
    async with read(state.engine) as conn:
        found = await service.get_endpoint(conn, parsed, owner_id=None)
    if found is None or (found.owner_id != principal.user_id and not principal.is_operator):
        raise _not_found(endpoint_id)
    if found.owner_id != principal.user_id:
        raise PayFlowError(
            "forbidden",
            "operators read other users' endpoints but do not change them",
            http_status=403,
        )
    return parsed


@router.post("", status_code=201, responses=responses(*_BODY, 409))
async def create_endpoint(body: EndpointBody, principal: Caller, state: State) -> EndpointCreated:
    """A new endpoint for the caller's events; the answer shows its signing secret, once."""
    event_types = catalogue.normalize(body.event_types)
    _check_description(body.description)
    await _check_url(state, body.url)

    async def work(conn: AsyncConnection) -> Endpoint:
        return await service.create_endpoint(
            conn,
            owner_id=principal.user_id,
            url=body.url,
            event_types=event_types,
            description=body.description,
            endpoints_max=state.settings.webhook_endpoints_per_owner_max,
        )

    endpoint = await run_in_transaction(state.engine, work)
    return EndpointCreated(**endpoint_view(endpoint), secret=endpoint.secret)


@router.get("", responses=responses(422))
async def list_endpoints(
    principal: Caller, conn: Conn, after: After = None, limit: Annotated[Limit, Query()] = 50
) -> EndpointPage:
    """The caller's endpoints, newest first (an operator's list has everybody's)."""
    owner = None if principal.is_operator else principal.user_id
    found, cursor = await service.list_endpoints(
        conn, owner_id=owner, limit=limit, after=parse_cursor(after)
    )
    return EndpointPage(
        data=[EndpointOut(**endpoint_view(e)) for e in found],
        next_cursor=cursor.encode() if cursor is not None else None,
    )


@router.get("/{endpoint_id}", responses=responses(404))
async def get_endpoint(endpoint_id: str, principal: Caller, conn: Conn) -> EndpointOut:
    """One endpoint (never its secret)."""
    return EndpointOut(**endpoint_view(await _readable(conn, principal, endpoint_id)))


@router.patch("/{endpoint_id}", responses=responses(*_BODY, 403, 404))
async def update_endpoint(
    endpoint_id: str, body: EndpointPatch, principal: Caller, state: State
) -> EndpointOut:
    """Change the URL, event types or description; `enabled: true` enables a disabled
    endpoint again (failed deliveries are not re-sent by that: replay them)."""
    given = body.model_fields_set
    if not given:
        raise PayFlowError("patch_empty", "give at least one field to change", http_status=422)
    for name in ("url", "event_types", "enabled"):
        if name in given and getattr(body, name) is None:
            raise PayFlowError("validation_error", f"`{name}` cannot be null", http_status=422)
    changes = body.model_dump(include=given)
    if body.event_types is not None:
        changes["event_types"] = catalogue.normalize(body.event_types)
    _check_description(body.description)
    parsed = await _owned(state, principal, endpoint_id)
    if body.url is not None:
        await _check_url(state, body.url)

    async def work(conn: AsyncConnection) -> Endpoint | None:
        return await service.update_endpoint(
            conn, parsed, owner_id=principal.user_id, changes=changes
        )

    endpoint = await run_in_transaction(state.engine, work)
    if endpoint is None:
        raise _not_found(endpoint_id)
    return EndpointOut(**endpoint_view(endpoint))


@router.delete("/{endpoint_id}", status_code=204, responses=responses(403, 404))
async def delete_endpoint(endpoint_id: str, principal: Caller, state: State) -> Response:
    """Delete the endpoint; what was still pending for it is cancelled."""
    parsed = await _owned(state, principal, endpoint_id)

    async def work(conn: AsyncConnection) -> bool:
        return await service.delete_endpoint(conn, parsed, owner_id=principal.user_id)

    if not await run_in_transaction(state.engine, work):
        raise _not_found(endpoint_id)
    return Response(status_code=204)


@router.post("/{endpoint_id}/secret/rotate", responses=responses(*_BODY, 403, 404))
async def rotate_secret(
    endpoint_id: str, principal: Caller, state: State, body: RotateBody | None = None
) -> SecretOut:
    """A new signing secret, shown once. For `overlap_s` (default a day) deliveries
    carry signatures by both the old and the new secret; then only the new one's."""
    overlap_s = (body or RotateBody()).overlap_s
    parsed = await _owned(state, principal, endpoint_id)

    async def work(conn: AsyncConnection) -> Endpoint | None:
        return await service.rotate_secret(
            conn, parsed, owner_id=principal.user_id, overlap_s=overlap_s
        )

    endpoint = await run_in_transaction(state.engine, work)
    if endpoint is None:
        raise _not_found(endpoint_id)
    view = endpoint_view(endpoint)
    return SecretOut(
        endpoint_id=view["id"],
        object="webhook_secret",
        secret=endpoint.secret,
        previous_secret_expires_at=view["previous_secret_expires_at"],
    )


@router.get("/{endpoint_id}/deliveries", responses=responses(404, 422))
async def list_deliveries(
    endpoint_id: str,
    principal: Caller,
    conn: Conn,
    after: After = None,
    limit: Annotated[Limit, Query()] = 50,
    status: Annotated[
        Literal["pending", "delivered", "failed", "cancelled"] | None, Query()
    ] = None,
    event_type: Annotated[str | None, Query(max_length=64)] = None,
) -> DeliveryPage:
    """The endpoint's deliveries, newest first; perhaps of one status or event type."""
    if event_type is not None and event_type not in catalogue.EVENT_TYPES:
        raise PayFlowError(
            "event_type_unknown", f"{event_type!r} is not in the catalogue", http_status=422
        )
    endpoint = await _readable(conn, principal, endpoint_id)
    found, cursor = await deliveries.list_deliveries(
        conn,
        endpoint.id,
        status=status,
        event_type=event_type,
        limit=limit,
        after=parse_cursor(after),
    )
    return DeliveryPage(
        data=[DeliveryOut(**delivery_view(d)) for d in found],
        next_cursor=cursor.encode() if cursor is not None else None,
    )


@router.get("/{endpoint_id}/deliveries/{delivery_id}", responses=responses(404))
async def get_delivery(
    endpoint_id: str, delivery_id: str, principal: Caller, conn: Conn
) -> DeliveryDetail:
    """One delivery: its payload and its attempts, newest first."""
    endpoint = await _readable(conn, principal, endpoint_id)
    parsed = parse_id("msg", delivery_id, not_found="delivery_not_found")
    found = await deliveries.get_delivery(conn, endpoint.id, parsed)
    if found is None:
        raise PayFlowError(
            "delivery_not_found", f"no such delivery {delivery_id!r}", http_status=404
        )
    delivery, payload = found
    attempts = await deliveries.list_attempts(conn, delivery.id)
    return DeliveryDetail(**detail_view(delivery, payload, attempts))


async def _replayable(state: State, principal: Principal, endpoint_id: str) -> uuid.UUID:
    parsed = await _owned(state, principal, endpoint_id)
    async with read(state.engine) as conn:
        endpoint = await service.get_endpoint(conn, parsed, owner_id=principal.user_id)
    if endpoint is not None and endpoint.status == DISABLED:
        raise PayFlowError(
            "endpoint_disabled", "enable the endpoint (PATCH enabled: true) first", http_status=409
        )
    return parsed


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    responses=responses(403, 404, 409),
)
async def replay_delivery(
    endpoint_id: str, delivery_id: str, principal: Caller, state: State
) -> DeliveryOut:
    """Send one delivery again, now, with the same `webhook-id` (receivers de-duplicate)."""
    parsed = await _replayable(state, principal, endpoint_id)
    message = parse_id("msg", delivery_id, not_found="delivery_not_found")
    found = await run_in_transaction(
        state.engine, lambda conn: deliveries.replay(conn, parsed, message)
    )
    if found is None:
        raise PayFlowError(
            "delivery_not_found", f"no such delivery {delivery_id!r}", http_status=404
        )
    return DeliveryOut(**delivery_view(found))


def _instant(name: str, text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise PayFlowError(
            "timestamp_invalid",
            f"`{name}` must be an RFC 3339 time with a time zone, e.g. 2026-11-22T02:30:00Z",
            http_status=422,
        )
    return int(moment.timestamp()) * NS_PER_S + moment.microsecond * 1000


@router.post("/{endpoint_id}/replay", status_code=202, responses=responses(*_BODY, 403, 404, 409))
async def replay_range(
    endpoint_id: str, body: ReplayRangeBody, principal: Caller, state: State
) -> ReplayOut:
    """Send again every delivery of the endpoint whose event occurred from `since` up to
    (not including) `until`, with their own `webhook-id`s. At most
    `webhook_replay_max` at once; a larger range is refused and nothing is replayed."""
    since, until = _instant("since", body.since), _instant("until", body.until)
    if since >= until:
        raise PayFlowError("range_invalid", "`since` must be before `until`", http_status=422)
    parsed = await _replayable(state, principal, endpoint_id)
    count = await run_in_transaction(
        state.engine,
        lambda conn: deliveries.replay_range(
            conn, parsed, since=since, until=until, count_max=state.settings.webhook_replay_max
        ),
    )
    return ReplayOut(replayed=count)
