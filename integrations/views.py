"""The connect wizard: plain HTML pages that work without JavaScript.

Two kinds of visitor: a signed-in member of the organisation, or an end customer holding a
connect-session link (``/connect/?session=<token>``), who sees only that organisation and the
providers the session allows. The token is kept in the browser's session for the next steps;
only the index page takes a link, so a link can never start a flow unseen.

The callback is finished only by the browser that started the flow (the state is kept in its
session) and only while it still acts for the same visitor: the same connect session, or the same
signed-in member, still a member of the organisation (see ``services.oauth``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from accounts.connect_sessions import ConnectSessionClaims, connect_session_verify
from accounts.models import Organization
from accounts.selectors import membership_list
from core.errors import AppError

from .models import Connection
from .providers.registry import available_providers
from .selectors import connection_list
from .services.oauth import (
    Browser,
    OAuthFailure,
    oauth_complete,
    oauth_start,
    refuse_without_attempt,
)

logger = logging.getLogger("switchboard.connect")

SESSION_TOKEN_KEY = "connect_session_token"  # noqa: S105 - a session key name
SESSION_STATES_KEY = "oauth_states"
MAX_PENDING_STATES = 5


@dataclass(frozen=True, slots=True)
class Visitor:
    organization: Organization
    user_id: int | None
    claims: ConnectSessionClaims | None


class WizardError(Exception):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


async def _visitor(request: HttpRequest, *, from_link: bool = True) -> Visitor:
    """Who is using the wizard. ``from_link``: a ``session`` parameter (a connect-session link)
    is taken; only the index takes one, so a link can never start a flow before the person saw
    which organisation it connects to."""
    token = request.GET.get("session") if from_link else None
    if token:
        await request.session.aset(SESSION_TOKEN_KEY, token)
    else:
        token = await request.session.aget(SESSION_TOKEN_KEY)
    if token:
        try:
            claims = connect_session_verify(token)
        except AppError as exc:
            await request.session.apop(SESSION_TOKEN_KEY, None)
            raise WizardError(exc.code, exc.message, exc.status) from exc
        organization = await Organization.objects.filter(pk=claims.organization_id).afirst()
        if organization is None:
            raise WizardError("not_found", "This link's organisation no longer exists.", 404)
        return Visitor(organization=organization, user_id=None, claims=claims)
    user = await request.auser()
    if not user.is_authenticated:
        raise WizardError(
            "unauthenticated", "Sign in, or open the connect link you were given.", 401
        )
    memberships = membership_list(user_id=user.pk)
    wanted = request.GET.get("org")
    if wanted:
        memberships = memberships.filter(organization__slug=wanted)
    membership = await memberships.afirst()
    if membership is None:
        raise WizardError("permission_denied", "You are not a member of an organisation.", 403)
    return Visitor(organization=membership.organization, user_id=user.pk, claims=None)


async def _render(
    request: HttpRequest, template: str, context: dict[str, object], status: int = 200
) -> HttpResponse:
    # Templates read request.user and the session lazily, synchronously: render in a thread.
    return await sync_to_async(render)(request, template, context, status=status)


async def _embedded(request: HttpRequest) -> bool:
    """Whether this browser came with a connect-session link (no site navigation then)."""
    return bool(request.GET.get("session") or await request.session.aget(SESSION_TOKEN_KEY))


async def _error(request: HttpRequest, code: str, message: str, status: int) -> HttpResponse:
    context = {"code": code, "message": message, "embedded": await _embedded(request)}
    return await _render(request, "connect/error.html", context, status=status)


async def connect_index(request: HttpRequest) -> HttpResponse:
    try:
        visitor = await _visitor(request)
    except WizardError as exc:
        return await _error(request, exc.code, exc.message, exc.status)
    providers = [
        p for p in available_providers() if visitor.claims is None or visitor.claims.allows(p.key)
    ]
    connections = connection_list(organization_id=visitor.organization.pk).filter(
        provider__in=[p.key for p in providers]
    )
    if visitor.claims is not None and visitor.claims.end_user is not None:
        connections = connections.filter(end_user__id=visitor.claims.end_user.id)
    names = {p.key: p.display_name for p in providers}
    rows: list[tuple[Connection, str]] = [
        (c, names.get(c.provider, c.provider))
        async for c in connections.order_by("provider", "display_name")
    ]
    return await _render(
        request,
        "connect/index.html",
        {
            "organization": visitor.organization,
            "providers": providers,
            "connections": rows,
            "embedded": visitor.claims is not None,
        },
    )


async def connect_start(request: HttpRequest, provider: str) -> HttpResponse:
    try:
        visitor = await _visitor(request, from_link=False)
        started = await sync_to_async(oauth_start)(
            organization_id=visitor.organization.pk,
            provider_key=provider,
            user_id=visitor.user_id,
            connect_session=visitor.claims,
            environment=request.GET.get("environment") or None,
            domain=(request.GET.get("domain") or "").strip() or None,
        )
    except WizardError as exc:
        return await _error(request, exc.code, exc.message, exc.status)
    except AppError as exc:
        return await _error(request, exc.code, exc.message, exc.status)
    # Bind the attempt to this browser: only it may finish the flow.
    states = list(await request.session.aget(SESSION_STATES_KEY, []))
    states = [*states, started.state][-MAX_PENDING_STATES:]
    await request.session.aset(SESSION_STATES_KEY, states)
    return HttpResponseRedirect(started.authorize_url)


async def _browser(request: HttpRequest) -> Browser:
    """Who is finishing a flow in this browser. Only what the browser's session holds counts
    (a ``session`` parameter on the callback URL is not read: the provider never adds one)."""
    states = [str(s) for s in await request.session.aget(SESSION_STATES_KEY, [])]
    token = await request.session.aget(SESSION_TOKEN_KEY)
    if token:
        try:
            claims = connect_session_verify(str(token))
        except AppError as exc:
            expired = exc.details.get("reason") == "expired"
            return Browser(states=states, connect_link_expired=expired)
        return Browser(states=states, connect_session=claims)
    user = await request.auser()
    return Browser(states=states, user_id=user.pk if user.is_authenticated else None)


async def connect_callback(request: HttpRequest, provider: str) -> HttpResponse:
    params = request.GET
    state = params.get("state", "")
    browser = await _browser(request)
    try:
        if not state:
            raise refuse_without_attempt(
                provider_key=provider, code="missing_state", actor=browser.actor()
            )
        connection = await oauth_complete(
            provider_key=provider,
            state=state,
            code=params.get("code"),
            error=params.get("error"),
            error_description=params.get("error_description"),
            browser=browser,
        )
    except OAuthFailure as exc:
        logger.info(
            "connect failed: %s",
            exc.code,
            extra={
                "provider": provider,
                "attempt_id": str(exc.attempt_id or ""),
                "reason": exc.code,
            },
        )
        return await _error(request, exc.code, exc.message, exc.status)
    finally:
        if state and state in browser.states:  # spent, whatever the outcome
            states = [s for s in browser.states if s != state]
            await request.session.aset(SESSION_STATES_KEY, states)
    context = {
        "connection": connection,
        "back": reverse("connect:index"),
        "embedded": await _embedded(request),
    }
    return await _render(request, "connect/success.html", context)
