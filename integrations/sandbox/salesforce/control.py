"""Salesforce's part of the control API (``/_sandbox/salesforce``).

``POST /tokens`` ``{"org": "acme"|"globex", "scope"?, "host"?}`` mints a token answer for an org
without the browser flow (``host``: ``login`` (default), ``test`` or a My Domain such as
``acme.my.salesforce.com`` -- where the identity URL points); ``POST /tokens/expire`` ends every
session; ``POST /tokens/revoke`` ``{"refresh_token"?, "reason"?}`` revokes one refresh token (or
all) with their access tokens (``reason``: ``expired`` (default) or ``authentication_failure``,
the ``error_description`` a later refresh gets); ``POST /limits`` ``{"daily"?, "used"?, "org"?}``
sets the daily API budget and pretends calls were made (``org`` default: all); ``GET /orgs``
lists the seeded orgs; ``GET|POST /config`` reads or changes token lifetimes and refresh-token
rotation.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute, Route

from ..control import control
from . import ids, limits
from .oauth import MY_DOMAIN
from .state import DEFAULT_SCOPES, SalesforceState

CONFIG_INTS = {"access_token_ttl": 1, "code_ttl": 0}  # code_ttl 0: codes are born expired
CONFIG_BOOLS = ("rotate_refresh_tokens",)
REASONS = {
    "expired": "expired access/refresh token",
    "authentication_failure": "authentication failure",
}


def _salesforce(request: Request) -> SalesforceState:
    state: SalesforceState = request.app.state.salesforce
    return state


def _int(body: dict[str, Any], name: str, smallest: int) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
        raise ValueError(f"{name} must be an integer of at least {smallest}")
    return value


def _login_url(request: Request, host: Any) -> str:
    base = str(request.base_url).rstrip("/") + "/salesforce"
    if host in (None, "login", "test"):
        return f"{base}/{host or 'login'}"
    if isinstance(host, str) and MY_DOMAIN.match(host):
        return f"{base}/mydomain/{host}"
    raise ValueError("host must be login, test or a My Domain (acme.my.salesforce.com)")


@control
def mint_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    org = body.get("org", "acme")
    if org not in salesforce.orgs:
        raise LookupError(f"No org {org!r}; the seeded orgs are {sorted(salesforce.orgs)}")
    scope = body.get("scope", " ".join(DEFAULT_SCOPES))
    if not isinstance(scope, str) or not scope.split():
        raise ValueError("scope must be a space-separated string")
    access, refresh = salesforce.issue_tokens(
        org=org, scopes=tuple(scope.split()), login_url=_login_url(request, body.get("host"))
    )
    return salesforce.token_answer(access, refresh)


@control
def expire_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    return {"expired": _salesforce(request).expire_access_tokens()}


@control
def revoke_tokens(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    reason = REASONS.get(str(body.get("reason", "expired")))
    if reason is None:
        raise ValueError(f"reason must be one of {sorted(REASONS)}")
    wanted = body.get("refresh_token")
    if wanted is not None:
        found = salesforce.live_refresh(str(wanted))
        if found is None:
            raise LookupError("No such live refresh token")
        targets = [found]
    else:
        targets = [t for t in salesforce.refresh_tokens.values() if not t.revoked]
    for refresh in targets:
        salesforce.revoke(refresh, reason=reason)
    if wanted is None:  # minted without a refresh token: end those sessions too
        for access in salesforce.access_tokens.values():
            access.revoked = True
    return {"revoked": len(targets)}


@control
def set_limits(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    unknown = set(body) - {"daily", "used", "org"}
    if unknown:
        raise ValueError(f"Unknown limit(s): {sorted(unknown)}")
    org = body.get("org")
    if org is not None and org not in salesforce.orgs:
        raise LookupError(f"No org {org!r}")
    if "daily" in body:
        salesforce.limits.daily = _int(body, "daily", 1)
    if "used" in body:
        count = _int(body, "used", 0)
        for data in salesforce.orgs.values():
            if org is None or data.org.key == org:
                limits.fill(data, count)
    return salesforce.limits.as_dict() | {
        "used": {key: limits.used(data) for key, data in salesforce.orgs.items()}
    }


@control
def orgs(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    return {
        "orgs": [
            {
                "key": data.org.key,
                "id": data.org.id,
                "id15": ids.short(data.org.id),
                "name": data.org.name,
                "user_id": data.org.user_id,
                "username": data.org.username,
                "is_sandbox": data.org.is_sandbox,
                "instance_url": salesforce.config.instance_url,
            }
            for data in salesforce.orgs.values()
        ]
    }


@control
def config(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    salesforce = _salesforce(request)
    unknown = set(body) - set(CONFIG_INTS) - set(CONFIG_BOOLS)
    if unknown:
        raise ValueError(f"Unknown setting(s): {sorted(unknown)}")
    for name, smallest in CONFIG_INTS.items():
        if name in body:
            setattr(salesforce.config, name, _int(body, name, smallest))
    for name in CONFIG_BOOLS:
        if name in body:
            if not isinstance(body[name], bool):
                raise ValueError(f"{name} must be true or false")
            setattr(salesforce.config, name, body[name])
    return salesforce.config.as_dict() | {"limits": salesforce.limits.as_dict()}


def routes() -> list[BaseRoute]:
    return [
        Route("/tokens", mint_tokens, methods=["POST"]),
        Route("/tokens/expire", expire_tokens, methods=["POST"]),
        Route("/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route("/limits", set_limits, methods=["POST"]),
        Route("/orgs", orgs, methods=["GET"]),
        Route("/config", config, methods=["GET", "POST"]),
    ]
