"""``POST /webhooks/<provider>``: where providers deliver events (HubSpot today).

In order, each step answering in the API's envelope when it fails: only POST (405), a body no
larger than ``WEBHOOK_MAX_BODY_BYTES`` (413; a declared ``Content-Length`` over the limit is
refused unread, and this view reads at most one byte more than the limit: under ASGI, Django has
spooled the body to a temporary file before any view runs, so stopping a huge body earlier is the
server's job), the provider's signature over the raw body (401 ``signature_invalid``: forged, missing or older than five minutes), JSON (400
``malformed_json``), a JSON array (422). Only then is anything stored; the answer is 200 as soon
as the events are committed, routing and fetching happen in a Celery task. Nothing here needs a
session or a CSRF token: the signature is the authentication.

Partial deliveries. HubSpot resends a whole delivery that is not answered 2xx (up to 10 times,
with backoff), so an authentic delivery is judged event by event, and refused only when nothing
in it can be kept:

- an event of the wrong shape (no ``eventId``, a ``portalId`` that is not an id...) is skipped
  and counted in ``rejected`` (logged with where and why, never its values); the delivery's
  well-formed events are stored as usual. Only a delivery none of whose events is well-formed is
  refused (422), as a retry could not make it better but costs nothing either;
- a delivery none of whose events names a portal any organisation has connected (in any state)
  is refused (404 ``not_found``, the portals in ``details``) and nothing of it is stored: it is
  not ours to apply, and a portal connected later starts with a full read anyway;
- in a delivery that also carries known portals' events, an event of a portal no active
  connection has is stored all the same and never applied: it is ``unrouted`` (visible in the
  admin and the API, replayable once the portal is connected). Refusing the delivery would make
  HubSpot resend its valid events, and a portal cannot be made up: the signature is the app's;
- an event already stored (HubSpot's retry, or a replayed request) is acknowledged as a
  duplicate and applied once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ValidationError

from core.envelope import app_error_response, error_response, json_response, ok
from core.errors import ErrorCode, NotFound

from ..providers.registry import get_provider
from . import hubspot
from .service import IncomingEvent, webhook_known_accounts, webhook_store
from .verify import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureInvalid, verify_v3

logger = logging.getLogger("switchboard.webhooks")

PROVIDERS = frozenset({hubspot.PROVIDER})
MAX_REPORTED_ERRORS = 20


class DeliveryOut(BaseModel):
    received: int
    stored: int
    duplicates: int
    rejected: int = 0  # events of the wrong shape, skipped (see "Partial deliveries")


def _too_large(limit: int) -> HttpResponse:
    return error_response(
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"The request body is larger than {limit} bytes.",
        status=413,
        details={"limit_bytes": limit},
    )


def signed_uris(request: HttpRequest) -> list[str]:
    """The URLs HubSpot may have signed: the configured public URL with this request's path
    and query first, then the URL Django rebuilds from the request (see verify.py)."""
    uris = [f"{settings.PUBLIC_URL}{request.get_full_path()}"]
    with contextlib.suppress(DisallowedHost):
        uris.append(request.build_absolute_uri())
    return uris


def _incoming(event: hubspot.HubSpotEvent, raw: dict[str, Any]) -> IncomingEvent:
    object_type = hubspot.object_type_of(raw) or ""
    object_id = event.object_id if event.object_id is not None else raw.get("fromObjectId")
    return IncomingEvent(
        event_id=event.key(),
        external_account_id=str(event.portal_id),
        subscription_type=event.subscription_type,
        object_type=object_type,
        object_id=str(object_id)[:64] if isinstance(object_id, int | str) else "",
        occurred_at=event.occurred(),
        payload=raw,
    )


def _events(
    data: list[Any],
) -> tuple[list[tuple[hubspot.HubSpotEvent, dict[str, Any]]], list[dict[str, Any]]]:
    """The well-formed events of a delivery (with their raw payloads), and where and why the
    others are not (never their values)."""
    events: list[tuple[hubspot.HubSpotEvent, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    for index, raw in enumerate(data):
        try:
            event = hubspot.HubSpotEvent.model_validate(raw)
        except ValidationError as exc:
            errors += [
                {"loc": [index, *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ]
            continue
        events.append((event, raw))
    return events, errors


@csrf_exempt
async def receive(request: HttpRequest, provider: str) -> HttpResponse:
    if provider not in PROVIDERS:
        return error_response(
            ErrorCode.NOT_FOUND, f"No webhook endpoint for {provider!r}.", status=404
        )
    if request.method != "POST":
        return error_response(
            ErrorCode.METHOD_NOT_ALLOWED,
            f"Method {request.method} is not allowed here.",
            status=405,
            details={"allowed_methods": ["POST"]},
            headers={"Allow": "POST"},
        )

    limit: int = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return error_response(ErrorCode.BAD_REQUEST, "Invalid Content-Length.", status=400)
    if declared > limit:
        return _too_large(limit)
    body = request.read(limit + 1)  # at most one byte more than allowed, to tell
    if len(body) > limit:
        return _too_large(limit)

    try:
        secret = get_provider(provider).config.client_secret
    except NotFound:
        logger.error("webhook received but %s is not configured", provider)
        return error_response(
            ErrorCode.SERVICE_UNAVAILABLE,
            f"Webhooks from {provider} are not configured on this installation.",
            status=503,
        )
    try:
        verify_v3(
            secret=secret,
            method=request.method,
            uris=signed_uris(request),
            body=body,
            signature=request.headers.get(SIGNATURE_HEADER),
            timestamp=request.headers.get(TIMESTAMP_HEADER),
            now_ms=int(time.time() * 1000),
            tolerance_ms=int(settings.WEBHOOK_SIGNATURE_MAX_AGE_SECONDS * 1000),
        )
    except SignatureInvalid as exc:
        logger.warning(
            "webhook rejected: %s",
            exc.details.get("reason"),
            extra={"provider": provider, "reason": exc.details.get("reason")},
        )
        return app_error_response(exc)

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return error_response(
            ErrorCode.MALFORMED_JSON, "The request body is not valid JSON.", status=400
        )
    if not isinstance(data, list):
        return error_response(
            ErrorCode.VALIDATION_FAILED,
            "The delivery is not a JSON array of events.",
            status=422,
            details={
                "errors": [{"loc": [], "msg": "Input should be a valid list", "type": "list_type"}]
            },
        )
    events, errors = _events(data)
    if errors and not events:
        return error_response(
            ErrorCode.VALIDATION_FAILED,
            "No event of the delivery has the shape of an event.",
            status=422,
            details={"errors": errors[:MAX_REPORTED_ERRORS]},
        )
    if errors:
        logger.warning(
            "webhook events rejected",
            extra={
                "provider": provider,
                "rejected": len({e["loc"][0] for e in errors}),
                "errors": errors[:MAX_REPORTED_ERRORS],
            },
        )

    incoming = [_incoming(event, raw) for event, raw in events]
    portals = {e.external_account_id for e in incoming}
    known = await sync_to_async(webhook_known_accounts)(provider=provider, account_ids=portals)
    if not known:
        logger.warning(
            "webhook refused: no connection for its portals",
            extra={"provider": provider, "portals": sorted(portals)[:MAX_REPORTED_ERRORS]},
        )
        return error_response(
            ErrorCode.NOT_FOUND,
            "No connection exists for any portal of this delivery.",
            status=404,
            details={"unknown_portals": sorted(portals)[:MAX_REPORTED_ERRORS]},
        )
    stored = await sync_to_async(webhook_store)(provider=provider, events=incoming)
    out = DeliveryOut(
        received=len(data),
        stored=stored.stored,
        duplicates=stored.duplicates,
        rejected=len(data) - len(events),
    )
    return json_response(ok(out).model_dump(mode="json"), status=200)
