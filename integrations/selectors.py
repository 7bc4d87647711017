"""Reads, scoped to an organisation. Another organisation's row is simply not found."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.errors import NotFound

from .models import Connection, OAuthAttempt


def connection_list(*, organization_id: uuid.UUID) -> QuerySet[Connection]:
    return Connection.objects.for_organization(organization_id)


async def connection_for(
    *, organization_id: uuid.UUID, connection_id: uuid.UUID | str
) -> Connection:
    """The organisation's connection, or ``NotFound`` (also for a malformed id)."""
    try:
        pk = uuid.UUID(str(connection_id))
    except ValueError:
        raise NotFound("No such connection.", details={"id": str(connection_id)}) from None
    connection = await connection_list(organization_id=organization_id).filter(pk=pk).afirst()
    if connection is None:
        raise NotFound("No such connection.", details={"id": str(connection_id)})
    return connection


def oauth_attempt_list(*, organization_id: uuid.UUID) -> QuerySet[OAuthAttempt]:
    return OAuthAttempt.objects.filter(organization_id=organization_id)
