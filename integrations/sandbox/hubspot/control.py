"""HubSpot's part of the control API (``/_sandbox/hubspot``).

``POST /limits`` sets the rate limits; ``POST /tokens`` mints a token pair for a portal without
the browser flow; ``POST /tokens/expire`` expires every access token now; ``POST /tokens/revoke``
revokes one refresh token (or all) with its access tokens; ``GET|POST /config`` reads or changes
the app's behaviour (token lifetime, refresh-token rotation, daily headers).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ..control import control
from .state import FULL_SCOPES, HubSpotState

LIMIT_FIELDS = {"per_10s": 1, "daily": 1, "search_per_second": 0}  # field -> smallest value
CONFIG_INTS = {"access_token_ttl": 1, "code_ttl": 1}
CONFIG_BOOLS = ("rotate_refresh_tokens", "daily_headers")


def _hubspot(request: Request) -> HubSpotState:
    state: HubSpotState = request.app.state.hubspot
    return state


def _int(body: dict[str, Any], name: str, default: int, smallest: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
        raise ValueError(f"{name} must be an integer of at least {smallest}")
    return value


@control
def limits(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    unknown = set(body) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"Unknown limit(s): {sorted(unknown)}")
    for name, smallest in LIMIT_FIELDS.items():
        if name in body:
            setattr(hubspot.limits, name, _int(body, name, 0, smallest))
    return hubspot.limits.as_dict()


@control
def mint_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    hub_id = _int(body, "hub_id", 62515, 1)
    if hub_id not in hubspot.portals:
        raise LookupError(f"No portal {hub_id}; the seeded portals are {sorted(hubspot.portals)}")
    expires_in = _int(body, "expires_in", hubspot.config.access_token_ttl, 0)
    scopes = body.get("scopes", list(FULL_SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise ValueError("scopes must be a list of strings")
    access, refresh = hubspot.issue_tokens(
        hub_id=hub_id, scopes=tuple(scopes), expires_in=expires_in
    )
    return hubspot.token_answer(access, refresh)


@control
def expire_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return {"expired": _hubspot(request).expire_access_tokens()}


@control
def revoke_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    wanted = body.get("refresh_token")
    if wanted is not None:
        found = hubspot.live_refresh(str(wanted))
        if found is None:
            raise LookupError("No such live refresh token")
        targets = [found]
    else:
        targets = [t for t in hubspot.refresh_tokens.values() if not t.revoked]
    for refresh in targets:
        hubspot.revoke(refresh, with_access=True)
    return {"revoked": len(targets)}


@control
def config(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    hubspot = _hubspot(request)
    unknown = set(body) - set(CONFIG_INTS) - set(CONFIG_BOOLS)
    if unknown:
        raise ValueError(f"Unknown setting(s): {sorted(unknown)}")
    for name, smallest in CONFIG_INTS.items():
        if name in body:
            setattr(hubspot.config, name, _int(body, name, 0, smallest))
    for name in CONFIG_BOOLS:
        if name in body:
            if not isinstance(body[name], bool):
                raise ValueError(f"{name} must be true or false")
            setattr(hubspot.config, name, body[name])
    return hubspot.config.as_dict() | {
        "limits": hubspot.limits.as_dict(),
        "portals": [
            {"hub_id": d.portal.hub_id, "domain": d.portal.domain, "user": d.portal.user}
            for d in hubspot.portals.values()
        ],
    }


def routes() -> list[BaseRoute]:
    return [
        Route("/limits", limits, methods=["POST"]),
        Route("/tokens", mint_tokens, methods=["POST"]),
        Route("/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route("/config", config, methods=["GET", "POST"]),
    ]
