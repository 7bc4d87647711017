"""The connect flow: start (state + PKCE verifier kept here) and callback (state checked once,
code exchanged, identity read, connection created or updated)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor
from accounts.connect_sessions import ConnectSessionClaims
from core.errors import AppError, PermissionDenied

from ..models import AttemptStatus, Connection, OAuthAttempt
from ..oauth_client import authorization_url, token_exchange_code
from ..providers.base import AccountIdentity, TokenSet
from ..providers.registry import get_provider
from .connections import connection_upsert

logger = logging.getLogger("switchboard.oauth")


class OAuthFailure(Exception):
    """The flow ended without a connection. ``code`` is stable; ``message`` is for people."""

    def __init__(
        self, code: str, message: str, attempt_id: uuid.UUID | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.attempt_id = attempt_id
        self.status = status


@dataclass(frozen=True, slots=True)
class Started:
    attempt_id: uuid.UUID
    state: str
    authorize_url: str


def oauth_start(
    *,
    organization_id: uuid.UUID,
    provider_key: str,
    user_id: int | None,
    connect_session: ConnectSessionClaims | None,
    environment: str | None = None,
    domain: str | None = None,
) -> Started:
    """Record an attempt and return where to send the browser. Raises ``NotFound`` for an
    unknown provider, ``PermissionDenied`` for one the connect session does not allow and
    ``ValidationFailed`` for a login host choice the provider refuses."""
    provider = get_provider(provider_key)
    if connect_session is not None and not connect_session.allows(provider_key):
        raise PermissionDenied(f"This link does not allow connecting {provider.display_name}.")
    login_url = provider.login_url(environment, domain)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64) if provider.use_pkce else ""
    attempt = OAuthAttempt.objects.create(
        organization_id=organization_id,
        provider=provider_key,
        state=state,
        code_verifier=verifier,
        redirect_uri=provider.config.redirect_uri,
        login_url=login_url,
        initiated_by_id=user_id,
        connect_session_id=connect_session.session_id if connect_session else None,
        end_user=connect_session.end_user.model_dump()
        if connect_session and connect_session.end_user
        else None,
        expires_at=timezone.now() + timedelta(seconds=settings.OAUTH_ATTEMPT_TTL_SECONDS),
    )
    url = authorization_url(
        provider, state=state, code_verifier=verifier or None, login_url=login_url
    )
    return Started(attempt_id=attempt.pk, state=state, authorize_url=url)


def _fail(attempt: OAuthAttempt, code: str, message: str) -> OAuthFailure:
    attempt.status = AttemptStatus.FAILED
    attempt.error_code, attempt.error_message = code, message
    attempt.completed_at = timezone.now()
    attempt.save(update_fields=["status", "error_code", "error_message", "completed_at"])
    return OAuthFailure(code, message, attempt.pk)


def _claim(*, provider_key: str, state: str, browser_states: list[str]) -> OAuthAttempt:
    """Take the attempt for this state, once. Refusals are recorded on the attempt (a reused
    state keeps the outcome of its first use)."""
    with transaction.atomic():
        attempt = OAuthAttempt.objects.select_for_update().filter(state=state).first()
        if attempt is None or attempt.provider != provider_key:
            raise OAuthFailure("unknown_state", "This sign-in link is not one we started.")
        if attempt.status != AttemptStatus.PENDING:
            logger.warning("OAuth state reused", extra={"attempt_id": str(attempt.pk)})
            raise OAuthFailure("state_reused", "This sign-in link was already used.", attempt.pk)
        if state not in browser_states:
            # Started in another browser: finishing here could attach someone else's account.
            failure = _fail(attempt, "state_not_bound", "This sign-in was started elsewhere.")
        elif attempt.expires_at <= timezone.now():
            failure = _fail(attempt, "expired", "This sign-in took too long; please start again.")
        else:
            attempt.status = AttemptStatus.EXCHANGING
            attempt.save(update_fields=["status"])
            return attempt
    raise failure  # after the block: the attempt's failure is committed


async def oauth_complete(
    *,
    provider_key: str,
    state: str,
    code: str | None,
    error: str | None,
    error_description: str | None,
    browser_states: list[str],
) -> Connection:
    """Finish the flow from the provider's callback. Raises ``OAuthFailure``."""
    attempt = await sync_to_async(_claim)(
        provider_key=provider_key, state=state, browser_states=browser_states
    )
    fail = sync_to_async(_fail)
    try:  # configured when the flow started, but settings can change while a person consents
        provider = get_provider(provider_key)
    except AppError as exc:
        unconfigured = await fail(attempt, "not_configured", exc.message)
        unconfigured.status = exc.status
        raise unconfigured from exc
    if error:
        if error == "access_denied":
            raise await fail(attempt, "consent_denied", "Access was not granted.")
        detail = (error_description or error)[:200]
        raise await fail(attempt, "provider_error", f"The provider reported an error: {detail}")
    if not code:
        raise await fail(attempt, "provider_error", "The provider sent no authorization code.")
    try:
        tokens: TokenSet = await asyncio.to_thread(
            token_exchange_code,
            provider,
            code=code,
            code_verifier=attempt.code_verifier or None,
            redirect_uri=attempt.redirect_uri,
            login_url=attempt.login_url or None,
        )
    except AppError as exc:
        raise await fail(attempt, "code_exchange_failed", exc.message) from exc
    identity = await provider.fetch_identity(tokens)
    if (refused := identity.error) is not None:
        raise await fail(attempt, "identity_failed", refused.message)
    return await sync_to_async(_finish)(attempt, tokens, identity.unwrap())


def _finish(attempt: OAuthAttempt, tokens: TokenSet, identity: AccountIdentity) -> Connection:
    with transaction.atomic():
        actor = (
            Actor(label=f"user:{attempt.initiated_by}", user_id=attempt.initiated_by_id)
            if attempt.initiated_by_id
            else Actor(label=f"connect_session:{attempt.connect_session_id}")
        )
        connection = connection_upsert(
            organization_id=attempt.organization_id,
            provider_key=attempt.provider,
            tokens=tokens,
            identity=identity,
            connected_by_id=attempt.initiated_by_id,
            end_user=attempt.end_user,
            actor=actor,
        )
        attempt.status = AttemptStatus.SUCCEEDED
        attempt.connection = connection
        attempt.completed_at = timezone.now()
        attempt.code_verifier = ""  # spent; nothing secret stays behind
        attempt.save(update_fields=["status", "connection", "completed_at", "code_verifier"])
    return connection
