"""Garbage from the OAuth endpoints, on demand: what a provider answers on a bad day.

The CRM faults (``state.py``) never touch OAuth. These do: ``POST /_sandbox/oauth-faults``
``{"token": [kind, ...], "identity": [kind, ...]}`` queues answers that replace the next calls of
the token endpoint (HubSpot's ``/oauth/v1/token``, Salesforce's ``/services/oauth2/token``) or of
the identity lookup that follows a code exchange (HubSpot's ``/oauth/v1/access-tokens/{token}``,
Salesforce's identity URL ``/id/{org}/{user}``), one queued kind per call, whichever provider is
called. The real handler does not run (a code stays unused). ``GET`` reads the queues, a
``POST`` replaces both (an omitted one is emptied), ``/_sandbox/reset`` empties them.

Kinds:

- ``html``: 200 ``text/html``, a proxy's or captive portal's page;
- ``not_json``: 200 ``application/json`` whose body is cut off mid-object;
- ``empty``: 200 with no body at all;
- ``wrong_shape``: 200, a JSON array instead of an object;
- ``wrong_types``: 200, a JSON object with the expected names holding the wrong types;
- ``server_error``: 500 with the provider's own error body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

Point = Literal["token", "identity"]
Kind = Literal["html", "not_json", "empty", "wrong_shape", "wrong_types", "server_error"]
POINTS: tuple[Point, ...] = get_args(Point)
KINDS: tuple[Kind, ...] = get_args(Kind)
Endpoint = Callable[[Request], Awaitable[Response]]

HTML_PAGE = """<!doctype html>
<html><head><title>Service Unavailable</title></head>
<body><h1>Service Unavailable</h1><p>Please try again later.</p></body></html>"""
# What a token or identity answer would hold, with every value of the wrong type.
WRONG_TYPES: dict[str, Any] = {
    "access_token": 12345,
    "refresh_token": {"token": "nested"},
    "expires_in": ["1800"],
    "token_type": None,
    "scope": 7,
    "instance_url": False,
    "id": ["not", "a", "url"],
    "hub_id": "not-a-number",
    "hub_domain": 42,
    "user": {"email": None},
    "organization_id": 7,
    "user_id": None,
    "username": [],
}


@dataclass
class OAuthFaults:
    """The queued answers per point (read and changed under the sandbox lock)."""

    queues: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in POINTS})

    def take(self, point: Point) -> Kind | None:
        queue = self.queues[point]
        if not queue:
            return None
        kind = queue.pop(0)
        return kind if kind in KINDS else None  # type: ignore[return-value]

    def replace(self, body: dict[str, Any]) -> None:
        unknown = set(body) - set(POINTS)
        if unknown:
            raise ValueError(f"Unknown fault point(s) {sorted(unknown)}; use {list(POINTS)}")
        queues: dict[str, list[str]] = {}
        for point in POINTS:
            kinds = body.get(point, [])
            if not isinstance(kinds, list) or any(k not in KINDS for k in kinds):
                raise ValueError(f"{point} must be a list of {list(KINDS)}")
            queues[point] = [str(k) for k in kinds]
        self.queues = queues

    def as_dict(self) -> dict[str, Any]:
        return {point: list(kinds) for point, kinds in self.queues.items()}


def garbage(kind: Kind, server_error: Callable[[], Response]) -> Response:
    """The answer of ``kind`` (``server_error`` builds the provider's own 500)."""
    if kind == "html":
        return HTMLResponse(HTML_PAGE, status_code=200)
    if kind == "not_json":
        return Response('{"access_token": "', status_code=200, media_type="application/json")
    if kind == "empty":
        return Response(b"", status_code=200, media_type="application/json")
    if kind == "wrong_shape":
        return JSONResponse([{"access_token": "not-in-an-object"}], status_code=200)
    if kind == "wrong_types":
        return JSONResponse(WRONG_TYPES, status_code=200)
    return server_error()


def faulty(point: Point, server_error: Callable[[], Response]) -> Callable[[Endpoint], Endpoint]:
    """Let queued faults of ``point`` answer instead of ``endpoint``."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        async def wrapped(request: Request) -> Response:
            shared = request.app.state.sandbox
            async with shared.lock:
                kind = shared.oauth_faults.take(point)
            if kind is None:
                return await endpoint(request)
            await request.body()  # read what was sent, as the real handler would
            return garbage(kind, server_error)

        wrapped.__name__ = endpoint.__name__
        return wrapped

    return decorate
