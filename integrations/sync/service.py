"""Starting, cancelling and scheduling syncs. The reading itself is ``engine.py``.

``sync_request`` is the one way a sync starts (beat, the API, the admin, a webhook): it stores a
queued ``SyncRun`` and sends the task once the row is committed. A full or incremental sync of a
(connection, object type) that already has one queued or running gets that run back instead of a
second one (the database's partial unique constraint decides); targeted fetches (webhooks) are
never merged that way.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict, ValidationFailed

from ..models import (
    ACTIVE_SYNC_STATUSES,
    Connection,
    ConnectionStatus,
    SyncKind,
    SyncRun,
    SyncState,
    SyncStatus,
)
from ..providers.registry import get_provider
from ..providers.unified import ObjectType

logger = logging.getLogger(__name__)


def _enqueue(run_id: uuid.UUID) -> None:
    from .tasks import sync_run_task  # the task module imports the engine, which imports us

    transaction.on_commit(lambda: sync_run_task.delay(str(run_id)))


def object_types_of(connection: Connection) -> tuple[ObjectType, ...]:
    return get_provider(connection.provider).object_types


def sync_request(
    *,
    connection: Connection,
    object_type: ObjectType,
    trigger: str,
    kind: SyncKind | None = None,
    record_ids: list[str] | None = None,
    requested_by: str = "",
) -> tuple[SyncRun, bool]:
    """Queue a sync; ``(run, created)``. ``kind`` defaults to full until the first full read
    completed, incremental after; ``record_ids`` makes it a targeted fetch of those records."""
    if object_type not in object_types_of(connection):
        raise ValidationFailed(
            f"{connection.provider} connections do not sync {object_type!r}.",
            details={"fields": {"object": "unknown object type"}},
        )
    if connection.status != ConnectionStatus.ACTIVE:
        raise Conflict(
            "The connection is not active; re-authorise it before syncing.",
            details={"status": connection.status},
        )
    if record_ids is not None:
        kind = SyncKind.TARGETED
    elif kind is None:
        state = SyncState.objects.filter(connection=connection, object_type=object_type).first()
        done = state is not None and state.full_completed_at is not None
        kind = SyncKind.INCREMENTAL if done else SyncKind.FULL
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(
                connection=connection,
                object_type=object_type,
                kind=kind,
                trigger=trigger,
                record_ids=record_ids,
                requested_by=requested_by,
            )
            _enqueue(run.pk)
    except IntegrityError:
        active = (
            SyncRun.objects.filter(
                connection=connection,
                object_type=object_type,
                status__in=ACTIVE_SYNC_STATUSES,
            )
            .exclude(kind=SyncKind.TARGETED)
            .first()
        )
        if active is None:  # it finished in between: try once more
            return sync_request(
                connection=connection,
                object_type=object_type,
                trigger=trigger,
                kind=kind,
                record_ids=record_ids,
                requested_by=requested_by,
            )
        return active, False
    logger.info(
        "sync queued",
        extra={"sync_run": str(run.pk), "connection": str(connection.pk), "kind": kind},
    )
    return run, True


async def async_request(**kwargs: Any) -> tuple[SyncRun, bool]:
    return await sync_to_async(sync_request)(**kwargs)


def sync_cancel(*, run: SyncRun) -> SyncRun:
    """Stop a queued or running sync between pages (the cursor stays, so the next sync of
    the same kind continues from it)."""
    updated = SyncRun.objects.filter(pk=run.pk, status__in=ACTIVE_SYNC_STATUSES).update(
        status=SyncStatus.CANCELLED, finished_at=timezone.now(), lease_owner=""
    )
    if not updated:
        raise Conflict(
            "Only a queued or running sync can be cancelled.", details={"status": run.status}
        )
    run.refresh_from_db()
    return run


def frequency_of(connection: Connection) -> timedelta:
    seconds = connection.sync_frequency_seconds or settings.SYNC_DEFAULT_FREQUENCY_SECONDS
    return timedelta(seconds=seconds)


def sync_schedule_due() -> int:
    """Queue a sync for every (active connection, object type) whose time has come; beat
    calls this every minute. Returns how many were queued."""
    now = timezone.now()
    queued = 0
    connections = Connection.objects.usable().filter(sync_enabled=True)
    for connection in connections.iterator():
        states = {s.object_type: s for s in SyncState.objects.filter(connection=connection)}
        for object_type in object_types_of(connection):
            state = states.get(object_type)
            if state is not None and state.next_run_at is not None and state.next_run_at > now:
                continue
            _, created = sync_request(
                connection=connection, object_type=object_type, trigger="schedule"
            )
            queued += int(created)
            SyncState.objects.update_or_create(
                connection=connection,
                object_type=object_type,
                defaults={"next_run_at": now + frequency_of(connection)},
            )
    return queued


def stale_runs(*, lease_seconds: float) -> list[SyncRun]:
    """Running syncs whose worker stopped reporting (killed), and queued ones whose task
    never started (a lost message): the watchdog sends them again."""
    now = timezone.now()
    lease = timedelta(seconds=lease_seconds)
    return list(
        SyncRun.objects.filter(
            Q(status=SyncStatus.RUNNING, heartbeat_at__lt=now - lease)
            | Q(status=SyncStatus.QUEUED, created_at__lt=now - lease)
        )[:100]
    )


def sync_watchdog(*, lease_seconds: float | None = None) -> int:
    lease = settings.SYNC_LEASE_SECONDS if lease_seconds is None else lease_seconds
    runs = stale_runs(lease_seconds=lease)
    for run in runs:
        logger.warning("sync resumed by the watchdog", extra={"sync_run": str(run.pk)})
        _enqueue(run.pk)
    return len(runs)
