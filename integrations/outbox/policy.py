"""The outbox's rules, no I/O: backoff, what counts as uncertain, the write-id property, and a
stored error brought back as the ``AppError`` it was.

Backoff is tenacity's ``wait_random_exponential`` (AWS's "full jitter": a uniform wait in
``[0, min(cap, base * 2^(attempt-1))]``), never shorter than the provider's ``Retry-After``.
"""

from __future__ import annotations

from typing import Any, Final

from django.conf import settings
from tenacity import RetryCallState, Retrying, wait_random_exponential

from core.errors import (
    AppError,
    BadRequest,
    Conflict,
    ErrorCode,
    NotFound,
    PermissionDenied,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    ServiceUnavailable,
    ValidationFailed,
)

from ..providers.unified import WritableType

# Answers from a gateway that lost the origin's answer: the write may have happened.
GATEWAY_STATUSES: Final = frozenset({502, 504})

# Natural keys an uncertain create is looked up by (unified fields of the payload).
NATURAL_KEYS: Final[dict[WritableType, str]] = {"contact": "email", "company": "domain"}

# Objects that cannot carry the write-id property: Salesforce's classic Note takes no custom
# fields. Their uncertain creates cannot be looked up, so they are dead-lettered for a person.
NO_WRITE_ID: Final = frozenset({("salesforce", "note")})

# The error class for each code a stored error can carry (provider flavours first).
_ERROR_CLASSES: Final[dict[str, type[AppError]]] = {
    cls.code.value: cls
    for cls in (
        BadRequest,
        PermissionDenied,
        NotFound,
        Conflict,
        ValidationFailed,
        ServiceUnavailable,
        ProviderError,
        ProviderUnavailable,
        ProviderRateLimited,
        ProviderAuthError,
    )
}


def backoff_seconds(attempt: int, *, retry_after: float | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: full-jitter exponential backoff after the
    ``attempt``-th failure, at least ``retry_after`` when the provider said so."""
    wait = wait_random_exponential(
        multiplier=settings.OUTBOX_BACKOFF_BASE_SECONDS, max=settings.OUTBOX_BACKOFF_MAX_SECONDS
    )
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = max(1, attempt)
    return max(float(retry_after or 0.0), float(wait(state)))


def is_uncertain(code: str, details: dict[str, Any]) -> bool:
    """Whether a failed attempt may still have been applied: no answer came back (timeout,
    connection dropped: the client reports ``timed_out``), or a gateway answered for it."""
    if details.get("uncertain") is True:  # we could not tell (e.g. an unmatched batch answer)
        return True
    if code != ErrorCode.PROVIDER_UNAVAILABLE:
        return False
    return "timed_out" in details or details.get("status") in GATEWAY_STATUSES


def is_retryable(code: str) -> bool:
    return code in (
        ErrorCode.RATE_LIMITED,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.SERVICE_UNAVAILABLE,
    )


def write_id_property(provider: str, object_type: str | None = None) -> str:
    """The provider field every create is stamped with (``PROVIDERS[key]
    ["write_id_property"]``); empty when this installation has none, or when
    ``object_type`` cannot carry it (``NO_WRITE_ID``)."""
    if (provider, object_type) in NO_WRITE_ID:
        return ""
    raw: dict[str, str] = settings.PROVIDERS.get(provider, {})
    return str(raw.get("write_id_property", "")).strip()


def stored_error(error: AppError) -> dict[str, Any]:
    """An error as kept in ``CrmWrite.result`` (what the caller was, or will be, answered)."""
    details = dict(error.details)
    if error.retry_after is not None:
        details.setdefault("retry_after", error.retry_after)
    return {"code": error.code.value, "message": error.message, "details": details}


def error_from(stored: dict[str, Any] | None, *, code: str, message: str) -> AppError:
    """The ``AppError`` a stored error was (the right class, so the same HTTP status)."""
    stored = stored or {}
    code = str(stored.get("code") or code)
    cls = _ERROR_CLASSES.get(code, ProviderError)
    details = stored.get("details")
    error = cls(str(stored.get("message") or message), details=dict(details or {}))
    return error
