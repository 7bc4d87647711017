"""HubSpot failures in Switchboard's error vocabulary.

Two kinds of failure reach this module: an answer outside 2xx (``HttpFailure``: status,
parsed body, headers) and no usable answer at all (``NoAnswer``: timeout, refused connection,
TLS failure). Both come from the SDK (``ApiException``, urllib3 errors) or from httpx; the
transport converts them, and ``error_for_answer`` / ``error_for_no_answer`` name the
``AppError``. Messages and details carry HubSpot's own words and ids, never tokens, URLs
or headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import urllib3
from pydantic import ValidationError

import hubspot.crm.associations.v4 as sdk_associations
import hubspot.crm.objects as sdk_objects
import hubspot.oauth as sdk_oauth
from core.errors import (
    AppError,
    Conflict,
    NotFound,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    ValidationFailed,
)

from ..answers import NoAnswer, Unreadable, parse_body
from .wire import HubSpotError

# Each generated SDK package has its own ApiException class.
SDK_API_EXCEPTIONS: Final[tuple[type[Exception], ...]] = (
    sdk_objects.ApiException,
    sdk_associations.ApiException,
    sdk_oauth.ApiException,
)

PROPERTY_VALUES_PREFIX: Final = "Property values were not valid: "

# With no rate-limit header to go by, wait out HubSpot's ten-second window.
DEFAULT_RETRY_AFTER_SECONDS: Final = 10.0


class HttpFailure(Exception):
    """HubSpot answered outside 2xx."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        self.status = status
        self.body = body
        self.headers = {k.lower(): v for k, v in headers.items()}
        super().__init__(f"HubSpot answered {status}")


def from_sdk_exception(exc: BaseException) -> HttpFailure | NoAnswer | Unreadable | None:
    """The SDK's exception as one of ours; ``None`` when it is none of them (a bug)."""
    if isinstance(exc, SDK_API_EXCEPTIONS):
        status = getattr(exc, "status", None)
        if not status:
            # status 0: the SDK's own failures, a TLS error or a value it could not parse.
            reason = str(getattr(exc, "reason", ""))
            return Unreadable(None) if "parse" in reason else NoAnswer(timed_out=False)
        headers = getattr(exc, "headers", None) or {}
        return HttpFailure(int(status), parse_body(getattr(exc, "body", None)), dict(headers))
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: a refusal, not a timeout.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return NoAnswer(timed_out=False)
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return NoAnswer(timed_out=True)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return NoAnswer(timed_out=False)
    return None


def hubspot_error(body: Any) -> HubSpotError:
    """HubSpot's error body, or an empty one when the body is not HubSpot-shaped."""
    if isinstance(body, dict):
        try:
            return HubSpotError.model_validate(body)
        except ValidationError:
            pass
    return HubSpotError(message=body[:300] if isinstance(body, str) else "")


def field_errors(error: HubSpotError) -> dict[str, str]:
    """``{property: message}`` from HubSpot's validation answer: ``errors[].context
    .propertyName``, or else the JSON list its message embeds ("Property values were not
    valid: [{"name": ..., "message": ...}]"), which is all a batch answer's entries carry."""
    fields: dict[str, str] = {}
    for detail in error.errors:
        for name in _strings(detail.context.get("propertyName")):
            fields.setdefault(name, detail.message or detail.code or "invalid")
    if fields or not error.message.startswith(PROPERTY_VALUES_PREFIX):
        return fields
    embedded = parse_body(error.message[len(PROPERTY_VALUES_PREFIX) :])
    for item in embedded if isinstance(embedded, list) else []:
        if isinstance(item, dict) and item.get("name"):
            fields.setdefault(str(item["name"]), str(item.get("message") or item.get("error")))
    return fields


def retry_after(headers: Mapping[str, str]) -> float:
    """Seconds to wait after a 429: ``Retry-After``, else HubSpot's window length."""
    for name, scale in (("retry-after", 1.0), ("x-hubspot-ratelimit-interval-milliseconds", 1e-3)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return DEFAULT_RETRY_AFTER_SECONDS


def _details(status: int, error: HubSpotError, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"provider": "hubspot", "status": status}
    if error.category:
        details["category"] = error.category
    if error.correlation_id:
        details["correlation_id"] = error.correlation_id
    return details | {k: v for k, v in extra.items() if v is not None}


def error_for_answer(failure: HttpFailure, *, subject: str | None = None) -> AppError:
    """The ``AppError`` for a non-2xx HubSpot answer. ``subject`` names the record (404s)."""
    status, error = failure.status, hubspot_error(failure.body)
    said = error.message.strip()
    if status == 401:
        return ProviderAuthError(
            "HubSpot rejected the connection's access token, also after a refresh.",
            details=_details(status, error),
        )
    if status == 403:
        scopes = [
            s for d in error.errors for s in _strings(d.context.get("requiredGranularScopes"))
        ]
        return ProviderError(
            f"HubSpot refused the call: {said or 'the app lacks a required scope'}",
            details=_details(status, error, required_scopes=scopes or None),
        )
    if status == 404:
        message = f"{subject} was not found in HubSpot." if subject else "Not found in HubSpot."
        return NotFound(message, details=_details(status, error))
    if status == 409:
        return Conflict(f"HubSpot: {said or 'conflict'}", details=_details(status, error))
    if status == 429:
        wait = retry_after(failure.headers)
        return ProviderRateLimited(
            f"HubSpot's rate limit was reached; retry in {wait:g} s.",
            retry_after=wait,
            details=_details(status, error, policy=error.policy_name, retry_after=wait),
        )
    if status >= 500:
        return ProviderUnavailable(
            f"HubSpot is unavailable (HTTP {status}).", details=_details(status, error)
        )
    fields = field_errors(error) if status == 400 else {}
    if status == 400 and (error.category == "VALIDATION_ERROR" or fields):
        named = ", ".join(sorted(fields))
        return ValidationFailed(
            f"HubSpot rejected the values of: {named}."
            if named
            else f"HubSpot: {said or 'the request did not validate'}",
            details=_details(status, error, fields=fields),
        )
    return ProviderError(
        f"HubSpot answered {status}: {said or 'error'}", details=_details(status, error)
    )


def error_for_no_answer(failure: NoAnswer) -> ProviderUnavailable:
    what = "did not answer in time" if failure.timed_out else "could not be reached"
    return ProviderUnavailable(
        f"HubSpot {what}.", details={"provider": "hubspot", "timed_out": failure.timed_out}
    )


def error_for_unreadable(failure: Unreadable) -> ProviderError:
    return ProviderError(
        "HubSpot answered with a body Switchboard could not read.",
        details={"provider": "hubspot", "status": failure.status},
    )


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
