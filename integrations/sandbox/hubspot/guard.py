"""What every CRM call goes through before its handler, in HubSpot's order.

Count it; apply injected faults (latency, a 5xx, a held request, a 429); authenticate the bearer
token (401 ``INVALID_AUTHENTICATION`` / ``EXPIRED_AUTHENTICATION``); resolve the object type and
check the token's scopes (403 ``MISSING_SCOPES``); charge the portal's rate limits (429); then run
the handler. Handlers are plain functions run under the sandbox lock, so each call is atomic.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from ..state import SandboxState
from . import errors
from .limits import admit, refusal
from .schema import ObjectSchema, iso_ms, resolve_type
from .state import AccessToken, HubSpotState, PortalData

TYPE_PARAMS = ("object_type", "from_type", "to_type")
NO_BODY = object()


@dataclass
class Call:
    request: Request
    hubspot: HubSpotState
    data: PortalData
    token: AccessToken
    schema: ObjectSchema
    body: Any

    @property
    def hub_id(self) -> int:
        return self.data.portal.hub_id

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query_list(self, name: str) -> list[str]:
        """A list query parameter, repeated (``a=1&a=2``) or comma-separated (``a=1,2``)."""
        values: list[str] = []
        for raw in self.request.query_params.getlist(name):
            values.extend(part.strip() for part in raw.split(",") if part.strip())
        return values


Handler = Callable[[Call], Response]
Endpoint = Callable[[Request], Awaitable[Response]]


def states(request: Request) -> tuple[SandboxState, HubSpotState]:
    return request.app.state.sandbox, request.app.state.hubspot


def route_key(request: Request) -> str:
    """``METHOD /path/template`` with object types filled in: ``GET /crm/v3/objects/contacts/{id}``."""
    route = request.scope.get("route")
    template = str(getattr(route, "path", request.url.path))
    for name, value in request.path_params.items():
        if name in TYPE_PARAMS:
            schema = resolve_type(str(value))
            filled = schema.name if schema else str(value)
        else:
            filled = "{token}" if name == "token" else "{id}"
        template = template.replace("{" + name + "}", filled)
    return f"{request.method} {template}"


async def _hold(request: Request, seconds: float) -> Response:
    """Answer nothing until the client gives up (or ``seconds`` pass, then a 504)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            break
        await asyncio.sleep(0.05)
    return errors.respond({"status": "error", "message": "Gateway timeout"}, 504)


def _fail(status: int) -> Response:
    messages = {500: "Internal error", 502: "Bad gateway", 503: "Service temporarily unavailable"}
    return errors.respond({"status": "error", "message": messages.get(status, "Error")}, status)


def _authenticate(request: Request, hubspot: HubSpotState) -> AccessToken | Response:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    token = hubspot.access_tokens.get(value.strip()) if scheme.lower() == "bearer" else None
    if token is None or token.revoked or token.hub_id not in hubspot.portals:
        return errors.error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication "
            "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            "INVALID_AUTHENTICATION",
        )
    if token.expires_at <= time.time():
        seconds = int(time.time() - token.expires_at)
        expired = iso_ms(datetime.fromtimestamp(token.expires_at, UTC))
        return errors.error(
            401,
            f"The OAuth token used to make this call expired {seconds} second(s) ago.",
            "EXPIRED_AUTHENTICATION",
            context={"expire time": [expired]},
        )
    return token


def _parse_body(raw: bytes, method: str) -> Any:
    if method in ("GET", "DELETE", "HEAD") or not raw.strip():
        return NO_BODY if method in ("GET", "DELETE", "HEAD") else None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return errors.invalid_json(str(exc))


def crm(
    access: Literal["read", "write"], *, type_param: str = "object_type", search: bool = False
) -> Callable[[Handler], Endpoint]:
    """Wrap a CRM handler in the pipeline above."""

    def decorate(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            shared, hubspot = states(request)
            raw = await request.body()
            async with shared.lock:
                shared.count(route_key(request))
                latency = shared.faults.latency_ms
                fault = shared.take_fault()
                hold_for = shared.faults.timeout_seconds
                fail_status = shared.faults.fail_status
            if latency:
                await asyncio.sleep(latency / 1000)
            if fault == "fail":
                return _fail(fail_status)
            if fault == "timeout":
                return await _hold(request, hold_for)
            async with shared.lock:
                return _run(
                    request, shared, hubspot, handler, raw, access, type_param, search, fault
                )

        endpoint.__name__ = handler.__name__
        return endpoint

    return decorate


def _run(
    request: Request,
    shared: SandboxState,
    hubspot: HubSpotState,
    handler: Handler,
    raw: bytes,
    access: str,
    type_param: str,
    search: bool,
    fault: str | None,
) -> Response:
    token = _authenticate(request, hubspot)
    if isinstance(token, Response):
        return token
    data = hubspot.portal_data(token.hub_id)
    decision = admit(
        data,
        hubspot.limits,
        search=search,
        daily_headers=hubspot.config.daily_headers,
        force=fault == "rate_limit",
    )
    if decision.policy is not None:
        shared.counters.rate_limited += 1
        return refusal(decision)
    response = _handle(request, hubspot, handler, raw, access, type_param, data, token)
    response.headers.update(decision.headers)
    return response


def _handle(
    request: Request,
    hubspot: HubSpotState,
    handler: Handler,
    raw: bytes,
    access: str,
    type_param: str,
    data: PortalData,
    token: AccessToken,
) -> Response:
    type_name = str(request.path_params.get(type_param, ""))
    schema = resolve_type(type_name)
    if schema is None:
        return errors.unknown_object_type(type_name)
    needed = f"crm.objects.{schema.name}.{access}"
    if needed not in token.scopes:
        return errors.missing_scopes([needed])
    body = _parse_body(raw, request.method)
    if isinstance(body, Response):
        return body
    return handler(Call(request, hubspot, data, token, schema, body))
