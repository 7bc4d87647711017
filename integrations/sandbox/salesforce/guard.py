"""What every REST call (``/services/data/vXX.X/...``) goes through before its handler.

Count it (by route and by the org its session names); apply injected faults (latency, a slow
answer, a 5xx, a request held before or after the handler, a refusal: see ``..state``);
authenticate the session (401 ``INVALID_SESSION_ID``); charge the org's rolling 24-hour API budget
(403 ``REQUEST_LIMIT_EXCEEDED`` past it); check the version; parse the JSON body (400
``JSON_PARSER_ERROR``); run the handler under the sandbox lock; and stamp the answer with
``Sforce-Limit-Info: api-usage=<used>/<max>``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..hold import until_client_gives_up
from ..state import Fault, SandboxState
from . import errors, limits
from .schema import SObject, resolve
from .state import AccessToken, OrgData, SalesforceState

VERSION = re.compile(r"^v\d{2}\.\d$")
VERSION_PREFIX = re.compile(r"^v\d+\.\d(?=/|$)")
NO_BODY = object()
FAIL_BODIES = {
    500: (
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if "
        "you contact support: 1234567890-12345 (-1234567890)",
    ),
    502: ("SERVER_UNAVAILABLE", "Bad gateway"),
    503: ("SERVER_UNAVAILABLE", "Service temporarily unavailable, please try again later"),
}


@dataclass
class Call:
    request: Request
    salesforce: SalesforceState
    data: OrgData
    token: AccessToken
    body: Any
    raw: bytes

    @property
    def version(self) -> str:
        """The version asked for, without the ``v`` (``62.0``)."""
        return str(self.request.path_params.get("version", "v62.0"))[1:]

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query_list(self, name: str) -> list[str]:
        values: list[str] = []
        for raw in self.request.query_params.getlist(name):
            values.extend(part.strip() for part in raw.split(",") if part.strip())
        return values

    def sobject(self, name: str | None = None) -> SObject | None:
        return resolve(name if name is not None else self.param("sobject"))


Handler = Callable[[Call], Response]
Endpoint = Callable[[Request], Awaitable[Response]]


def states(request: Request) -> tuple[SandboxState, SalesforceState]:
    return request.app.state.sandbox, request.app.state.salesforce


def route_key(request: Request) -> str:
    """``METHOD /path/template`` with the version as ``vXX.X``, sObject names filled in and ids
    as ``{id}``: ``GET /services/data/vXX.X/sobjects/Contact/{id}``."""
    route = request.scope.get("route")
    template = str(getattr(route, "path", request.url.path))
    for name, value in request.path_params.items():
        if name == "version":
            filled = "vXX.X"
        elif name == "sobject":
            found = resolve(str(value))
            filled = found.name if found else str(value)
        elif name == "locator":
            filled = "{locator}"
        elif name == "rest":
            filled = VERSION_PREFIX.sub("vXX.X", str(value))
        elif name == "domain":
            continue
        else:
            filled = "{id}"
        template = template.replace("{" + name + "}", filled).replace("{" + name + ":path}", filled)
    return f"{request.method} {template}"


async def _hold(request: Request, seconds: float) -> Response:
    """Answer nothing until the client gives up (or ``seconds`` pass, then a 504)."""
    await until_client_gives_up(request, seconds)
    return errors.error(504, "REQUEST_RUNNING_TOO_LONG", "Your request was running for too long")


def _fail(status: int, request: Request, salesforce: SalesforceState) -> Response:
    code, message = FAIL_BODIES.get(status, ("UNKNOWN_EXCEPTION", "Error"))
    response = errors.error(status, code, message)
    token = _session(request, salesforce)
    if token is not None and token.org in salesforce.orgs:
        data = salesforce.orgs[token.org]
        response.headers[errors.LIMIT_HEADER] = limits.header(data, salesforce.limits)
    return response


def _session(request: Request, salesforce: SalesforceState) -> AccessToken | None:
    """The access token the request presents, whatever its state (expired, revoked)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() not in ("bearer", "oauth"):
        return None
    return salesforce.access_tokens.get(value.strip())


def account_of(request: Request, salesforce: SalesforceState) -> str | None:
    """``salesforce:<org>`` of the org the session names, if it names one."""
    token = _session(request, salesforce)
    return f"salesforce:{token.org}" if token is not None else None


def authenticate(request: Request, salesforce: SalesforceState) -> AccessToken | None:
    token = _session(request, salesforce)
    if token is None or not token.live() or token.org not in salesforce.orgs:
        return None
    return token


def _parse_body(raw: bytes, method: str) -> Any:
    if method in ("GET", "DELETE", "HEAD"):
        return NO_BODY
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return errors.json_parser(f"Unexpected character: {exc}")


def rest(handler: Handler) -> Endpoint:
    """Wrap a REST handler in the pipeline above."""

    async def endpoint(request: Request) -> Response:
        shared, salesforce = states(request)
        raw = await request.body()
        async with shared.lock:
            account = account_of(request, salesforce)
            shared.count(route_key(request), account)
            latency = shared.faults.latency_ms
            fault = shared.take_fault(account)
        if latency:
            await asyncio.sleep(latency / 1000)
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.slow_ms / 1000)
        if fault is not None and fault.kind == "fail":
            async with shared.lock:
                return _fail(fault.status, request, salesforce)
        if fault is not None and fault.kind == "timeout":
            return await _hold(request, fault.hold_seconds)
        async with shared.lock:
            response = _run(request, shared, salesforce, handler, raw, fault)
        if fault is not None and fault.kind == "timeout_after":
            return await _hold(request, fault.hold_seconds)  # done, but the answer is lost
        return response

    endpoint.__name__ = handler.__name__
    return endpoint


def _run(
    request: Request,
    shared: SandboxState,
    salesforce: SalesforceState,
    handler: Handler,
    raw: bytes,
    fault: Fault | None,
) -> Response:
    token = authenticate(request, salesforce)
    if token is None:
        return errors.session_invalid()
    data = salesforce.orgs[token.org]
    if fault is not None and fault.kind == "rate_limit":
        # Salesforce has no 429: a refused call is a 403 REQUEST_LIMIT_EXCEEDED. The transient
        # kind is the concurrent long-running request limit. An injected refusal counts as a
        # fault, not as limit enforcement.
        response: Response = errors.error(
            403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
        )
        response.headers[errors.LIMIT_HEADER] = limits.header(data, salesforce.limits)
        return response
    if not limits.admit(data, salesforce.limits):
        shared.count_rate_limited(f"salesforce:{token.org}")
        response = errors.error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    elif not VERSION.match(str(request.path_params.get("version", "v62.0"))):
        response = errors.not_found()
    else:
        body = _parse_body(raw, request.method)
        if isinstance(body, Response):
            response = body
        else:
            response = handler(Call(request, salesforce, data, token, body, raw))
    response.headers[errors.LIMIT_HEADER] = limits.header(data, salesforce.limits)
    return response
