"""``POST /webhooks/<provider>``: where providers deliver events (HubSpot today).

In order, each step answering in the API's envelope when it fails: only POST (405), a body no
larger than ``WEBHOOK_MAX_BODY_BYTES`` (413), the provider's signature over the raw body
(401 ``signature_invalid``: forged, missing or older than five minutes), JSON (400), the
delivery's shape (422). Only then is anything stored; the answer is 200 as soon as the events
are committed, routing and fetching happen in a Celery task. Nothing here needs a session or a
CSRF token: the signature is the authentication.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ValidationError

from core.envelope import app_error_response, error_response, json_response, ok
from core.errors import ErrorCode, NotFound

from ..providers.registry import get_provider
from . import hubspot
from .service import IncomingEvent, webhook_store
from .verify import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureInvalid, verify_v3

logger = logging.getLogger("switchboard.webhooks")

PROVIDERS = frozenset({hubspot.PROVIDER})


class DeliveryOut(BaseModel):
    received: int
    stored: int
    duplicates: int


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
    try:
        body = request.body
    except RequestDataTooBig:
        return _too_large(min(limit, settings.DATA_UPLOAD_MAX_MEMORY_SIZE))
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
    try:
        events = hubspot.DELIVERY.validate_python(data)
    except ValidationError as exc:
        # Where and why only: never echo the submitted values back.
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:20]
        ]
        return error_response(
            ErrorCode.VALIDATION_FAILED,
            "The delivery is not a JSON array of events.",
            status=422,
            details={"errors": errors},
        )

    incoming = [_incoming(event, raw) for event, raw in zip(events, data, strict=True)]
    stored = await sync_to_async(webhook_store)(provider=provider, events=incoming)
    out = DeliveryOut(received=stored.received, stored=stored.stored, duplicates=stored.duplicates)
    return json_response(ok(out).model_dump(mode="json"), status=200)
