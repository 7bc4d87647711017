"""The control API tests drive the sandbox with (``/_sandbox``; not any provider's API).

``POST /_sandbox/reset`` clears everything and seeds the portals again; ``GET /_sandbox/counters``
reports the calls received (``total``, ``requests`` by route, ``token_grants``, ``rate_limited``
-- real limit enforcement only --, ``faults_injected``, ``faults_by_kind``,
``requests_by_account`` and ``rate_limited_by_account`` keyed ``hubspot:<hub_id>`` /
``salesforce:<org>``); ``GET|POST /_sandbox/faults`` reads or replaces the faults applied to CRM
calls (omitted fields go back to their defaults, unknown ones are refused; see ``state.py``);
``GET|POST /_sandbox/oauth-faults`` reads or replaces the garbage answers queued for the OAuth token
and identity endpoints (see ``oauth_faults.py``);
``GET /_sandbox/health`` answers when the sandbox is up. Provider-specific controls live under
``/_sandbox/<provider>/`` (see ``hubspot/control.py`` and ``salesforce/control.py``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .state import SandboxState

ControlHandler = Callable[[Request, dict[str, Any]], dict[str, Any]]


class Resettable(Protocol):
    def reset(self) -> None: ...


def problem(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def control(handler: ControlHandler) -> Callable[[Request], Awaitable[Response]]:
    """Parse a JSON object body, run the handler under the sandbox lock, answer its dict as
    JSON (``ValueError`` and ``LookupError`` become 400 and 404 with ``{"error"}``)."""

    async def endpoint(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return problem(f"Invalid JSON: {exc}")
        if not isinstance(body, dict):
            return problem("The body must be a JSON object.")
        shared: SandboxState = request.app.state.sandbox
        async with shared.lock:
            try:
                return JSONResponse(handler(request, body))
            except ValueError as exc:
                return problem(str(exc))
            except LookupError as exc:
                return problem(str(exc.args[0] if exc.args else exc), 404)

    endpoint.__name__ = handler.__name__
    return endpoint


@control
def reset(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    request.app.state.sandbox.reset()
    providers: dict[str, Resettable] = request.app.state.providers
    for provider in providers.values():
        provider.reset()
    return {"reset": True, "providers": sorted(providers)}


@control
def counters(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = request.app.state.sandbox.counters.as_dict()
    return result


@control
def faults(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    shared: SandboxState = request.app.state.sandbox
    if request.method == "POST":
        shared.set_faults(body)
    return shared.faults.as_dict()


@control
def oauth_faults(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    shared: SandboxState = request.app.state.sandbox
    if request.method == "POST":
        shared.oauth_faults.replace(body)
    return shared.oauth_faults.as_dict()


@control
def health(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "providers": sorted(request.app.state.providers)}


def routes() -> list[BaseRoute]:
    return [
        Route("/reset", reset, methods=["POST"]),
        Route("/counters", counters, methods=["GET"]),
        Route("/faults", faults, methods=["GET", "POST"]),
        Route("/oauth-faults", oauth_faults, methods=["GET", "POST"]),
        Route("/health", health, methods=["GET"]),
    ]
