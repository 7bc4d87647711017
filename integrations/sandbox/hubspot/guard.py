"""What every CRM call goes through before its handler, in HubSpot's order.

Count it (by route and by the portal its token names); apply injected faults (latency, a slow
answer, a 5xx, a request held before or after the handler, a 429: see ``..state``); authenticate
the bearer token (401 ``INVALID_AUTHENTICATION`` / ``EXPIRED_AUTHENTICATION``); charge the
portal's rate limits (429; searches also count in the one-second search window); resolve the
object type and check the token's scopes (403 ``MISSING_SCOPES``; notes and tasks take the
contacts scopes); then run the handler. Handlers
are plain functions run under the sandbox lock, so each call is atomic. Every answer that names a
portal carries its ``X-HubSpot-RateLimit-*`` headers.
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

from ..hold import until_client_gives_up
from ..state import Fault, SandboxState
from . import errors
from .limits import admit, peek, refusal
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


def _bearer(request: Request, hubspot: HubSpotState) -> AccessToken | None:
    """The access token the request presents, whatever its state (expired, revoked)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return hubspot.access_tokens.get(value.strip()) if scheme.lower() == "bearer" else None


def account_of(request: Request, hubspot: HubSpotState) -> str | None:
    """``hubspot:<hub_id>`` of the portal the bearer token names, if it names one."""
    token = _bearer(request, hubspot)
    return f"hubspot:{token.hub_id}" if token is not None else None


async def _hold(request: Request, seconds: float) -> Response:
    """Answer nothing until the client gives up (or ``seconds`` pass, then a 504)."""
    await until_client_gives_up(request, seconds)
    return errors.respond({"status": "error", "message": "Gateway timeout"}, 504)


def _fail(status: int, headers: dict[str, str]) -> Response:
    messages = {500: "Internal error", 502: "Bad gateway", 503: "Service temporarily unavailable"}
    response = errors.respond({"status": "error", "message": messages.get(status, "Error")}, status)
    response.headers.update(headers)
    return response


def _headers_now(request: Request, hubspot: HubSpotState) -> dict[str, str]:
    """The limit headers of the portal the token names (nothing charged), or none."""
    token = _bearer(request, hubspot)
    if token is None or token.hub_id not in hubspot.portals:
        return {}
    data = hubspot.portal_data(token.hub_id)
    return peek(data, hubspot.limits, daily_headers=hubspot.config.daily_headers)


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
                account = account_of(request, hubspot)
                shared.count(route_key(request), account)
                latency = shared.faults.latency_ms
                fault = shared.take_fault(account)
            if latency:
                await asyncio.sleep(latency / 1000)
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(fault.slow_ms / 1000)
            if fault is not None and fault.kind == "fail":
                async with shared.lock:
                    return _fail(fault.status, _headers_now(request, hubspot))
            if fault is not None and fault.kind == "timeout":
                return await _hold(request, fault.hold_seconds)
            async with shared.lock:
                response = _run(
                    request, shared, hubspot, handler, raw, access, type_param, search, fault
                )
            if fault is not None and fault.kind == "timeout_after":
                return await _hold(request, fault.hold_seconds)  # done, but the answer is lost
            return response

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
    fault: Fault | None,
) -> Response:
    token = _authenticate(request, hubspot)
    if isinstance(token, Response):
        return token
    data = hubspot.portal_data(token.hub_id)
    forced = fault is not None and fault.kind == "rate_limit"
    decision = admit(
        data,
        hubspot.limits,
        search=search,
        daily_headers=hubspot.config.daily_headers,
        force=forced,
    )
    if decision.policy is not None:
        if not forced:  # an injected 429 counts as a fault, not as limit enforcement
            shared.count_rate_limited(f"hubspot:{token.hub_id}")
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
    needed = f"crm.objects.{schema.scope_name}.{access}"
    if needed not in token.scopes:
        return errors.missing_scopes([needed])
    body = _parse_body(raw, request.method)
    if isinstance(body, Response):
        return body
    return handler(Call(request, hubspot, data, token, schema, body))
