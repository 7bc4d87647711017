"""Syncs and the mirror under /api/v1 (async, enveloped, organisation-scoped).

``POST /connections/{id}/syncs`` queues syncs (202), ``GET`` lists them with live progress;
``GET /connections/{id}/records`` serves records from the local mirror (no provider call):
filter by object type, modification time and deletion, keyset-paginated in id order so a
client can page through a large mirror without missing or repeating a row.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from ninja import Query, Router, Status
from pydantic import BaseModel, ConfigDict, Field

from accounts.auth import principal_of
from core.envelope import Envelope, PaginationMeta, api_responses, ok
from core.errors import NotFound
from core.pagination import BIGINT_MAX, PageParams, UtcDatetime, invalid_cursor, paginate

from ..api import own_connection
from ..models import CrmRecord, SyncKind, SyncRun, SyncStatus
from ..providers.unified import ObjectType
from ..selectors import connection_list
from .service import object_types_of, sync_cancel, sync_request

router = Router(tags=["syncs"])


class SyncRunOut(BaseModel):
    id: uuid.UUID
    connection_id: uuid.UUID
    object_type: str
    kind: str
    trigger: str
    status: str
    pages: int
    records_seen: int
    records_created: int
    records_updated: int
    records_deleted: int
    errors: int
    error_code: str
    error_message: str
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, run: SyncRun) -> SyncRunOut:
        return cls(
            id=run.pk,
            connection_id=run.connection_id,
            object_type=run.object_type,
            kind=run.kind,
            trigger=run.trigger,
            status=run.status,
            pages=run.pages,
            records_seen=run.records_seen,
            records_created=run.records_created,
            records_updated=run.records_updated,
            records_deleted=run.records_deleted,
            errors=run.errors,
            error_code=run.error_code,
            error_message=run.error_message,
            created_at=run.created_at,
            started_at=run.started_at,
            heartbeat_at=run.heartbeat_at,
            finished_at=run.finished_at,
        )


class SyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    object: ObjectType | None = Field(None, description="One object type; all when omitted.")
    kind: Literal["full", "incremental"] | None = Field(
        None, description="Default: full until a full read completed, then incremental."
    )


class SyncListParams(PageParams):
    object: ObjectType | None = None
    status: SyncStatus | None = None


class MirrorRecordOut(BaseModel):
    id: str = Field(description="The provider's record id.")
    object_type: str
    fields: dict[str, Any] = Field(description="Unified fields (email, name, amount...).")
    properties: dict[str, Any] = Field(description="The provider's own fields, as last read.")
    created_at: datetime | None = Field(description="When the provider created it.")
    updated_at: datetime | None = Field(description="When the provider last changed it.")
    deleted_at: datetime | None = Field(description="Set when the provider deleted it.")
    synced_at: datetime = Field(description="When the mirror last stored it.")


class RecordParams(BaseModel):
    object: ObjectType
    updated_since: UtcDatetime | None = Field(
        None,
        description="Only records the provider changed at or after this time (no offset: UTC).",
    )
    include_deleted: bool = False
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, description="`meta.pagination.next_cursor` of the last page.")


def _encode(pk: int) -> str:
    return base64.urlsafe_b64encode(str(pk).encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        pk = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_cursor() from exc
    if not 0 <= pk <= BIGINT_MAX:  # a row id: a PostgreSQL bigint
        raise invalid_cursor()
    return pk


@router.post(
    "/connections/{connection_id}/syncs",
    response=api_responses(Envelope[list[SyncRunOut]], status=202),
    summary="Start syncing into the mirror (one run per object type)",
)
async def syncs_start(
    request: HttpRequest, connection_id: str, body: SyncIn
) -> Status[Envelope[list[SyncRunOut]]]:
    p = principal_of(request)
    connection = await own_connection(request, connection_id)
    kinds = [body.object] if body.object else list(object_types_of(connection))
    runs = []
    for object_type in kinds:
        run, _ = await sync_to_async(sync_request)(
            connection=connection,
            object_type=object_type,
            trigger="api",
            kind=SyncKind(body.kind) if body.kind else None,
            requested_by=p.actor.label,
        )
        runs.append(SyncRunOut.of(run))
    return Status(202, ok(runs))


@router.get(
    "/connections/{connection_id}/syncs",
    response=api_responses(Envelope[list[SyncRunOut]]),
    summary="Syncs of a connection, newest first, with their progress",
)
async def syncs_list(
    request: HttpRequest, connection_id: str, params: Query[SyncListParams]
) -> Envelope[list[SyncRunOut]]:
    connection = await own_connection(request, connection_id)
    runs = SyncRun.objects.filter(connection=connection)
    if params.object:
        runs = runs.filter(object_type=params.object)
    if params.status:
        runs = runs.filter(status=params.status)
    rows, meta = await paginate(runs, params)
    return ok([SyncRunOut.of(r) for r in rows], pagination=meta)


async def _run(request: HttpRequest, connection_id: str, run_id: str) -> SyncRun:
    connection = await own_connection(request, connection_id)
    try:
        run_uuid = uuid.UUID(run_id)
    except ValueError:
        raise NotFound("No such sync.") from None
    run = await SyncRun.objects.filter(pk=run_uuid, connection=connection).afirst()
    if run is None:
        raise NotFound("No such sync.")
    return run


@router.get(
    "/connections/{connection_id}/syncs/{run_id}",
    response=api_responses(Envelope[SyncRunOut]),
    summary="One sync and its progress",
)
async def syncs_get(request: HttpRequest, connection_id: str, run_id: str) -> Envelope[SyncRunOut]:
    return ok(SyncRunOut.of(await _run(request, connection_id, run_id)))


@router.post(
    "/connections/{connection_id}/syncs/{run_id}/cancel",
    response=api_responses(Envelope[SyncRunOut]),
    summary="Cancel a queued or running sync (it stops between pages)",
)
async def syncs_cancel(
    request: HttpRequest, connection_id: str, run_id: str
) -> Envelope[SyncRunOut]:
    run = await _run(request, connection_id, run_id)
    return ok(SyncRunOut.of(await sync_to_async(sync_cancel)(run=run)))


@router.get(
    "/connections/{connection_id}/records",
    response=api_responses(Envelope[list[MirrorRecordOut]]),
    summary="Records from the local mirror (no provider call)",
)
async def records_list(
    request: HttpRequest, connection_id: str, params: Query[RecordParams]
) -> Envelope[list[MirrorRecordOut]]:
    p = principal_of(request)
    after = _decode(params.cursor) if params.cursor else None
    page = await sync_to_async(_records_page)(p.organization_id, connection_id, params, after)
    has_more = len(page) > params.limit
    page = page[: params.limit]
    data = [
        MirrorRecordOut(
            id=row["external_id"],
            object_type=row["object_type"],
            fields=row["fields"],
            properties=row["raw"],
            created_at=row["remote_created_at"],
            updated_at=row["remote_updated_at"],
            deleted_at=row["deleted_at"],
            synced_at=row["synced_at"],
        )
        for row in page
    ]
    meta = PaginationMeta(
        limit=params.limit,
        next_cursor=_encode(page[-1]["pk"]) if has_more and page else None,
        has_more=has_more,
    )
    return ok(data, pagination=meta)


_RECORD_COLUMNS = (
    "pk",
    "external_id",
    "object_type",
    "fields",
    "raw",
    "remote_created_at",
    "remote_updated_at",
    "deleted_at",
    "synced_at",
)


def _records_page(
    organization_id: uuid.UUID, connection_id: str, params: RecordParams, after: int | None
) -> list[dict[str, Any]]:
    """The connection's check and one page more than asked, in one trip to the database
    thread; another organisation's connection is ``NotFound``."""
    try:
        pk = uuid.UUID(connection_id)
    except ValueError:
        pk = None
    if pk is None or not connection_list(organization_id=organization_id).filter(pk=pk).exists():
        raise NotFound("No such connection.", details={"id": connection_id})
    rows = CrmRecord.objects.filter(connection_id=pk, object_type=params.object)
    if not params.include_deleted:
        rows = rows.filter(deleted_at__isnull=True)
    if params.updated_since is not None:
        rows = rows.filter(remote_updated_at__gte=params.updated_since)
    if after is not None:
        rows = rows.filter(pk__gt=after)
    return list(rows.order_by("pk").values(*_RECORD_COLUMNS)[: params.limit + 1])
