"""The one NinjaAPI (``/api/v1``): routers, authentication, throttles, and the mapping of
every exception to the envelope (see core.envelope)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.openapi.schema import OpenAPISchema

from accounts.api import router as accounts_router
from accounts.auth import ApiKeyAuth, SessionAuth
from core.api import router as core_router
from core.context import current_request_id
from core.envelope import app_error_response, error_response
from core.errors import AppError, ErrorCode, code_for_status
from core.renderers import OrjsonRenderer
from core.throttling import AnonThrottle, CallerThrottle
from integrations.api import router as integrations_router
from integrations.outbox.api import router as writes_router
from integrations.sync.api import router as sync_router
from integrations.webhooks.api import router as webhooks_router
from workflows.api import router as workflows_router

logger = logging.getLogger("switchboard.api")


class SwitchboardAPI(NinjaAPI):
    """The schema is built once per root path: Ninja rebuilds it (seconds of work over every
    operation's models) on each request for ``/openapi.json`` otherwise."""

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        cache: dict[str, OpenAPISchema] = self.__dict__.setdefault("_schemas", {})
        if path_prefix not in cache:
            cache[path_prefix] = super().get_openapi_schema(path_prefix=path_prefix)
        return cache[path_prefix]


api = SwitchboardAPI(
    title="Switchboard API",
    version="1",
    description=(
        "Every answer is one envelope: `{success, data, error: {code, message, details}, meta}`. "
        "Authenticate with `Authorization: Bearer <api key>` or a signed-in browser session "
        "(send the CSRF token on unsafe methods)."
    ),
    urls_namespace="api",
    renderer=OrjsonRenderer(),
    auth=[ApiKeyAuth(), SessionAuth()],
    throttle=[
        AnonThrottle(settings.API_THROTTLE_ANON_RATE),
        CallerThrottle(settings.API_THROTTLE_AUTH_RATE),
    ],
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_router("/", core_router)
api.add_router("/", accounts_router)
api.add_router("/", integrations_router)
api.add_router("/", writes_router)
api.add_router("/", sync_router)
api.add_router("/", webhooks_router)
api.add_router("/", workflows_router)


@api.exception_handler(AppError)
def _app_error(request: HttpRequest, exc: AppError) -> HttpResponse:
    return app_error_response(exc)


def _location(loc: Any) -> list[Any]:
    # Ninja reports ["body", <view argument name>, field...]; callers know no argument names.
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "body":
        del parts[1]
    return parts


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    # Only where and why: Pydantic's "input" would echo the request back, secrets included.
    errors = [
        {"loc": _location(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors
    ]
    return error_response(
        ErrorCode.VALIDATION_FAILED,
        "The request did not validate.",
        status=422,
        details={"errors": errors},
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    status = exc.status_code
    message = str(exc)
    headers: dict[str, str] = {}
    code = code_for_status(status)
    if isinstance(exc, AuthenticationError):
        message = "Authentication required: send 'Authorization: Bearer <api key>'."
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, Throttled):
        message = "Too many requests; slow down."
        if exc.wait is not None:
            headers["Retry-After"] = str(max(1, round(exc.wait)))
    elif status == 400 and message.startswith("Cannot parse request body"):
        code, message = ErrorCode.MALFORMED_JSON, "The request body is not valid JSON."
    elif status == 403 and "CSRF" in message:
        code, message = ErrorCode.CSRF_FAILED, "CSRF check failed: send the X-CSRFToken header."
    return error_response(code, message, status=status, headers=headers)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(ErrorCode.NOT_FOUND, "Not found.", status=404)


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"The request body is larger than {limit} bytes.",
        status=413,
        details={"limit_bytes": limit},
    )


@api.exception_handler(SuspiciousOperation)
def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    return error_response(ErrorCode.BAD_REQUEST, "The request could not be understood.", status=400)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled exception in %s %s", request.method, request.path)
    return error_response(
        ErrorCode.INTERNAL_ERROR,
        f"Internal error. Quote request id {current_request_id()} when reporting it.",
        status=500,
    )
