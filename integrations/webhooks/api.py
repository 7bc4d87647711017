"""``GET /api/v1/webhook-events``: the provider events routed to the caller's connections.

Organisation-scoped: an event shows when it was routed to one of the organisation's
connections (an unrouted event belongs to nobody yet). Newest first, keyset-paginated.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest
from ninja import Query, Router
from pydantic import BaseModel, Field

from accounts.auth import principal_of
from core.envelope import Envelope, PaginationMeta, api_responses, ok
from core.pagination import BIGINT_MAX, decode_cursor, encode_cursor, invalid_cursor

from ..models import Connection, WebhookEvent

router = Router(tags=["webhooks"])

StatusName = Literal["received", "processed", "unrouted", "ignored", "failed"]


class WebhookEventOut(BaseModel):
    id: int
    provider: str
    event_id: str = Field(description="HubSpot: `<portalId>:<eventId>`.")
    external_account_id: str = Field(description="The provider account (HubSpot portal id).")
    subscription_type: str
    object_type: str
    object_id: str
    occurred_at: datetime | None
    status: StatusName
    attempts: int
    error: str = Field(description="Why processing failed, for your connections.")
    connection_ids: list[uuid.UUID] = Field(description="Your connections it was routed to.")
    payload: dict[str, Any] = Field(description="The event as the provider sent it.")
    received_at: datetime
    processed_at: datetime | None

    @classmethod
    def of(cls, event: WebhookEvent) -> WebhookEventOut:
        mine = [c.pk for c in event.connections.all()]  # prefetched: this org's only
        own = {str(pk) for pk in mine}
        # Error lines about another organisation's connection (same portal) are not ours.
        lines = [
            line
            for line in event.error.splitlines()
            if not line.startswith("connection ") or line.split(":")[0][11:] in own
        ]
        return cls(
            id=event.pk,
            provider=event.provider,
            event_id=event.event_id,
            external_account_id=event.external_account_id,
            subscription_type=event.subscription_type,
            object_type=event.object_type,
            object_id=event.object_id,
            occurred_at=event.occurred_at,
            status=event.status,  # type: ignore[arg-type]
            attempts=event.attempts,
            error="\n".join(lines),
            connection_ids=mine,
            payload=event.payload if isinstance(event.payload, dict) else {},
            received_at=event.received_at,
            processed_at=event.processed_at,
        )


class EventParams(BaseModel):
    status: StatusName | None = None
    subscription_type: str | None = Field(None, max_length=100, examples=["contact.creation"])
    connection_id: uuid.UUID | None = None
    object_id: str | None = Field(None, max_length=64)
    limit: int = Field(50, ge=1, le=200, description="Rows per page (1-200).")
    cursor: str | None = Field(
        None, description="`meta.pagination.next_cursor` of the previous page."
    )


def webhook_event_list(
    *, organization_id: uuid.UUID, connection_id: uuid.UUID | None = None
) -> QuerySet[WebhookEvent]:
    """Events routed to the organisation's connections (each once), with only those
    connections prefetched."""
    links = WebhookEvent.connections.through.objects.filter(
        connection__organization_id=organization_id
    )
    if connection_id is not None:
        links = links.filter(connection_id=connection_id)
    return WebhookEvent.objects.filter(pk__in=links.values("webhookevent_id")).prefetch_related(
        Prefetch(
            "connections",
            queryset=Connection.objects.filter(organization_id=organization_id).only("id"),
        )
    )


@router.get(
    "/webhook-events",
    response=api_responses(Envelope[list[WebhookEventOut]]),
    summary="Provider webhook events routed to your connections (newest first)",
)
async def webhook_events_list(
    request: HttpRequest, params: Query[EventParams]
) -> Envelope[list[WebhookEventOut]]:
    p = principal_of(request)
    query = webhook_event_list(
        organization_id=p.organization_id, connection_id=params.connection_id
    )
    if params.status is not None:
        query = query.filter(status=params.status)
    if params.subscription_type:
        query = query.filter(subscription_type=params.subscription_type)
    if params.object_id:
        query = query.filter(object_id=params.object_id)
    if params.cursor is not None:
        received_at, pk = decode_cursor(params.cursor)
        if not (pk.isascii() and pk.isdigit() and int(pk) <= BIGINT_MAX):  # a bigint row id
            raise invalid_cursor()
        query = query.filter(
            Q(received_at__lt=received_at) | Q(received_at=received_at, pk__lt=int(pk))
        )
    rows = [e async for e in query.order_by("-received_at", "-pk")[: params.limit + 1]]
    has_more = len(rows) > params.limit
    rows = rows[: params.limit]
    next_cursor = encode_cursor(rows[-1].received_at, rows[-1].pk) if has_more and rows else None
    meta = PaginationMeta(limit=params.limit, next_cursor=next_cursor, has_more=has_more)
    return ok([WebhookEventOut.of(e) for e in rows], pagination=meta)
