"""Reads of the outbox, scoped to an organisation (another organisation's write is not found)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.errors import NotFound

from ..models import CrmWrite, WriteStatus


def write_list(
    *,
    organization_id: uuid.UUID,
    status: WriteStatus | None = None,
    connection_id: uuid.UUID | None = None,
    operation: str | None = None,
    batch_key: str | None = None,
) -> QuerySet[CrmWrite]:
    """The organisation's writes, optionally filtered (``batch_key``: the items of one batch
    request, whose keys are ``<batch_key>:<index>``)."""
    writes = CrmWrite.objects.filter(organization_id=organization_id)
    if status is not None:
        writes = writes.filter(status=status)
    if connection_id is not None:
        writes = writes.filter(connection_id=connection_id)
    if operation is not None:
        writes = writes.filter(operation=operation)
    if batch_key is not None:
        writes = writes.filter(idempotency_key__startswith=f"{batch_key}:")
    return writes


async def write_for(*, organization_id: uuid.UUID, write_id: uuid.UUID | str) -> CrmWrite:
    """The organisation's write, or ``NotFound`` (also for a malformed id)."""
    try:
        pk = uuid.UUID(str(write_id))
    except ValueError:
        raise NotFound("No such write.", details={"id": str(write_id)}) from None
    write = await CrmWrite.objects.filter(organization_id=organization_id, pk=pk).afirst()
    if write is None:
        raise NotFound("No such write.", details={"id": str(write_id)})
    return write
