"""The one NinjaAPI (``/api/v1``): routers, authentication, throttles, and the mapping of
every exception to the envelope (see core.envelope)."""

from __future__ import annotations

import logging
import math
import re
from typing import Any, cast

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.openapi.schema import REF_TEMPLATE, OpenAPISchema
from ninja.parser import Parser
from pydantic import BaseModel

from accounts.api import router as accounts_router
from accounts.auth import ApiKeyAuth, SessionAuth
from core.api import router as core_router
from core.context import current_request_id
from core.envelope import app_error_response, error_response
from core.errors import AppError, ErrorCode, ValidationFailed, code_for_status
from core.renderers import OrjsonRenderer
from core.throttling import AnonThrottle, CallerThrottle
from integrations.api import router as integrations_router
from integrations.outbox.api import router as writes_router
from integrations.sync.api import router as sync_router
from integrations.webhooks.api import router as webhooks_router
from workflows.api import EVENT_MODELS
from workflows.api import router as workflows_router

logger = logging.getLogger("switchboard.api")


class SwitchboardAPI(NinjaAPI):
    """The schema is built once per root path: Ninja rebuilds it (seconds of work over every
    operation's models) on each request for ``/openapi.json`` otherwise.

    ``document(*models)`` adds models no operation names as its input or output to the
    schema's components, for descriptions that refer to them (the run event stream's events).
    """

    def document(self, *models: type[BaseModel]) -> None:
        self.__dict__.setdefault("_documented", []).extend(models)
        self.__dict__.pop("_schemas", None)

    def create_temporal_response(self, request: HttpRequest) -> HttpResponse:
        # Ninja calls this for every operation once the caller is authenticated and within
        # its throttles, just before it reads the parameters: the one place to turn away
        # input no parameter may hold, before any of it reaches a query or a provider.
        reject_nul_characters(request)
        return super().create_temporal_response(request)

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        cache: dict[str, OpenAPISchema] = self.__dict__.setdefault("_schemas", {})
        if path_prefix not in cache:
            schema = super().get_openapi_schema(path_prefix=path_prefix)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in self.__dict__.get("_documented", []):
                found = model.model_json_schema(ref_template=REF_TEMPLATE, mode="serialization")
                for name, definition in found.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components.setdefault(model.__name__, found)
            cache[path_prefix] = schema
        return cache[path_prefix]


class StrictJsonParser(Parser):
    """Request bodies as strict JSON (RFC 8259), read by orjson as the answers are written.

    The standard library reader takes ``NaN``, ``Infinity``, ``1e400`` (infinity) and integers
    of any size: none can be stored in PostgreSQL's JSON or written back by orjson, so a body
    holding one failed halfway (a write's request hash, its stored payload, every later list
    of writes). orjson refuses the first three (400 ``malformed_json``) and reads integers it
    could not write back as floats.
    """

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        return cast(dict[str, Any], orjson.loads(request.body))


# A JSON string escape of U+0000 that is not itself an escaped backslash (valid JSON has no
# backslash outside strings, and a raw NUL byte is already malformed JSON).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def reject_nul_characters(request: HttpRequest) -> None:
    """``ValidationFailed`` when the path, the query or a JSON body holds U+0000.

    No text Switchboard stores or filters on may hold it (PostgreSQL refuses it in text and
    JSON, and no CRM field takes it), so it is refused with the request, as a 422 naming where
    it was, rather than failing halfway through a write.
    """
    found: list[str] = []
    if "\x00" in request.path:
        found.append("path")
    if any("\x00" in part for key, values in request.GET.lists() for part in (key, *values)):
        found.append("query")
    if request.method not in ("GET", "HEAD") and _JSON_NUL.search(request.body):
        found.append("body")
    if found:
        raise ValidationFailed(
            "Text in a request may not contain the NUL character (U+0000).",
            details={
                "errors": [
                    {"loc": [where], "msg": "contains U+0000", "type": "nul_character"}
                    for where in found
                ]
            },
        )


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
    parser=StrictJsonParser(),
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
api.document(*EVENT_MODELS)


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
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
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
