"""Salesforce OAuth 2.0 on a login host: the web server flow with PKCE, revocation, identity.

Every login host (production ``/salesforce/login``, sandbox ``/salesforce/test``, My Domain
``/salesforce/mydomain/{domain}``, and the instance itself) serves:

``GET|POST /services/oauth2/authorize`` -- a plain-HTML consent page for the two seeded orgs;
Allow redirects to ``redirect_uri?code=...&state=...``, Deny to ``redirect_uri?error=access_denied
&error_description=end-user+denied+authorization&state=...``; an unknown ``client_id`` or a
``redirect_uri`` off loopback answers a 400 page and redirects nowhere.

``POST /services/oauth2/token`` -- form-encoded, client_secret_post (HTTP Basic also accepted).
``authorization_code``: the code is single use, lives fifteen minutes, must come back to the login
host that issued it with the same ``redirect_uri``, and with the ``code_verifier`` whose S256
hash is the ``code_challenge`` sent to authorize (missing: ``invalid_grant``; wrong:
``invalid_request``, as Salesforce documents). ``refresh_token``: a new access token; the refresh
token is not rotated (unless configured). Answers carry ``access_token``, ``refresh_token`` (code
grant, when the scopes include ``refresh_token``), ``signature`` (HMAC-SHA256 of ``id`` +
``issued_at`` keyed by the client secret), ``scope``, ``instance_url``, ``id``, ``token_type``
and ``issued_at``, and no ``expires_in``.

``POST /services/oauth2/revoke`` (or ``GET ?token=``) -- 200; a refresh token takes its access
tokens with it; an unknown token answers 400 ``invalid_token``.

``GET /id/{orgId}/{userId}`` -- the identity of the token's user (Bearer header, or
``oauth_token``/``access_token`` parameter); a bad token answers 403 ``Bad_OAuth_Token``.

The token endpoint and the identity URL answer garbage on demand (``../oauth_faults.py``).
"""

from __future__ import annotations

import base64
import html
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from ..oauth_faults import faulty
from ..pages import error_page, page
from ..state import SandboxState
from . import errors, ids
from .guard import route_key, states
from .state import (
    API_VERSION,
    DEFAULT_SCOPES,
    ORGS,
    AccessToken,
    RefreshToken,
    SalesforceState,
    pkce_challenge,
)

Handler = Callable[[Request, SalesforceState, SandboxState, dict[str, str]], Response]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# acme.my.salesforce.com, acme--dev.sandbox.my.salesforce.com, acme.develop.my.salesforce.com
MY_DOMAIN = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:--[a-z0-9]+)?"
    r"\.(?:(?:sandbox|develop|scratch)\.)?my\.salesforce\.com$",
    re.IGNORECASE,
)


def login_url(request: Request) -> str:
    """This login host's base URL: the listener plus the mount (``.../salesforce/test``)."""
    return str(request.base_url).rstrip("/") + str(request.scope.get("root_path", ""))


def _bad_domain(request: Request) -> Response | None:
    domain = request.path_params.get("domain")
    if domain is not None and not MY_DOMAIN.match(str(domain)):
        return _page(
            "Unknown My Domain", f"<p id='error'>No org uses {html.escape(domain)}.</p>", 404
        )
    return None


def oauth_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Count the call, read a form body, run the handler under the sandbox lock."""

    async def endpoint(request: Request) -> Response:
        shared, salesforce = states(request)
        raw = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        async with shared.lock:
            shared.count(route_key(request))
            problem = _bad_domain(request)
            if problem is not None:
                return problem
            return handler(request, salesforce, shared, form)

    endpoint.__name__ = handler.__name__
    return endpoint


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return page("Salesforce", title, body, status)


def _error_page(message: str) -> HTMLResponse:
    return error_page("Salesforce", "Authorization error", message)


def _scopes(query: dict[str, str]) -> tuple[str, ...]:
    wanted = query.get("scope", "").replace("+", " ").split()
    return tuple(dict.fromkeys(wanted)) or DEFAULT_SCOPES


def _check_authorize(query: dict[str, str], salesforce: SalesforceState) -> str | None:
    if query.get("client_id") != salesforce.config.client_id:
        return "error=invalid_client_id: client identifier invalid"
    target = urlsplit(query.get("redirect_uri", ""))
    if target.scheme not in ("http", "https") or target.hostname not in LOOPBACK:
        return "error=redirect_uri_mismatch: redirect_uri must match configuration"
    if query.get("code_challenge") and query.get("code_challenge_method", "S256") != "S256":
        return "error=invalid_request: only the S256 code_challenge_method is supported"
    return None


def _redirect(redirect_uri: str, params: dict[str, str]) -> RedirectResponse:
    parts = urlsplit(redirect_uri)
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True) + list(params.items()))
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)


def _consent(request: Request, query: dict[str, str], scopes: tuple[str, ...]) -> HTMLResponse:
    action = html.escape(request.url.path + ("?" + request.url.query if request.url.query else ""))
    orgs = "\n".join(
        f'<label for="org-{o.key}"><input type="radio" id="org-{o.key}" name="org" '
        f'value="{o.key}"{" checked" if i == 0 else ""}> {html.escape(o.name)} '
        f"(org {o.id}, signed in as {html.escape(o.username)})</label>"
        for i, o in enumerate(ORGS)
    )
    scope_items = "".join(f"<li>{html.escape(s)}</li>" for s in scopes)
    body = f"""<p>The app <strong>{html.escape(query["client_id"])}</strong> is requesting
permission to access your Salesforce org:</p>
<ul id="scopes">{scope_items}</ul>
<form method="post" action="{action}">
<fieldset><legend>Log in to</legend>
{orgs}
</fieldset>
<p><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button></p>
</form>"""
    return _page("Allow Access?", body)


@oauth_endpoint
def authorize(
    request: Request, salesforce: SalesforceState, shared: SandboxState, form: dict[str, str]
) -> Response:
    query = dict(request.query_params)
    problem = _check_authorize(query, salesforce)
    if problem:
        return _error_page(problem)
    state = {"state": query["state"]} if "state" in query else {}
    if query.get("response_type") != "code":
        params = {
            "error": "unsupported_response_type",
            "error_description": "response type not supported",
        }
        return _redirect(query["redirect_uri"], params | state)
    scopes = _scopes(query)
    if request.method == "GET":
        return _consent(request, query, scopes)
    if form.get("decision") != "allow":
        params = {"error": "access_denied", "error_description": "end-user denied authorization"}
        return _redirect(query["redirect_uri"], params | state)
    org = form.get("org", "")
    if org not in salesforce.orgs:
        return _error_page("Choose one of the orgs.")
    code = salesforce.issue_code(
        org=org,
        redirect_uri=query["redirect_uri"],
        scopes=scopes,
        challenge=query.get("code_challenge") or None,
        login_url=login_url(request),
    )
    return _redirect(query["redirect_uri"], {"code": code.code} | state)


def _client(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """Client credentials from the form (client_secret_post) or an HTTP Basic header."""
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip()).decode("utf-8")
        except ValueError:
            decoded = ""
        user, _, password = decoded.partition(":")
        client_id, secret = client_id or unquote(user), secret or unquote(password)
    return client_id, secret


def _grant_code(
    request: Request, salesforce: SalesforceState, form: dict[str, str]
) -> Response | tuple[AccessToken, RefreshToken | None]:
    code = salesforce.codes.get(form.get("code", ""))
    if code is None or code.used or code.client_id != salesforce.config.client_id:
        return errors.oauth_error("invalid_grant", "invalid authorization code")
    if code.login_url != login_url(request):
        return errors.oauth_error("invalid_grant", "invalid authorization code")
    if code.expires_at <= time.time():
        return errors.oauth_error("invalid_grant", "expired authorization code")
    if form.get("redirect_uri") != code.redirect_uri:
        return errors.oauth_error("redirect_uri_mismatch", "redirect_uri must match configuration")
    if code.code_challenge is not None:
        verifier = form.get("code_verifier", "")
        if not verifier:
            return errors.oauth_error("invalid_grant", "invalid code verifier")
        if not secrets.compare_digest(pkce_challenge(verifier), code.code_challenge):
            return errors.oauth_error("invalid_request", "invalid code verifier")
    code.used = True
    return salesforce.issue_tokens(org=code.org, scopes=code.scopes, login_url=code.login_url)


def _grant_refresh(
    salesforce: SalesforceState, form: dict[str, str]
) -> Response | tuple[AccessToken, RefreshToken | None]:
    found = salesforce.refresh_tokens.get(form.get("refresh_token", ""))
    if found is None or found.client_id != salesforce.config.client_id:
        return errors.oauth_error("invalid_grant", "expired access/refresh token")
    if found.revoked:
        return errors.oauth_error("invalid_grant", found.revoked_reason)
    if salesforce.config.rotate_refresh_tokens:
        salesforce.revoke(found)
        return salesforce.issue_tokens(
            org=found.org, scopes=found.scopes, login_url=found.login_url
        )
    access = salesforce.issue_access(
        org=found.org, scopes=found.scopes, login_url=found.login_url, refresh=found
    )
    return access, None  # Salesforce's refresh answer carries no refresh_token


def _token_server_error() -> Response:
    return errors.oauth_error("unknown_error", "retry your request", 500)


def _identity_server_error() -> Response:
    return errors.error(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.")


@faulty("token", _token_server_error)
@oauth_endpoint
def token(
    request: Request, salesforce: SalesforceState, shared: SandboxState, form: dict[str, str]
) -> Response:
    grant_type = form.get("grant_type", "")
    if grant_type not in ("authorization_code", "refresh_token"):
        return errors.oauth_error("unsupported_grant_type", "grant type not supported")
    client_id, secret = _client(request, form)
    if client_id != salesforce.config.client_id:
        return errors.oauth_error("invalid_client_id", "client identifier invalid")
    if not secrets.compare_digest(secret.encode(), salesforce.config.client_secret.encode()):
        return errors.oauth_error("invalid_client", "invalid client credentials")
    grant = (
        _grant_code(request, salesforce, form)
        if grant_type == "authorization_code"
        else _grant_refresh(salesforce, form)
    )
    if isinstance(grant, Response):
        return grant
    access, refresh = grant
    shared.counters.token_grants[f"salesforce:{grant_type}"] += 1
    response = errors.respond(salesforce.token_answer(access, refresh))
    response.headers["Cache-Control"] = "no-store"
    return response


@oauth_endpoint
def revoke(
    request: Request, salesforce: SalesforceState, shared: SandboxState, form: dict[str, str]
) -> Response:
    value = form.get("token") or request.query_params.get("token", "")
    refresh = salesforce.live_refresh(value)
    if refresh is not None:
        salesforce.revoke(refresh)
        return Response(status_code=200)
    access = salesforce.access_tokens.get(value)
    if access is not None and access.live():
        access.revoked = True
        return Response(status_code=200)
    return errors.oauth_error("invalid_token", "invalid token")


def bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    params = request.query_params
    return params.get("oauth_token") or params.get("access_token") or ""


def identity(
    salesforce: SalesforceState, access: AccessToken, version: str | None
) -> dict[str, Any]:
    org = salesforce.orgs[access.org].org
    instance = salesforce.config.instance_url
    v = API_VERSION if version in (None, "latest") else version
    photo = f"{instance}/profilephoto/005/"
    return {
        "id": salesforce.identity_url(access),
        "asserted_user": True,
        "user_id": org.user_id,
        "organization_id": org.id,
        "username": org.username,
        "nick_name": org.username.split("@")[0],
        "display_name": org.display_name,
        "email": org.username,
        "email_verified": True,
        "first_name": org.first_name,
        "last_name": org.last_name,
        "timezone": "Europe/London",
        "photos": {"picture": photo + "F", "thumbnail": photo + "T"},
        "addr_street": None,
        "addr_city": None,
        "addr_state": None,
        "addr_country": org.country,
        "addr_zip": None,
        "mobile_phone": None,
        "mobile_phone_verified": False,
        "is_lightning_login_user": False,
        "status": {"created_date": None, "body": None},
        "urls": {
            "enterprise": f"{instance}/services/Soap/c/{v}/{ids.short(org.id)}",
            "metadata": f"{instance}/services/Soap/m/{v}/{ids.short(org.id)}",
            "partner": f"{instance}/services/Soap/u/{v}/{ids.short(org.id)}",
            "rest": f"{instance}/services/data/v{v}/",
            "sobjects": f"{instance}/services/data/v{v}/sobjects/",
            "search": f"{instance}/services/data/v{v}/search/",
            "query": f"{instance}/services/data/v{v}/query/",
            "recent": f"{instance}/services/data/v{v}/recent/",
            "tooling_soap": f"{instance}/services/Soap/T/{v}/{ids.short(org.id)}",
            "tooling_rest": f"{instance}/services/data/v{v}/tooling/",
            "profile": f"{instance}/{org.user_id}",
            "feeds": f"{instance}/services/data/v{v}/chatter/feeds",
            "groups": f"{instance}/services/data/v{v}/chatter/groups",
            "users": f"{instance}/services/data/v{v}/chatter/users",
            "feed_items": f"{instance}/services/data/v{v}/chatter/feed-items",
            "feed_elements": f"{instance}/services/data/v{v}/chatter/feed-elements",
            "custom_domain": instance,
        },
        "active": True,
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_GB",
        "utcOffset": 0,
        "last_modified_date": salesforce.orgs[access.org].created,
        "is_app_installed": True,
    }


@faulty("identity", _identity_server_error)
@oauth_endpoint
def identity_endpoint(
    request: Request, salesforce: SalesforceState, shared: SandboxState, form: dict[str, str]
) -> Response:
    access = salesforce.access_tokens.get(bearer(request))
    if access is None or not access.live():
        return PlainTextResponse("Bad_OAuth_Token", status_code=403)
    org = salesforce.orgs[access.org].org
    wanted = (
        ids.normalize(str(request.path_params["org_id"])),
        ids.normalize(str(request.path_params["user_id"])),
    )
    if wanted != (org.id, org.user_id):
        return PlainTextResponse("Bad_Id", status_code=403)
    return errors.respond(identity(salesforce, access, request.query_params.get("version")))
