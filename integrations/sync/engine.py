"""Running a sync: pages read through the provider's reader and stored with their cursor.

A run is worked on in slices. A task claims the run (a lease: ``lease_owner`` plus a heartbeat
refreshed with every page), reads pages until the read completes or ``SYNC_SLICE_SECONDS``
pass, then hands the run back to the queue, so one big sync never holds a worker thread for
long and other connections' syncs and writes get their turn. Each page's upserts, deletes,
cursor and progress counters commit in one transaction, and only while this task still holds
the lease: a worker killed at any point loses at most the page in flight, and whoever takes the
run over (the redelivered task, or the watchdog's) resumes from the saved cursor. The next
page is read while the previous one is being stored.

Failures: retryable ones (timeouts, 5xx, 429) are retried in place with exponential backoff and
full jitter (tenacity), never sooner than a ``Retry-After``; when they persist the run goes back
to the queue with a delay. Anything else fails the run with its error code.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

from core.errors import AppError
from core.result import Result

from ..models import Connection, SyncKind, SyncRun, SyncState, SyncStatus
from ..providers.base import CrmClient
from ..providers.unified import ObjectType
from ..services.calls import crm_client_for
from .mirror import Deleted, MirrorCounts, mirror_mark_deleted, mirror_upsert
from .readers import ChangePage, Cursor, reader_for

logger = logging.getLogger(__name__)

TOKEN_REUSE_SECONDS: Final = 5.0

Outcome = Literal["done", "continue", "retry_later", "failed", "cancelled", "not_claimed"]


class LeaseLost(Exception):
    """Another task took the run over (this one was presumed dead): stop, store nothing."""


@dataclass(frozen=True, slots=True)
class SliceResult:
    outcome: Outcome
    retry_in: float = 0.0


def _wait(state: RetryCallState) -> float:
    """Full-jitter exponential backoff, but never sooner than the provider's Retry-After."""
    backoff = wait_random_exponential(
        multiplier=settings.SYNC_RETRY_BASE_SECONDS, max=settings.SYNC_RETRY_MAX_SECONDS
    )(state)
    result = state.outcome.result() if state.outcome and not state.outcome.failed else None
    retry_after = result.error.retry_after if isinstance(result, Result) and result.error else None
    return max(backoff, float(retry_after or 0))


def _retryable(result: Result[Any]) -> bool:
    return result.error is not None and result.error.retryable


# --- claiming ------------------------------------------------------------------------------


def claim(run_id: uuid.UUID | str, owner: str) -> SyncRun | None:
    """Take the run's lease if nobody (alive) holds it; the run, or None."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    taken = (
        SyncRun.objects.filter(pk=run_id, status__in=(SyncStatus.QUEUED, SyncStatus.RUNNING))
        .filter(Q(lease_owner="") | Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=stale))
        .update(status=SyncStatus.RUNNING, lease_owner=owner, heartbeat_at=now)
    )
    if not taken:
        return None
    run = SyncRun.objects.select_related("connection").get(pk=run_id)
    if run.started_at is None:
        run.started_at = now
        SyncRun.objects.filter(pk=run.pk).update(started_at=now)
    return run


def _held(run_id: uuid.UUID, owner: str) -> Q:
    return Q(pk=run_id, lease_owner=owner, status=SyncStatus.RUNNING)


def _heartbeat(run_id: uuid.UUID, owner: str) -> None:
    if not SyncRun.objects.filter(_held(run_id, owner)).update(heartbeat_at=timezone.now()):
        raise LeaseLost(str(run_id))


def _release(run_id: uuid.UUID, owner: str) -> None:
    SyncRun.objects.filter(_held(run_id, owner)).update(lease_owner="")


def _finish(
    run_id: uuid.UUID, owner: str, status: SyncStatus, error: AppError | None = None
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "finished_at": timezone.now(),
        "lease_owner": "",
    }
    if error is not None:
        values |= {
            "error_code": error.code.value,
            "error_message": error.message[:2000],
            "errors": F("errors") + 1,
        }
    SyncRun.objects.filter(_held(run_id, owner)).update(**values)


def _note_error(run_id: uuid.UUID, owner: str, error: AppError) -> None:
    SyncRun.objects.filter(_held(run_id, owner)).update(
        errors=F("errors") + 1,
        error_code=error.code.value,
        error_message=error.message[:2000],
        heartbeat_at=timezone.now(),
    )


# --- storing a page ------------------------------------------------------------------------


def _position(state: SyncState, kind: str, until: datetime) -> tuple[Cursor | None, datetime]:
    """The saved position of an unfinished read of this kind, and its end time."""
    saved = state.cursor or {}
    if saved.get("kind") == kind and saved.get("until"):
        end = parse_datetime(str(saved["until"]))
        if end is not None:
            return saved.get("position"), end
    return None, until


def _store_page(
    *,
    run: SyncRun,
    owner: str,
    kind: str,
    until: datetime,
    since: datetime | None,
    page: ChangePage,
) -> MirrorCounts:
    object_type: ObjectType = run.object_type  # type: ignore[assignment]
    with transaction.atomic():
        state = SyncState.objects.select_for_update().get(
            connection_id=run.connection_id, object_type=run.object_type
        )
        counts = mirror_upsert(
            connection_id=run.connection_id, object_type=object_type, records=page.records
        )
        counts.add(
            mirror_mark_deleted(
                connection_id=run.connection_id, object_type=object_type, deleted=page.deleted
            )
        )
        now = timezone.now()
        if page.cursor is None:
            state.cursor = None
            # Records changed while this read ran are read again by the next one: the
            # overlap also covers the provider's indexing lag.
            overlap = timedelta(seconds=settings.SYNC_OVERLAP_SECONDS)
            state.high_watermark = until - overlap
            state.last_success_at = now
            if kind == SyncKind.FULL:
                state.full_completed_at = now
        else:
            state.cursor = {
                "kind": kind,
                "until": until.isoformat(),
                "since": since.isoformat() if since else None,
                "position": page.cursor,
                "run": str(run.pk),
            }
        state.save(
            update_fields=[
                "cursor",
                "high_watermark",
                "last_success_at",
                "full_completed_at",
                "updated_at",
            ]
        )
        updated = SyncRun.objects.filter(_held(run.pk, owner)).update(
            pages=F("pages") + 1,
            records_seen=F("records_seen") + counts.seen,
            records_created=F("records_created") + counts.created,
            records_updated=F("records_updated") + counts.updated,
            records_deleted=F("records_deleted") + counts.deleted,
            heartbeat_at=now,
        )
        if not updated:
            raise LeaseLost(str(run.pk))  # rolls the page back: the new holder stores it
    return counts


# --- the slice -----------------------------------------------------------------------------


async def _read_page(
    client: CrmClient,
    run: SyncRun,
    owner: str,
    *,
    cursor: Cursor | None,
    since: datetime | None,
    until: datetime,
) -> Result[ChangePage]:
    reader = reader_for(run.connection.provider)
    object_type: ObjectType = run.object_type  # type: ignore[assignment]

    async def beat(state: RetryCallState) -> None:
        await sync_to_async(_heartbeat)(run.pk, owner)

    retrying = AsyncRetrying(
        retry=retry_if_result(_retryable),
        wait=_wait,
        stop=stop_after_attempt(settings.SYNC_PAGE_ATTEMPTS),
        before_sleep=beat,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    result: Result[ChangePage] = await retrying(
        reader.read, client, object_type, cursor=cursor, since=since, until=until
    )
    return result


async def _slice(run: SyncRun, owner: str) -> SliceResult:
    connection: Connection = run.connection
    # The token is read again every few seconds, not for every page: reading a page ahead must
    # not wait for the database work of the page being stored (both run on this task's thread).
    client = crm_client_for(connection, token_reuse_seconds=TOKEN_REUSE_SECONDS)
    deadline = time.monotonic() + settings.SYNC_SLICE_SECONDS
    state, _ = await SyncState.objects.aget_or_create(
        connection_id=connection.pk, object_type=run.object_type
    )
    if run.kind == SyncKind.TARGETED:
        return await _targeted(client, run, owner)
    kind = run.kind
    if kind == SyncKind.INCREMENTAL and state.high_watermark is None:
        kind = SyncKind.FULL  # nothing to be incremental from yet
    since = None if kind == SyncKind.FULL else state.high_watermark
    cursor, until = _position(state, kind, run.created_at)
    if cursor is not None and state.cursor and state.cursor.get("since"):
        since = parse_datetime(str(state.cursor["since"]))

    def read(at: Cursor | None) -> asyncio.Task[Result[ChangePage]]:
        return asyncio.create_task(
            _read_page(client, run, owner, cursor=at, since=since, until=until)
        )

    if await _cancelled(run):
        return SliceResult("cancelled")
    # The next page is read while this one is stored (its cursor comes with the answer), so
    # a page costs the longer of the two, not their sum. A page read ahead and never stored
    # (cancelled, lease lost, a crash) is read again by whoever resumes from the saved cursor.
    ahead: asyncio.Task[Result[ChangePage]] | None = read(cursor)
    try:
        while ahead is not None:
            page = await ahead
            ahead = None
            if page.error is not None:
                error = page.error
                if error.retryable:
                    await sync_to_async(_note_error)(run.pk, owner, error)
                    await sync_to_async(_release)(run.pk, owner)
                    return SliceResult("retry_later", max(float(error.retry_after or 0), 30.0))
                await sync_to_async(_finish)(run.pk, owner, SyncStatus.FAILED, error)
                logger.warning(
                    "sync failed",
                    extra={"sync_run": str(run.pk), "error_code": error.code.value},
                )
                return SliceResult("failed")
            answer = page.unwrap()
            if answer.cursor is not None and time.monotonic() < deadline:
                ahead = read(answer.cursor)
            await sync_to_async(_store_page)(
                run=run, owner=owner, kind=kind, until=until, since=since, page=answer
            )
            if answer.cursor is None:
                await sync_to_async(_finish)(run.pk, owner, SyncStatus.SUCCEEDED)
                return SliceResult("done")
            if ahead is not None and await _cancelled(run):
                return SliceResult("cancelled")
        await sync_to_async(_release)(run.pk, owner)
        return SliceResult("continue")
    finally:
        if ahead is not None:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)


async def _cancelled(run: SyncRun) -> bool:
    """Whether the run stopped being ours to work on (cancelled, or no longer running)."""
    status = await SyncRun.objects.filter(pk=run.pk).values_list("status", flat=True).afirst()
    return status != SyncStatus.RUNNING


async def _targeted(client: CrmClient, run: SyncRun, owner: str) -> SliceResult:
    """Fetch the named records (a webhook said they changed); a 404 means deleted."""
    object_type: ObjectType = run.object_type  # type: ignore[assignment]
    page = ChangePage()
    for record_id in dict.fromkeys(str(i) for i in run.record_ids or []):
        retrying = AsyncRetrying(
            retry=retry_if_result(_retryable),
            wait=_wait,
            stop=stop_after_attempt(settings.SYNC_PAGE_ATTEMPTS),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        found: Result[Any] = await retrying(client.get, object_type, record_id)
        if found.error is None:
            page.records.append(found.unwrap())
        elif found.error.code.value == "not_found":
            page.deleted.append(Deleted(external_id=record_id))
        elif found.error.retryable:
            await sync_to_async(_note_error)(run.pk, owner, found.error)
            await sync_to_async(_release)(run.pk, owner)
            return SliceResult("retry_later", max(float(found.error.retry_after or 0), 30.0))
        else:
            await sync_to_async(_finish)(run.pk, owner, SyncStatus.FAILED, found.error)
            return SliceResult("failed")

    def store() -> None:
        with transaction.atomic():
            counts = mirror_upsert(
                connection_id=run.connection_id, object_type=object_type, records=page.records
            )
            counts.add(
                mirror_mark_deleted(
                    connection_id=run.connection_id, object_type=object_type, deleted=page.deleted
                )
            )
            updated = SyncRun.objects.filter(_held(run.pk, owner)).update(
                pages=1,
                records_seen=counts.seen,
                records_created=counts.created,
                records_updated=counts.updated,
                records_deleted=counts.deleted,
                status=SyncStatus.SUCCEEDED,
                finished_at=timezone.now(),
                lease_owner="",
            )
            if not updated:
                raise LeaseLost(str(run.pk))

    await sync_to_async(store)()
    return SliceResult("done")


def run_slice(run_id: uuid.UUID | str, *, owner: str) -> SliceResult:
    """Claim the run and work one slice of it (called by the Celery task)."""
    run = claim(run_id, owner)
    if run is None:
        return SliceResult("not_claimed")
    try:
        return async_to_sync(_slice)(run, owner)
    except LeaseLost:
        logger.warning("sync lease lost; another task has the run", extra={"sync_run": str(run_id)})
        return SliceResult("not_claimed")
    except Exception:
        # Our bug, not the provider's: fail the run visibly instead of retrying forever.
        logger.exception("sync crashed", extra={"sync_run": str(run_id)})
        SyncRun.objects.filter(_held(run.pk, owner)).update(
            status=SyncStatus.FAILED,
            finished_at=timezone.now(),
            lease_owner="",
            error_code="internal_error",
            error_message="The sync stopped on an unexpected error (see the worker log).",
            errors=F("errors") + 1,
        )
        return SliceResult("failed")
