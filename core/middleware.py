"""Our middleware: natively async (and sync for the test client), never a thread hop."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from core.context import organization_id_var, request_id_var, user_id_var
from core.envelope import error_response
from core.errors import ErrorCode, code_for_status

API_PREFIX = "/api/"
request_logger = logging.getLogger("switchboard.request")
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

GetResponse = Callable[[HttpRequest], Any]
_CONTEXT_VARS: tuple[ContextVar[str | None], ...] = (
    request_id_var,
    organization_id_var,
    user_id_var,
)


def _request_id(request: HttpRequest) -> str:
    # A caller's id is kept when it is safe to echo into logs and headers.
    incoming = request.headers.get("X-Request-ID", "")
    return incoming if _CLIENT_REQUEST_ID.match(incoming) else uuid.uuid4().hex


def _begin(request: HttpRequest) -> tuple[float, list[Token[str | None]]]:
    request_id = _request_id(request)
    request.request_id = request_id  # type: ignore[attr-defined]
    tokens = [request_id_var.set(request_id), organization_id_var.set(None), user_id_var.set(None)]
    return time.perf_counter(), tokens


def _end(
    request: HttpRequest,
    response: HttpResponseBase,
    started: float,
    tokens: list[Token[str | None]],
) -> HttpResponseBase:
    response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
    # One structured line per request (uvicorn's own access log is off): the query string is
    # left out, it may carry tokens. The caller is read from request.auth: context variables
    # set inside the view do not always travel back out through sync/async boundaries.
    principal = getattr(request, "auth", None)
    if principal is not None:
        organization_id_var.set(str(getattr(principal, "organization_id", "")) or None)
        user_id = getattr(principal, "user_id", None)
        user_id_var.set(str(user_id) if user_id else None)
    request_logger.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    for var, token in zip(_CONTEXT_VARS, tokens, strict=True):
        var.reset(token)
    return response


@sync_and_async_middleware
def request_context_middleware(get_response: GetResponse) -> GetResponse:
    """Give every request an id (``X-Request-ID`` on every response) and a fresh log context."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            started, tokens = _begin(request)
            return _end(request, await get_response(request), started, tokens)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        started, tokens = _begin(request)
        return _end(request, get_response(request), started, tokens)

    return middleware


def _as_envelope(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """Re-shape an error that left the API without the envelope (Django's 400/403, Ninja's 405)."""
    if (
        not request.path.startswith(API_PREFIX)
        or response.status_code < 400
        or response.get("Content-Type", "").startswith("application/json")
    ):
        return response
    status = response.status_code
    code = code_for_status(status)
    details: dict[str, object] = {}
    headers: dict[str, str] = {}
    if code is ErrorCode.METHOD_NOT_ALLOWED and response.has_header("Allow"):
        headers["Allow"] = response["Allow"]
        details["allowed_methods"] = [m.strip() for m in response["Allow"].split(",")]
        message = f"Method {request.method} is not allowed here."
    else:
        message = {
            400: "The request could not be understood.",
            403: "Forbidden.",
            404: f"No API route matches {request.method} {request.path}.",
            413: "The request body is too large.",
        }.get(status, "The request failed.")
    return error_response(code, message, status=status, details=details, headers=headers)


@sync_and_async_middleware
def api_envelope_middleware(get_response: GetResponse) -> GetResponse:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            return _as_envelope(request, await get_response(request))

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return _as_envelope(request, get_response(request))

    return middleware
