"""Access tokens for a connection: refreshed ahead of expiry and after a 401, exactly once.

The refresh runs with the connection row locked (``SELECT ... FOR UPDATE``), so any number of
callers in any number of processes cause one call to the provider: the first refreshes, the
rest wait on the lock and then find the token they were refused already replaced.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from core.errors import AppError, ProviderAuthError

from ..models import Connection, ConnectionStatus
from ..oauth_client import token_refresh
from ..providers.registry import get_provider

logger = logging.getLogger("switchboard.tokens")


def _expiring(connection: Connection) -> bool:
    if connection.token_expires_at is None:
        return False  # providers without an expiry (Salesforce) refresh on a 401 only
    leeway = timedelta(seconds=settings.TOKEN_REFRESH_LEEWAY_SECONDS)
    return connection.token_expires_at - timezone.now() < leeway


def connection_refresh_token(
    *, connection_id: uuid.UUID, rejected: str | None, actor: Actor | None = None
) -> str:
    """A usable access token for the connection, refreshing it if it must be.

    ``rejected``: the token a provider just refused (401), or the token a caller found about
    to expire; if the row already holds another one, that one is returned without a refresh.
    ``None`` forces a refresh (an operator's "refresh now"). Raises ``ProviderAuthError`` when
    the grant is gone (the connection is left ``needs_reauth``, with the reason).
    """
    with transaction.atomic():
        connection = Connection.objects.select_for_update().get(pk=connection_id)
        if connection.status != ConnectionStatus.ACTIVE:
            raise ProviderAuthError(
                "The connection must be re-authorised before it can be used.",
                details={"connection_id": str(connection_id), "status": connection.status},
            )
        if rejected is not None and connection.access_token != rejected:
            return str(connection.access_token)
        try:
            if not connection.refresh_token:
                raise ProviderAuthError(
                    "The connection has no refresh token.", details={"reason": "no_refresh_token"}
                )
            tokens = token_refresh(
                get_provider(connection.provider),
                refresh_token=connection.refresh_token,
                login_url=connection.token_extra.get("login_url"),
            )
        except AppError as exc:
            # Recorded in this transaction, which commits; the caller still gets the error.
            failure = exc
            _record_failure(connection, exc, actor)
        else:
            connection.access_token = tokens.access_token
            connection.refresh_token = tokens.refresh_token or connection.refresh_token
            connection.token_expires_at = tokens.expires_at
            connection.last_refreshed_at = timezone.now()
            connection.scopes = tokens.scopes or connection.scopes
            connection.token_extra = {**connection.token_extra, **tokens.extra}
            connection.save()
            logger.info(
                "refreshed tokens of %s connection %s",
                connection.provider,
                connection.pk,
                extra={"connection_id": str(connection.pk), "provider": connection.provider},
            )
            return tokens.access_token
    raise failure


def _record_failure(connection: Connection, error: AppError, actor: Actor | None) -> None:
    connection.last_error_code, connection.last_error = error.code, error.message
    if not isinstance(error, ProviderAuthError):
        connection.save(update_fields=["last_error_code", "last_error", "updated_at"])
        return
    # The grant is gone: only a person reconnecting can fix it.
    reason = str(error.details.get("reason", error.code))
    connection.status = ConnectionStatus.NEEDS_REAUTH
    connection.status_reason = f"Refresh refused by the provider ({reason}); reconnect it."
    connection.save()
    audit_record(
        actor=actor or Actor.system("token_refresh"),
        action="connection.needs_reauth",
        entity_type="connection",
        entity_id=connection.pk,
        organization_id=connection.organization_id,
        changes={"reason": reason},
    )


class ConnectionTokens:
    """The ``TokenSource`` of one connection, for its ``CrmClient``.

    ``reuse_seconds``: a token read from the connection (or refreshed) less than this long ago
    is used again without reading the row (0: read it for every call). A sync reuses it for a
    few seconds so that reading its next page needs no database round trip while the worker's
    thread stores the previous page; a token refreshed elsewhere meanwhile still works until
    it expires, and a refusal (401) is refreshed as ever.
    """

    def __init__(self, connection_id: uuid.UUID, *, reuse_seconds: float = 0.0) -> None:
        self.connection_id = connection_id
        self.reuse_seconds = reuse_seconds
        self._held: tuple[str, float] | None = None  # (token, when read: monotonic)

    def _hold(self, token: str) -> str:
        if self.reuse_seconds > 0:
            self._held = (token, time.monotonic())
        return token

    async def access_token(self) -> str:
        held = self._held
        if held is not None and time.monotonic() - held[1] < self.reuse_seconds:
            return held[0]
        connection = await Connection.objects.only(
            "access_token", "token_expires_at", "status"
        ).aget(pk=self.connection_id)
        if connection.status != ConnectionStatus.ACTIVE:
            raise ProviderAuthError(
                "The connection must be re-authorised before it can be used.",
                details={"connection_id": str(self.connection_id), "status": connection.status},
            )
        if _expiring(connection):
            return await self.refresh(connection.access_token)
        return self._hold(str(connection.access_token))

    async def refresh(self, rejected: str) -> str:
        self._held = None
        token = await sync_to_async(connection_refresh_token)(
            connection_id=self.connection_id, rejected=rejected
        )
        return self._hold(token)
