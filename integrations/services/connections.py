"""Connections: created or updated from a finished OAuth flow, tested, disconnected."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from core.errors import AppError
from core.result import Result

from ..models import Connection, ConnectionStatus
from ..providers.base import AccountIdentity, TokenSet
from ..providers.registry import get_provider

logger = logging.getLogger("switchboard.connections")


def connection_upsert(
    *,
    organization_id: uuid.UUID,
    provider_key: str,
    tokens: TokenSet,
    identity: AccountIdentity,
    connected_by_id: int | None,
    end_user: dict[str, Any] | None,
    actor: Actor,
) -> Connection:
    """The organisation's connection to this account, created or (same account) updated with
    the new tokens and scopes. Must run inside a transaction."""
    connection = (
        Connection.objects.select_for_update()
        .filter(
            organization_id=organization_id,
            provider=provider_key,
            external_account_id=identity.external_id,
        )
        .first()
    )
    created = connection is None
    if connection is None:
        connection = Connection(
            organization_id=organization_id,
            provider=provider_key,
            external_account_id=identity.external_id,
        )
    before = None if created else connection.status
    connection.display_name = identity.display_name[:200]
    connection.account_user = (identity.user or "")[:254]
    connection.account_extra = identity.extra
    connection.scopes = identity.scopes or tokens.scopes
    connection.access_token = tokens.access_token
    connection.refresh_token = tokens.refresh_token
    connection.token_expires_at = tokens.expires_at
    connection.token_extra = tokens.extra
    connection.status = ConnectionStatus.ACTIVE
    connection.status_reason = ""
    connection.last_error_code = connection.last_error = ""
    connection.last_refreshed_at = timezone.now()
    if connected_by_id is not None:
        connection.connected_by_id = connected_by_id
    if end_user is not None:
        connection.end_user = end_user
    connection.save()
    audit_record(
        actor=actor,
        action="connection.created" if created else "connection.reauthorized",
        entity_type="connection",
        entity_id=connection.pk,
        organization_id=organization_id,
        changes={
            "provider": provider_key,
            "account": identity.display_name,
            "external_account_id": identity.external_id,
            "scopes": connection.scopes,
            **({"previous_status": before} if before else {}),
        },
    )
    return connection


async def connection_disconnect(*, connection: Connection, actor: Actor) -> bool:
    """Revoke the grant at the provider (best effort, recorded) and delete the connection;
    an audit row keeps what was disconnected, by whom and whether the revoke worked.
    Returns whether the provider confirmed the revoke."""
    revoked: Result[None] = Result.ok(None)
    if connection.status != ConnectionStatus.DISCONNECTED:
        provider = get_provider(connection.provider)
        revoked = await provider.revoke(
            TokenSet(access_token=connection.access_token, refresh_token=connection.refresh_token)
        )
    await sync_to_async(_delete)(connection, actor, revoked)
    return revoked.is_ok


def _delete(connection: Connection, actor: Actor, revoked: Result[None]) -> None:
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="connection.deleted",
            entity_type="connection",
            entity_id=connection.pk,
            organization_id=connection.organization_id,
            changes={
                "provider": connection.provider,
                "account": connection.display_name,
                "external_account_id": connection.external_account_id,
                "revoked_at_provider": revoked.is_ok,
                **({"revoke_error": revoked.error_code} if not revoked.is_ok else {}),
            },
        )
        connection.delete()


async def connection_test(*, connection: Connection) -> Result[dict[str, Any]]:
    """Ask the provider who these tokens belong to, refreshing first if needed.

    Records the outcome on the connection (``last_error``) and returns it as a value.
    """
    from .tokens import ConnectionTokens

    provider = get_provider(connection.provider)
    try:
        access = await ConnectionTokens(connection.pk).access_token()
        identity = await provider.fetch_identity(TokenSet(access_token=access))
    except AppError as exc:
        identity = Result.fail(exc)
    if (error := identity.error) is not None:
        await Connection.objects.filter(pk=connection.pk).aupdate(
            last_error_code=error.code, last_error=error.message
        )
        return Result.fail(error)
    found = identity.unwrap()
    await Connection.objects.filter(pk=connection.pk).aupdate(
        last_error_code="", last_error="", last_used_at=timezone.now()
    )
    return Result.ok({"account": found.display_name, "scopes": found.scopes})
