"""The one response envelope of ``/api/v1`` and the only place it is assembled.

``{"success": bool, "data": ..., "error": {"code", "message", "details"} | null, "meta": {...}}``

Views return ``ok(...)``; every failure (ours, Ninja's, Django's) leaves through
``error_response(...)``. ``api_responses`` documents both shapes in OpenAPI.
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

import orjson
from django.http import HttpResponse
from pydantic import BaseModel, Field

from core.context import current_request_id
from core.errors import AppError, ErrorCode

T = TypeVar("T")

# Every status an operation may answer with besides its success status; documented on every
# operation so clients (and schema checkers) know the error shape.
ERROR_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 503})
# ...and where an operation calls the provider, 502 ``provider_error``: it answered, but not with
# anything usable (a refusal for a missing scope, an unreadable body).
PROVIDER_ERROR_STATUSES = ERROR_STATUSES | {502}


class ErrorBody(BaseModel):
    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class PaginationMeta(BaseModel):
    limit: int
    offset: int | None = None
    next_cursor: str | None = None
    has_more: bool
    total: int | None = None


class Meta(BaseModel):
    request_id: str | None = None
    pagination: PaginationMeta | None = None


class Envelope(BaseModel, Generic[T]):
    success: bool
    data: T | None
    error: ErrorBody | None
    meta: Meta | None


class ErrorEnvelope(BaseModel):
    success: bool = False
    data: Any = None
    error: ErrorBody
    meta: Meta | None


def ok(data: T, *, pagination: PaginationMeta | None = None) -> Envelope[T]:
    return Envelope[T](
        success=True,
        data=data,
        error=None,
        meta=Meta(request_id=current_request_id(), pagination=pagination),
    )


def error_payload(
    code: ErrorCode, message: str, details: dict[str, Any] | None = None, data: Any = None
) -> dict[str, Any]:
    return {
        "success": False,
        "data": data,
        "error": {"code": code.value, "message": message, "details": details or {}},
        "meta": {"request_id": current_request_id(), "pagination": None},
    }


def json_response(payload: Any, *, status: int) -> HttpResponse:
    return HttpResponse(
        orjson.dumps(payload, default=str), status=status, content_type="application/json"
    )


def error_response(
    code: ErrorCode,
    message: str,
    *,
    status: int,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    data: Any = None,
) -> HttpResponse:
    response = json_response(error_payload(code, message, details, data), status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def app_error_response(error: AppError) -> HttpResponse:
    headers = {}
    if error.retry_after is not None:
        # Whole seconds, rounded up: a wait of 1.4 s said as "1" sends the caller back too early.
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return error_response(
        error.code, error.message, status=error.status, details=error.details, headers=headers
    )


def api_responses(schema: Any, status: int = 200, *, provider: bool = False) -> dict[Any, Any]:
    """The ``response=`` mapping for a Ninja operation: its success envelope and the errors
    (``provider``: the operation calls the CRM, so 502 ``provider_error`` too)."""
    errors = PROVIDER_ERROR_STATUSES if provider else ERROR_STATUSES
    return {status: schema, errors - {status}: ErrorEnvelope}
