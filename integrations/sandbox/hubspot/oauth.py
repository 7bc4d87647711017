"""HubSpot OAuth: the consent page (app host) and the v1 token endpoints (API host).

``GET/POST /oauth/authorize`` renders a plain-HTML consent page for the two seeded portals and
redirects back with ``code`` (Allow) or ``error=access_denied`` (Deny). ``POST /oauth/v1/token``
takes form-encoded client credentials (client_secret_post) for ``authorization_code`` (single
use, ten minutes, redirect URI and PKCE S256 checked) and ``refresh_token`` (rotated unless
configured otherwise). ``/oauth/v1/access-tokens/{token}`` and ``/oauth/v1/refresh-tokens/{token}``
describe tokens; deleting a refresh token revokes it (its access tokens live on, as HubSpot
documents). The token endpoint and the access-token lookup answer garbage on demand
(``../oauth_faults.py``).
"""

from __future__ import annotations

import html
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..oauth_faults import faulty
from ..pages import error_page, page
from ..state import SandboxState
from . import errors
from .guard import route_key, states
from .state import PORTALS, AccessToken, HubSpotState, pkce_challenge

Handler = Callable[[Request, HubSpotState, SandboxState, dict[str, str]], Response]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def oauth_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Count the call, read a form body, run the handler under the sandbox lock."""

    async def endpoint(request: Request) -> Response:
        shared, hubspot = states(request)
        raw = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        async with shared.lock:
            shared.count(route_key(request))
            return handler(request, hubspot, shared, form)

    endpoint.__name__ = handler.__name__
    return endpoint


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return page("HubSpot", title, body, status)


def _error_page(message: str) -> HTMLResponse:
    return error_page("HubSpot", "Authorization failed", message)


def _scopes(query: dict[str, str]) -> tuple[str, ...]:
    wanted = f"{query.get('scope', '')} {query.get('optional_scope', '')}".replace("+", " ")
    return tuple(dict.fromkeys(part for part in wanted.split() if part))


def _check_authorize(query: dict[str, str], hubspot: HubSpotState) -> str | None:
    if query.get("client_id") != hubspot.config.client_id:
        return f"Unknown client_id: {query.get('client_id', '')!r}."
    target = urlsplit(query.get("redirect_uri", ""))
    if target.scheme not in ("http", "https") or target.hostname not in LOOPBACK:
        return "The redirect_uri must be an http(s) URL on 127.0.0.1 or localhost."
    if not query.get("scope", "").strip():
        return "The scope parameter is required."
    if query.get("code_challenge") and query.get("code_challenge_method", "plain") != "S256":
        return "Only the S256 code_challenge_method is supported."
    return None


def _redirect(redirect_uri: str, params: dict[str, str]) -> RedirectResponse:
    parts = urlsplit(redirect_uri)
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True) + list(params.items()))
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)


def _consent(request: Request, query: dict[str, str], scopes: tuple[str, ...]) -> HTMLResponse:
    action = html.escape(request.url.path + ("?" + request.url.query if request.url.query else ""))
    portals = "\n".join(
        f'<label for="portal-{p.hub_id}"><input type="radio" id="portal-{p.hub_id}" name="portal" '
        f'value="{p.hub_id}"{" checked" if i == 0 else ""}> {html.escape(p.name)} '
        f"({html.escape(p.domain)}, hub {p.hub_id}, signed in as {html.escape(p.user)})</label>"
        for i, p in enumerate(PORTALS)
    )
    scope_items = "".join(f"<li>{html.escape(s)}</li>" for s in scopes)
    body = f"""<p>The app <strong>{html.escape(query["client_id"])}</strong> asks to access:</p>
<ul id="scopes">{scope_items}</ul>
<form method="post" action="{action}">
<fieldset><legend>Choose an account</legend>
{portals}
</fieldset>
<p><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></p>
</form>"""
    return _page("Connect an app to HubSpot", body)


@oauth_endpoint
def authorize(
    request: Request, hubspot: HubSpotState, shared: SandboxState, form: dict[str, str]
) -> Response:
    query = dict(request.query_params)
    problem = _check_authorize(query, hubspot)
    if problem:
        return _error_page(problem)
    scopes = _scopes(query)
    if request.method == "GET":
        return _consent(request, query, scopes)
    state = {"state": query["state"]} if "state" in query else {}
    if form.get("decision") != "allow":
        description = "The user denied the app access to their HubSpot account."
        params = {"error": "access_denied", "error_description": description}
        return _redirect(query["redirect_uri"], params | state)
    portal = form.get("portal", "")
    if not portal.isdigit() or int(portal) not in hubspot.portals:
        return _error_page("Choose one of the accounts.")
    code = hubspot.issue_code(
        hub_id=int(portal),
        redirect_uri=query["redirect_uri"],
        scopes=scopes,
        challenge=query.get("code_challenge") or None,
    )
    return _redirect(query["redirect_uri"], {"code": code.code} | state)


def _grant_code(hubspot: HubSpotState, form: dict[str, str]) -> Response | tuple[Any, Any]:
    code = hubspot.codes.get(form.get("code", ""))
    if (
        code is None
        or code.used
        or code.expires_at <= time.time()
        or code.client_id != form["client_id"]
    ):
        return errors.oauth_error("BAD_AUTH_CODE", "missing or unknown auth code", "invalid_grant")
    if form.get("redirect_uri") != code.redirect_uri:
        return errors.oauth_error(
            "BAD_REDIRECT_URI", "redirect_uri does not match initial auth code URL", "invalid_grant"
        )
    if code.code_challenge is not None:
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(
            pkce_challenge(verifier), code.code_challenge
        ):
            return errors.oauth_error(
                "BAD_CODE_VERIFIER",
                "code_verifier does not match the code_challenge",
                "invalid_grant",
            )
    code.used = True
    return hubspot.issue_tokens(hub_id=code.hub_id, scopes=code.scopes)


def _grant_refresh(hubspot: HubSpotState, form: dict[str, str]) -> Response | tuple[Any, Any]:
    refresh = hubspot.live_refresh(form.get("refresh_token", ""))
    if refresh is None or refresh.client_id != form["client_id"]:
        return errors.oauth_error(
            "BAD_REFRESH_TOKEN", "refresh token is invalid, expired or revoked", "invalid_grant"
        )
    if not hubspot.config.rotate_refresh_tokens:
        return hubspot.issue_access(refresh), refresh
    hubspot.revoke(refresh, with_access=False)
    return hubspot.issue_tokens(hub_id=refresh.hub_id, scopes=refresh.scopes)


def _server_error() -> Response:
    return errors.error(500, "internal error", "INTERNAL_ERROR")


@faulty("token", _server_error)
@oauth_endpoint
def token(
    request: Request, hubspot: HubSpotState, shared: SandboxState, form: dict[str, str]
) -> Response:
    grant_type = form.get("grant_type", "")
    if grant_type not in ("authorization_code", "refresh_token"):
        return errors.oauth_error(
            "BAD_GRANT_TYPE", f"unsupported grant_type: {grant_type!r}", "unsupported_grant_type"
        )
    if form.get("client_id") != hubspot.config.client_id:
        return errors.oauth_error("BAD_CLIENT_ID", "missing or unknown client id", "invalid_client")
    if not secrets.compare_digest(form.get("client_secret", ""), hubspot.config.client_secret):
        return errors.oauth_error(
            "BAD_CLIENT_SECRET", "missing or invalid client secret", "invalid_client"
        )
    grant = (
        _grant_code(hubspot, form)
        if grant_type == "authorization_code"
        else _grant_refresh(hubspot, form)
    )
    if isinstance(grant, Response):
        return grant
    access, refresh = grant
    shared.counters.token_grants[grant_type] += 1
    response = errors.respond(hubspot.token_answer(access, refresh))
    response.headers["Cache-Control"] = "no-store"
    return response


def _not_found(what: str) -> Response:
    return errors.error(404, f"{what} not found", "OBJECT_NOT_FOUND")


def access_info(hubspot: HubSpotState, access: AccessToken) -> dict[str, Any]:
    portal = hubspot.portal_data(access.hub_id).portal
    expires_ms = int(access.expires_at * 1000)
    return {
        "token": access.token,
        "user": portal.user,
        "hub_domain": portal.domain,
        "scopes": list(access.scopes),
        "signed_access_token": {
            "expiresAt": expires_ms,
            "scopes": "",
            "hubId": portal.hub_id,
            "userId": portal.user_id,
            "appId": hubspot.config.app_id,
            "signature": "",
            "scopeToScopeGroupPks": "",
            "newSignature": "",
            "hublet": "na1",
            "trialScopes": "",
            "trialScopeToScopeGroupPks": "",
            "isUserLevel": False,
        },
        "hub_id": portal.hub_id,
        "app_id": hubspot.config.app_id,
        "expires_in": access.expires_in(),
        "user_id": portal.user_id,
        "token_type": "access",
        "is_private_distribution": False,
    }


@faulty("identity", _server_error)
@oauth_endpoint
def access_token_info(
    request: Request, hubspot: HubSpotState, shared: SandboxState, form: dict[str, str]
) -> Response:
    access = hubspot.access_tokens.get(str(request.path_params["token"]))
    if access is None or access.revoked or access.expires_at <= time.time():
        return _not_found("Access token")
    return errors.respond(access_info(hubspot, access))


@oauth_endpoint
def refresh_token_info(
    request: Request, hubspot: HubSpotState, shared: SandboxState, form: dict[str, str]
) -> Response:
    refresh = hubspot.live_refresh(str(request.path_params["token"]))
    if refresh is None:
        return _not_found("Refresh token")
    if request.method == "DELETE":
        hubspot.revoke(refresh, with_access=False)
        return errors.empty(204)
    portal = hubspot.portal_data(refresh.hub_id).portal
    return errors.respond(
        {
            "token": refresh.token,
            "user": portal.user,
            "hub_domain": portal.domain,
            "scopes": list(refresh.scopes),
            "hub_id": portal.hub_id,
            "client_id": refresh.client_id,
            "user_id": portal.user_id,
            "token_type": "refresh",
        }
    )
