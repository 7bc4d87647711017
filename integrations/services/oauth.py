"""The connect flow: start (state + PKCE verifier kept here) and callback (state checked once,
code exchanged, identity read, connection created or updated).

Every way the callback can fail ends in an ``OAuthFailure`` whose ``code`` is one of
``FAILURES`` and whose ``message`` says, in words for the person in the browser, what went wrong
and what to do; it never carries a token, a code, a secret or the provider's own text (that goes
to the attempt's ``error_message``, for operators). When the state names an attempt, the attempt
ends ``failed`` with that code and an ``oauth_attempt.failed`` audit row (a reused state keeps its
first outcome and writes ``oauth_attempt.reuse_refused``); a state nobody started is a log line
only (anyone can make one up). Tokens a provider issued for a flow that then failed are revoked
there, best effort: nothing of a failed flow stays behind.
"""

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

from accounts.audit import Actor, audit_record
from accounts.connect_sessions import ConnectSessionClaims
from accounts.models import Membership
from core.errors import AppError, PermissionDenied, ProviderError, ProviderUnavailable

from ..models import AttemptStatus, Connection, OAuthAttempt
from ..oauth_client import authorization_url, token_exchange_code
from ..providers.base import AccountIdentity, Provider, TokenSet
from ..providers.registry import PROVIDER_CLASSES, get_provider
from .connections import connection_upsert

logger = logging.getLogger("switchboard.oauth")

START_AGAIN = "Go back to the connections page and start again."
# code -> what went wrong (``{provider}`` is filled in) and what to do.
FAILURES: dict[str, tuple[str, str]] = {
    "missing_state": (
        "This page was opened without the sign-in reference the provider sends back.",
        START_AGAIN,
    ),
    "unknown_state": ("This sign-in link is not one we started.", START_AGAIN),
    "state_reused": (
        "This sign-in link was already used and cannot be used again.",
        "If the account is not connected yet, go back to the connections page and start again.",
    ),
    "state_not_bound": (
        "This sign-in was started in another browser (or the browser's session ended).",
        "Start again in this browser, from the connections page.",
    ),
    "organization_mismatch": (
        "This sign-in was started for another organisation than the one this browser is "
        "connecting now.",
        "Open the connect link (or sign in to the organisation) you started from, and start "
        "again there.",
    ),
    "connect_link_expired": (
        "Your connect link expired while you were signing in to {provider}.",
        "Ask for a new connect link and start again.",
    ),
    "expired": ("This sign-in took longer than 10 minutes.", START_AGAIN),
    "consent_denied": (
        "Access to {provider} was not granted, so nothing was connected.",
        "To connect, start again and choose Allow on {provider}'s page.",
    ),
    "provider_error": (
        "{provider} could not complete the sign-in, so nothing was connected.",
        "Start again; if it keeps failing, ask your {provider} administrator whether this app "
        "may be connected.",
    ),
    "missing_code": (
        "{provider} sent no authorization code back, so nothing was connected.",
        START_AGAIN,
    ),
    "code_exchange_failed": (
        "{provider} did not accept the sign-in (it may have expired or already been used), so "
        "nothing was connected.",
        START_AGAIN,
    ),
    "provider_unavailable": (
        "{provider} did not answer properly while we finished the sign-in, so nothing was "
        "connected.",
        "Try again in a few minutes.",
    ),
    "provider_bad_answer": (
        "{provider} answered the sign-in with something we could not read, so nothing was "
        "connected.",
        "Try again in a few minutes; if it keeps happening, tell your administrator.",
    ),
    "identity_failed": (
        "{provider} did not tell us which account was signed in to, so nothing was connected.",
        "Try again in a few minutes; if it keeps happening, tell your administrator.",
    ),
    "not_configured": (
        "{provider} can no longer be connected on this installation.",
        "Ask your administrator to configure it, then start again.",
    ),
    "internal_error": (
        "Something went wrong on our side while finishing the sign-in, so nothing was connected.",
        "Try again in a few minutes; if it keeps happening, tell your administrator.",
    ),
}
# What a provider's ``error`` parameter may say (RFC 6749 section 4.1.2.1); anything else is
# reported as "unknown" (the parameter is the provider's, or a forger's, free text).
RFC_ERRORS = frozenset(
    {
        "invalid_request",
        "unauthorized_client",
        "access_denied",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
    }
)


def failure_message(code: str, provider_name: str = "The provider") -> str:
    """The sentence a person reads for ``code``: what went wrong, then what to do."""
    what, todo = FAILURES[code]
    return f"{what} {todo}".format(provider=provider_name)


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


@dataclass(frozen=True, slots=True)
class Browser:
    """The browser finishing a flow: the states it started, and who it is now (the connect
    session it holds, which the wizard prefers, or else the signed-in person)."""

    states: list[str]
    user_id: int | None = None
    connect_session: ConnectSessionClaims | None = None
    connect_link_expired: bool = False  # it holds a connect-session link that has expired

    def actor(self) -> Actor:
        if self.connect_session is not None:
            return Actor(label=f"connect_session:{self.connect_session.session_id}")
        if self.user_id is not None:
            return Actor(label=f"user:{self.user_id}", user_id=self.user_id)
        return Actor(label="anonymous")


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


def _provider_name(provider_key: str) -> str:
    """The provider's name for people (never the URL's text: anyone can type a URL)."""
    cls = PROVIDER_CLASSES.get(provider_key)
    return cls.display_name if cls is not None else "The provider"


def _detail(exc: AppError) -> str:
    """What an error says, for operators (the attempt's ``error_message``), bounded."""
    why = exc.details.get("reason") or exc.details.get("status")
    return (f"{exc.code}: {exc.message}" + (f" ({why})" if why else ""))[:300]


def _fail(
    attempt: OAuthAttempt, code: str, actor: Actor, detail: str = "", status: int = 400
) -> OAuthFailure:
    """End the attempt failed with ``code`` (and an audit row); the failure to raise."""
    message = failure_message(code, _provider_name(attempt.provider))
    with transaction.atomic():
        attempt.status = AttemptStatus.FAILED
        attempt.error_code = code
        attempt.error_message = f"{message} [{detail}]" if detail else message
        attempt.completed_at = timezone.now()
        attempt.code_verifier = ""  # nothing secret stays behind
        attempt.save(
            update_fields=["status", "error_code", "error_message", "completed_at", "code_verifier"]
        )
        audit_record(
            actor=actor,
            action="oauth_attempt.failed",
            entity_type="oauth_attempt",
            entity_id=attempt.pk,
            organization_id=attempt.organization_id,
            changes={"provider": attempt.provider, "reason": code},
        )
    return OAuthFailure(code, message, attempt.pk, status)


def refuse_without_attempt(*, provider_key: str, code: str, actor: Actor) -> OAuthFailure:
    """A callback naming no attempt (no state, or one we never issued): a log line, no row."""
    logger.warning(
        "OAuth callback refused: %s",
        code,
        extra={"provider": provider_key, "reason": code, "actor": actor.label},
    )
    return OAuthFailure(code, failure_message(code, _provider_name(provider_key)))


def _is_member(user_id: int, organization_id: uuid.UUID) -> bool:
    return Membership.objects.filter(user_id=user_id, organization_id=organization_id).exists()


def _binding_problem(attempt: OAuthAttempt, browser: Browser) -> str | None:
    """Why this browser may not finish this attempt, if it may not."""
    if attempt.state not in browser.states:
        # Started in another browser: finishing here could attach someone else's account.
        return "state_not_bound"
    claims = browser.connect_session
    if attempt.connect_session_id is not None:
        if claims is None and browser.connect_link_expired:
            return "connect_link_expired"
        if claims is None or claims.session_id != attempt.connect_session_id:
            return "organization_mismatch"
        return None
    # Started by a signed-in member: the same person, still a member, and not in the middle
    # of another organisation's connect link (which the wizard would act for).
    if claims is not None or browser.user_id is None or browser.user_id != attempt.initiated_by_id:
        return "organization_mismatch"
    if not _is_member(browser.user_id, attempt.organization_id):
        return "organization_mismatch"
    return None


def _claim(*, provider_key: str, state: str, browser: Browser) -> OAuthAttempt:
    """Take the attempt for this state, once. Refusals are recorded on the attempt (a reused
    state keeps the outcome of its first use)."""
    actor = browser.actor()
    with transaction.atomic():
        attempt = OAuthAttempt.objects.select_for_update().filter(state=state).first()
        if attempt is None or attempt.provider != provider_key:
            raise refuse_without_attempt(
                provider_key=provider_key, code="unknown_state", actor=actor
            )
        if attempt.status != AttemptStatus.PENDING:
            logger.warning(
                "OAuth state reused",
                extra={"attempt_id": str(attempt.pk), "reason": "state_reused"},
            )
            audit_record(
                actor=actor,
                action="oauth_attempt.reuse_refused",
                entity_type="oauth_attempt",
                entity_id=attempt.pk,
                organization_id=attempt.organization_id,
                changes={"provider": attempt.provider, "status": attempt.status},
            )
            message = failure_message("state_reused", _provider_name(provider_key))
            failure = OAuthFailure("state_reused", message, attempt.pk)
        else:
            problem = _binding_problem(attempt, browser)
            if problem is None and attempt.expires_at <= timezone.now():
                problem = "expired"
            if problem is None:
                attempt.status = AttemptStatus.EXCHANGING
                attempt.save(update_fields=["status"])
                return attempt
            failure = _fail(attempt, problem, actor)
    raise failure  # after the block: what the refusal recorded is committed


def _exchange_failure(exc: AppError) -> str:
    if isinstance(exc, ProviderUnavailable):
        return "provider_unavailable"
    if isinstance(exc, ProviderError) and isinstance(exc.details.get("status"), int):
        return "code_exchange_failed"  # the token endpoint refused the code (4xx)
    return "provider_bad_answer"


async def _discard(provider: Provider, tokens: TokenSet) -> None:
    """Revoke tokens issued for a flow that failed after the exchange (best effort)."""
    try:
        revoked = await provider.revoke(tokens)
    except Exception:  # best effort: the flow has failed already
        logger.warning("could not revoke the tokens of a failed connect", exc_info=True)
        return
    if revoked.error is not None:
        logger.warning(
            "could not revoke the tokens of a failed connect: %s",
            revoked.error.code,
            extra={"provider": provider.key},
        )


async def oauth_complete(
    *,
    provider_key: str,
    state: str,
    code: str | None,
    error: str | None,
    error_description: str | None,
    browser: Browser,
) -> Connection:
    """Finish the flow from the provider's callback. Raises ``OAuthFailure``."""
    attempt = await sync_to_async(_claim)(provider_key=provider_key, state=state, browser=browser)
    actor = browser.actor()

    async def fail(reason: str, detail: str = "", status: int = 400) -> OAuthFailure:
        return await sync_to_async(_fail)(attempt, reason, actor, detail, status)

    try:  # configured when the flow started, but settings can change while a person consents
        provider = get_provider(provider_key)
    except AppError as exc:
        raise await fail("not_configured", _detail(exc), exc.status) from exc
    if error:
        if error == "access_denied":
            raise await fail("consent_denied")
        said = error if error in RFC_ERRORS else "unknown"
        raise await fail("provider_error", f"{said}: {(error_description or '')[:200]}")
    if not code:
        raise await fail("missing_code")
    tokens: TokenSet | None = None
    try:
        tokens = await asyncio.to_thread(
            token_exchange_code,
            provider,
            code=code,
            code_verifier=attempt.code_verifier or None,
            redirect_uri=attempt.redirect_uri,
            login_url=attempt.login_url or None,
        )
        identity = await provider.fetch_identity(tokens)
        if (refused := identity.error) is not None:
            raise await fail("identity_failed", _detail(refused))
        return await sync_to_async(_finish)(attempt, tokens, identity.unwrap())
    except OAuthFailure:
        if tokens is not None:
            await _discard(provider, tokens)
        raise
    except AppError as exc:
        if tokens is not None:  # raised after the exchange
            await _discard(provider, tokens)
            raise await fail("identity_failed", _detail(exc)) from exc
        raise await fail(_exchange_failure(exc), _detail(exc)) from exc
    except Exception as exc:
        # A bug, not the provider: the person still gets a page, the attempt its outcome.
        logger.exception("OAuth callback crashed", extra={"attempt_id": str(attempt.pk)})
        if tokens is not None:
            await _discard(provider, tokens)
        raise await fail("internal_error", type(exc).__name__) from exc


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
