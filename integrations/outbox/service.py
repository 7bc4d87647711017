"""The write outbox: every CRM write is a ``CrmWrite`` row first, then the provider call.

Callers (the API, admin actions, agent tools) use ``write_submit`` / ``write_batch_submit``;
Celery uses ``write_process`` and ``write_sweep``; people use ``write_replay``.

A write's life: stored ``pending`` (committed before anything is sent) -> claimed (``sending``:
``attempts`` + 1 and a lease: ``next_attempt_at`` = now + ``OUTBOX_LEASE_SECONDS``) -> the call
-> ``succeeded`` (the record in ``result``, the mirror updated), ``failed`` (the provider refused
it: not retryable), ``pending`` again at ``next_attempt_at`` (retryable: backoff or Retry-After),
or ``dead`` (attempts ran out). A claim takes rows with ``select_for_update(skip_locked=True)``
(PostgreSQL; SQLite's IMMEDIATE transactions serialise claims instead), and an outcome is
recorded only while the claim still holds (status ``sending`` and the same ``attempts``: a
fencing token), so two workers never send one write at once and a late worker cannot overwrite
a newer attempt. A lease that expires (the worker died) is an uncertain attempt: the sweep puts
the write back as ``pending`` + ``uncertain``, and an uncertain create is looked up at the
provider before it is sent again (``reconcile.py``).

Idempotency: each write has a key, the caller's (``Idempotency-Key``) or a generated one,
unique per organisation. The same key with the same request (``request_hash``) returns the
stored write without a new call; with a different request it is ``idempotency_key_reused``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal, TypeVar

import orjson
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from accounts.audit import Actor, audit_record
from core.asgi import on_pooled_thread
from core.errors import (
    AppError,
    Conflict,
    ErrorCode,
    ValidationFailed,
)

from ..models import Connection, CrmWrite, WriteOperation, WriteStatus
from ..providers.base import CrmClient
from ..providers.registry import get_provider
from ..providers.unified import (
    ACTIVITY_TYPES,
    WRITABLE_TYPES,
    WRITE_INPUT_MODELS,
    WRITTEN_MODELS,
    AnyWritten,
    Association,
    WritableType,
    is_activity,
)
from ..services.calls import crm_client_for
from . import policy
from .dispatch import publish, publish_now
from .sender import Sender

logger = logging.getLogger("switchboard.outbox")

WriteSource = Literal["api", "admin", "agent", "system"]
SOURCES: Final = frozenset({"api", "admin", "agent", "system"})
SYSTEM: Final = Actor.system("outbox")
TERMINAL: Final = frozenset({WriteStatus.SUCCEEDED, WriteStatus.FAILED, WriteStatus.DEAD})
KEY_MAX: Final = 200
BATCH_KEY_MAX: Final = 190  # item keys are "<key>:<index>"
KEY_CHARS: Final = re.compile(r"[\x20-\x7e]+")  # printable ASCII
SINGLE_CHUNK: Final = 10  # archives / associations sent at once (one claim, one lease)
DB_CHUNK: Final = 500  # ids per IN (...) query

T = TypeVar("T")


class IdempotencyKeyReused(AppError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    status = 422
    default_message = "This Idempotency-Key was already used for a different request."


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One write, validated and normalised (the payload as stored and hashed)."""

    operation: WriteOperation
    object_type: WritableType
    payload: dict[str, Any]
    record_id: str = ""


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """A submitted write as it stands: done (``succeeded``/``failed``/``dead``) or still on its
    way (``pending``/``sending``). ``replayed``: the key had been used for this request before,
    and this is that write (no new call was made)."""

    write: CrmWrite
    replayed: bool = False

    @property
    def status(self) -> WriteStatus:
        return WriteStatus(self.write.status)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def record(self) -> AnyWritten | None:
        """The written record (creates and updates that succeeded): a ``Contact``,
        ``Company``, ``Deal``, ``Note`` or ``Task``."""
        return write_record(self.write)

    @property
    def error(self) -> AppError | None:
        """Why a failed or dead write did not happen, as the error its caller is answered."""
        if self.status not in (WriteStatus.FAILED, WriteStatus.DEAD):
            return None
        stored = (self.write.result or {}).get("error")
        error = policy.error_from(
            stored if isinstance(stored, dict) else None,
            code=self.write.last_error_code,
            message=self.write.last_error or "The write did not happen.",
        )
        error.details = {**error.details, "write_id": str(self.write.pk)}
        return error


def write_record(write: CrmWrite) -> AnyWritten | None:
    if write.status != WriteStatus.SUCCEEDED or not write.result:
        return None
    if write.operation not in (WriteOperation.CREATE, WriteOperation.UPDATE):
        return None
    model = WRITTEN_MODELS[write.object_type]  # type: ignore[index]
    return model.model_validate(write.result)  # type: ignore[return-value]


# --- requests, keys, hashes ---------------------------------------------------------------------


def _validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    # Where and why only: never echo the submitted values back.
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def _record_payload(object_type: WritableType, raw: dict[str, Any] | BaseModel) -> dict[str, Any]:
    data = raw.model_dump(mode="json", exclude_unset=True) if isinstance(raw, BaseModel) else raw
    try:
        parsed = WRITE_INPUT_MODELS[object_type].model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            "The write did not validate.", details={"errors": _validation_errors(exc)}
        ) from exc
    return parsed.model_dump(mode="json", exclude_unset=True)


def write_request(
    *,
    operation: str,
    object_type: str,
    payload: dict[str, Any] | BaseModel | None = None,
    record_id: str | None = None,
) -> WriteRequest:
    """Validate and normalise one write (``ValidationFailed`` when it cannot be a write).

    ``payload``: the record input (creates, updates: a dict or the type's input model), or
    ``{"to_type", "to_id"}`` (associations); archives take none. Notes and tasks
    (``NoteIn``, ``TaskIn``) can only be created."""
    try:
        op = WriteOperation(operation)
    except ValueError:
        raise ValidationFailed(
            f"Unknown write operation {operation!r}.",
            details={"allowed": [o.value for o in WriteOperation]},
        ) from None
    if object_type not in WRITABLE_TYPES:
        raise ValidationFailed(
            f"Unknown object type {object_type!r}.", details={"allowed": list(WRITABLE_TYPES)}
        )
    kind: WritableType = object_type  # type: ignore[assignment]
    if is_activity(kind) and op != WriteOperation.CREATE:
        raise ValidationFailed(
            f"A {kind} can only be created, not {op.value}d: log another one instead.",
            details={"fields": {"operation": "create only"}, "allowed": ["create"]},
        )
    target = (record_id or "").strip()
    if op == WriteOperation.CREATE and target:
        raise ValidationFailed("A create takes no record id.")
    if op != WriteOperation.CREATE and not target:
        raise ValidationFailed(
            f"An {op.value} needs the record's id.", details={"fields": {"record_id": "required"}}
        )
    if len(target) > 64:
        raise ValidationFailed(
            "The record id is too long.", details={"fields": {"record_id": "at most 64"}}
        )
    body: dict[str, Any] = {}
    if op in (WriteOperation.CREATE, WriteOperation.UPDATE):
        body = _record_payload(kind, payload if payload is not None else {})
    elif op == WriteOperation.ASSOCIATE:
        raw = payload.model_dump() if isinstance(payload, BaseModel) else dict(payload or {})
        try:
            association = Association.model_validate(
                {
                    "from_type": kind,
                    "from_id": target,
                    "to_type": raw.get("to_type"),
                    "to_id": raw.get("to_id"),
                }
            )
        except ValidationError as exc:
            raise ValidationFailed(
                "The association did not validate.", details={"errors": _validation_errors(exc)}
            ) from exc
        body = {"to_type": association.to_type, "to_id": association.to_id}
    return WriteRequest(operation=op, object_type=kind, payload=body, record_id=target)


def request_hash(connection_id: uuid.UUID, request: WriteRequest) -> str:
    """sha256 of what the write does (connection, operation, target, payload)."""
    body = {
        "connection": str(connection_id),
        "operation": request.operation.value,
        "object_type": request.object_type,
        "record_id": request.record_id,
        "payload": request.payload,
    }
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def check_key(key: str, *, batch: bool = False) -> str:
    """A caller's idempotency key, or ``ValidationFailed`` (printable ASCII, bounded)."""
    limit = BATCH_KEY_MAX if batch else KEY_MAX
    if not key or not KEY_CHARS.fullmatch(key) or len(key) > limit or not key.strip():
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {limit} printable ASCII characters.",
            details={"fields": {"Idempotency-Key": "invalid"}},
        )
    return key


def _auto_key() -> str:
    return f"auto:{uuid.uuid4()}"


def _chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# --- storing --------------------------------------------------------------------------------------


def _store(
    *,
    connection: Connection,
    keyed: list[tuple[str, WriteRequest]],
    source: str,
    actor: Actor,
    reserve: bool,
    batch_key: str | None,
) -> list[tuple[CrmWrite, bool]]:
    """Each write by its key: the existing one (same request) or a new row, committed.
    ``reserve``: the caller sends the new rows itself right away, so the sweep leaves them
    alone for ``OUTBOX_INLINE_SECONDS``."""
    org = connection.organization_id
    hashes = [request_hash(connection.pk, request) for _, request in keyed]
    for attempt in range(2):
        existing: dict[str, CrmWrite] = {}
        for chunk in _chunks([key for key, _ in keyed], DB_CHUNK):
            for write in CrmWrite.objects.filter(organization_id=org, idempotency_key__in=chunk):
                existing[write.idempotency_key] = write
        for index, ((key, _request), digest) in enumerate(zip(keyed, hashes, strict=True)):
            found = existing.get(key)
            if found is not None and found.request_hash != digest:
                details: dict[str, Any] = {"idempotency_key": key, "write_id": str(found.pk)}
                if batch_key is not None:
                    details["index"] = index
                raise IdempotencyKeyReused(details=details)
        now = timezone.now()
        hold = now + timedelta(seconds=settings.OUTBOX_INLINE_SECONDS) if reserve else now
        new = [
            CrmWrite(
                organization_id=org,
                connection=connection,
                idempotency_key=key,
                request_hash=digest,
                operation=request.operation,
                object_type=request.object_type,
                record_id=request.record_id,
                payload=request.payload,
                source=source,
                requested_by=actor.label[:200],
                max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
                next_attempt_at=hold,
                created_at=now,
            )
            for (key, request), digest in zip(keyed, hashes, strict=True)
            if key not in existing
        ]
        try:
            with transaction.atomic():
                CrmWrite.objects.bulk_create(new, batch_size=DB_CHUNK)
                if new:
                    _audit_stored(connection, new, actor=actor, batch_key=batch_key)
        except IntegrityError:
            if attempt:
                raise
            continue  # a concurrent request stored some of these keys first: read again
        made = {w.idempotency_key: w for w in new}
        return [(made[key], True) if key in made else (existing[key], False) for key, _ in keyed]
    raise AssertionError("unreachable")  # pragma: no cover


def _audit_stored(
    connection: Connection, new: list[CrmWrite], *, actor: Actor, batch_key: str | None
) -> None:
    first = new[0]
    facts: dict[str, Any] = {
        "connection": str(connection.pk),
        "provider": connection.provider,
        "operation": first.operation,
        "object_type": first.object_type,
        "source": first.source,
    }
    if batch_key is not None:
        audit_record(
            actor=actor,
            action="crm_write.batch_created",
            entity_type="crm_write_batch",
            entity_id=batch_key,
            organization_id=connection.organization_id,
            changes=facts | {"writes": len(new)},
        )
        return
    audit_record(
        actor=actor,
        action="crm_write.created",
        entity_type="crm_write",
        entity_id=first.pk,
        organization_id=connection.organization_id,
        changes=facts
        | {
            "idempotency_key": first.idempotency_key,
            "record_id": first.record_id,
            "fields": sorted(k for k in first.payload if k != "properties")
            + sorted(f"properties.{k}" for k in first.payload.get("properties", {})),
        },
    )


# --- submitting -------------------------------------------------------------------------------------


async def write_submit(
    *,
    connection: Connection,
    operation: str,
    object_type: str,
    payload: dict[str, Any] | BaseModel | None = None,
    record_id: str | None = None,
    idempotency_key: str | None = None,
    source: WriteSource = "api",
    actor: Actor,
    inline: bool = True,
    deadline: float | None = None,
) -> WriteOutcome:
    """Store one CRM write, then (``inline``) send it and wait up to ``deadline`` seconds
    (``OUTBOX_INLINE_SECONDS``) for the outcome; otherwise it is queued for a worker.

    Raises ``ValidationFailed`` (bad input, nothing stored) and ``IdempotencyKeyReused``.
    A repeated key with the same request returns the stored write (``replayed``)."""
    if source not in SOURCES:
        raise ValidationFailed(f"Unknown write source {source!r}.")
    request = write_request(
        operation=operation, object_type=object_type, payload=payload, record_id=record_id
    )
    key = check_key(idempotency_key) if idempotency_key is not None else _auto_key()
    [(write, created)] = await sync_to_async(_store)(
        connection=connection,
        keyed=[(key, request)],
        source=source,
        actor=actor,
        reserve=inline,
        batch_key=None,
    )
    if not created:
        return WriteOutcome(write, replayed=True)
    if not inline:
        await publish([write.pk])
        return WriteOutcome(write)
    await _inline([write.pk], deadline)
    return WriteOutcome(await CrmWrite.objects.aget(pk=write.pk))


async def write_batch_submit(
    *,
    connection: Connection,
    operation: str,
    object_type: str,
    items: Sequence[tuple[str | None, dict[str, Any] | BaseModel | None]],
    idempotency_key: str | None = None,
    source: WriteSource = "api",
    actor: Actor,
    inline: bool = True,
    deadline: float | None = None,
) -> list[WriteOutcome]:
    """Store many writes of one operation and type (``items``: ``(record_id, payload)``),
    each a ``CrmWrite`` keyed ``<key>:<index>``, and send them in provider-sized batch calls.
    Returns one outcome per item, in order. Batches above ``OUTBOX_INLINE_BATCH_MAX`` are
    queued rather than sent inline."""
    if source not in SOURCES:
        raise ValidationFailed(f"Unknown write source {source!r}.")
    base = check_key(idempotency_key, batch=True) if idempotency_key is not None else _auto_key()
    requests: list[tuple[str, WriteRequest]] = []
    for index, (record_id, payload) in enumerate(items):
        try:
            request = write_request(
                operation=operation, object_type=object_type, payload=payload, record_id=record_id
            )
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"Item {index} did not validate: {exc.message}",
                details={"index": index, **exc.details},
            ) from exc
        requests.append((f"{base}:{index}", request))
    if not requests:
        return []
    inline = inline and len(requests) <= settings.OUTBOX_INLINE_BATCH_MAX
    stored = await sync_to_async(_store)(
        connection=connection,
        keyed=requests,
        source=source,
        actor=actor,
        reserve=inline,
        batch_key=base,
    )
    new_ids = [write.pk for write, created in stored if created]
    if new_ids:
        if inline:
            await _inline(new_ids, deadline)
        else:
            await publish(new_ids)
    fresh = await sync_to_async(_reload)(new_ids)
    return [
        WriteOutcome(fresh.get(write.pk, write), replayed=not created) for write, created in stored
    ]


def _reload(ids: list[uuid.UUID]) -> dict[uuid.UUID, CrmWrite]:
    found: dict[uuid.UUID, CrmWrite] = {}
    for chunk in _chunks(ids, DB_CHUNK):
        found.update(CrmWrite.objects.in_bulk(chunk))
    return found


_in_flight: set[asyncio.Task[int]] = set()


def _finished(task: asyncio.Task[int]) -> None:
    _in_flight.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("outbox: sending writes failed unexpectedly", exc_info=task.exception())


async def _detached(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work`` on a database thread of its own, which outlives the request that started
    it: a pooled API request's thread context (core.asgi) ends with its answer, while the send
    may go on. The thread's connection is closed at the end
    (no request_finished signal closes it)."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-inline")
    try:
        async with ThreadSensitiveContext(executor=executor):
            try:
                return await work
            finally:
                await sync_to_async(connections.close_all)()
    finally:
        executor.shutdown(wait=False)


async def _inline(ids: list[uuid.UUID], deadline: float | None) -> None:
    """Send now and wait up to ``deadline``; past it the send goes on without the caller (its
    outcome is recorded when it ends; if this process stops first, the lease runs out and the
    sweep takes over)."""
    wait = settings.OUTBOX_INLINE_SECONDS if deadline is None else deadline
    work = write_process(ids, due_only=False)
    task = asyncio.ensure_future(_detached(work) if on_pooled_thread.get() else work)
    _in_flight.add(task)
    task.add_done_callback(_finished)
    # ``wait`` neither cancels the task at the deadline nor raises its error (``_finished``
    # logs that; the rows say where each write stands).
    done, _ = await asyncio.wait({task}, timeout=max(0.0, wait))
    if not done:
        logger.info("outbox: %d write(s) still in flight after %.1f s", len(ids), wait)


# --- sending ------------------------------------------------------------------------------------------


def _pending_groups(
    ids: Sequence[uuid.UUID],
) -> list[tuple[tuple[uuid.UUID, str, str], list[uuid.UUID]]]:
    groups: dict[tuple[uuid.UUID, str, str], list[uuid.UUID]] = {}
    for chunk in _chunks(ids, DB_CHUNK):
        rows = (
            CrmWrite.objects.filter(pk__in=chunk, status=WriteStatus.PENDING)
            .order_by("created_at", "idempotency_key")
            .values_list("pk", "connection_id", "operation", "object_type")
        )
        for pk, connection_id, operation, object_type in rows:
            groups.setdefault((connection_id, operation, object_type), []).append(pk)
    return list(groups.items())


def _claim(ids: Sequence[uuid.UUID], *, due_only: bool) -> list[CrmWrite]:
    """Take the still-pending writes among ``ids`` (due ones only, unless forced): status
    ``sending``, one more attempt, a lease. Rows another worker holds are skipped."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    with transaction.atomic():
        rows = CrmWrite.objects.select_for_update(skip_locked=True).filter(
            pk__in=list(ids), status=WriteStatus.PENDING
        )
        if due_only:
            rows = rows.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        claimed = list(rows.order_by("created_at", "idempotency_key"))
        for write in claimed:
            write.status = WriteStatus.SENDING
            write.attempts += 1
            write.next_attempt_at = lease
            write.updated_at = now
        CrmWrite.objects.bulk_update(
            claimed, ["status", "attempts", "next_attempt_at", "updated_at"]
        )
    return claimed


def _chunk_size(provider: str, operation: str, object_type: str) -> int:
    if object_type in ACTIVITY_TYPES:
        return SINGLE_CHUNK  # activities are created one call each
    if operation in (WriteOperation.CREATE, WriteOperation.UPDATE):
        return max(1, get_provider(provider).rate_limit.batch_size)
    return SINGLE_CHUNK


async def write_process(write_ids: Sequence[uuid.UUID | str], *, due_only: bool = True) -> int:
    """Claim and send the pending writes among ``write_ids`` (those due, unless ``due_only``
    is off), grouped by connection, operation and type, in provider-sized batch calls.
    Returns how many were claimed. Never raises for a provider failure: outcomes are rows."""
    ids = [uuid.UUID(str(i)) for i in write_ids]
    claimed_total = 0
    for (connection_id, operation, object_type), members in await sync_to_async(_pending_groups)(
        ids
    ):
        connection = await Connection.objects.filter(pk=connection_id).afirst()
        if connection is None:
            continue
        try:
            client: CrmClient | None = crm_client_for(connection)
            size = _chunk_size(connection.provider, operation, object_type)
            unusable: AppError | None = None
        except AppError as exc:  # the provider is not configured on this installation
            client, size, unusable = None, SINGLE_CHUNK, exc
        for chunk in _chunks(members, size):
            claimed = await sync_to_async(_claim)(chunk, due_only=due_only)
            if not claimed:
                continue
            claimed_total += len(claimed)
            sender = Sender(connection, client, WriteOperation(operation), object_type)
            if unusable is not None:
                for write in claimed:
                    sender.failed(write, unusable)
                await sender.finish()
            else:
                await sender.send(claimed)
    return claimed_total


# --- people and the beat --------------------------------------------------------------------------


def _replay(write_id: uuid.UUID, actor: Actor) -> CrmWrite:
    with transaction.atomic():
        write = CrmWrite.objects.select_for_update().get(pk=write_id)
        if write.status not in (WriteStatus.DEAD, WriteStatus.FAILED):
            raise Conflict(
                f"Only dead or failed writes can be replayed; this one is {write.status}.",
                details={"status": write.status},
            )
        before = write.status
        write.status = WriteStatus.PENDING
        write.attempts = 0
        write.next_attempt_at = timezone.now()
        write.completed_at = None
        write.result = None
        write.save(
            update_fields=[
                "status",
                "attempts",
                "next_attempt_at",
                "completed_at",
                "result",
                "updated_at",
            ]
        )
        audit_record(
            actor=actor,
            action="crm_write.replayed",
            entity_type="crm_write",
            entity_id=write.pk,
            organization_id=write.organization_id,
            changes={
                "previous_status": before,
                "last_error_code": write.last_error_code,
                "uncertain": write.uncertain,
            },
        )
    return write


async def write_replay(*, write: CrmWrite, actor: Actor) -> CrmWrite:
    """A dead or failed write back to ``pending`` with its attempts reset, and queued
    (``Conflict`` for any other status). An uncertain create is looked up first, as ever."""
    replayed = await sync_to_async(_replay)(write.pk, actor)
    await publish([replayed.pk])
    return replayed


def _mark_send_now(ids: Sequence[uuid.UUID], actor: Actor) -> list[uuid.UUID]:
    with transaction.atomic():
        writes = list(
            CrmWrite.objects.select_for_update(skip_locked=True).filter(
                pk__in=list(ids), status=WriteStatus.PENDING
            )
        )
        for write in writes:
            audit_record(
                actor=actor,
                action="crm_write.sent_now",
                entity_type="crm_write",
                entity_id=write.pk,
                organization_id=write.organization_id,
                changes={"attempts": write.attempts, "next_attempt_at": str(write.next_attempt_at)},
            )
    return [w.pk for w in writes]


async def write_send_now(*, write_ids: Sequence[uuid.UUID], actor: Actor) -> int:
    """Send pending writes now, without waiting for their next attempt; returns how many were
    sent (writes in flight or done are left alone)."""
    ids = await sync_to_async(_mark_send_now)(write_ids, actor)
    return await write_process(ids, due_only=False) if ids else 0


@dataclass(frozen=True, slots=True)
class SweepResult:
    recovered: int
    queued: int


def _recover_leases(limit: int) -> list[uuid.UUID]:
    """Writes whose claim outlived its lease (the worker died mid-send): back to ``pending``,
    marked uncertain, due now."""
    now = timezone.now()
    with transaction.atomic():
        expired = list(
            CrmWrite.objects.select_for_update(skip_locked=True)
            .filter(status=WriteStatus.SENDING, next_attempt_at__lt=now)
            .order_by("next_attempt_at")[:limit]
        )
        for write in expired:
            write.status = WriteStatus.PENDING
            write.uncertain = True
            write.next_attempt_at = now
            write.last_error_code = "lease_expired"
            write.last_error = (
                "The attempt's worker stopped before it recorded an answer; the write is "
                "checked at the provider before it is sent again."
            )
            write.updated_at = now
        CrmWrite.objects.bulk_update(
            expired,
            [
                "status",
                "uncertain",
                "next_attempt_at",
                "last_error_code",
                "last_error",
                "updated_at",
            ],
        )
    for write in expired:
        logger.warning(
            "outbox: lease of write %s expired; sending it again after a check",
            write.pk,
            extra={"crm_write": str(write.pk), "attempt": write.attempts},
        )
    return [w.pk for w in expired]


def _overdue(limit: int) -> list[uuid.UUID]:
    """Pending writes due for longer than a sweep interval: their message was lost (or never
    sent: the broker was down), or no worker has reached it yet."""
    cutoff = timezone.now() - timedelta(seconds=settings.OUTBOX_SWEEP_SECONDS)
    return list(
        CrmWrite.objects.filter(status=WriteStatus.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=cutoff))
        .order_by(F("next_attempt_at").asc(nulls_first=True))
        .values_list("pk", flat=True)[:limit]
    )


def write_sweep() -> SweepResult:
    """Beat: recover expired leases and queue overdue writes (grouped into batch-sized
    messages in the order they were stored)."""
    limit = settings.OUTBOX_SWEEP_LIMIT
    recovered = _recover_leases(limit)
    overdue = _overdue(limit)
    ids = list(dict.fromkeys([*recovered, *overdue]))
    ordered: list[uuid.UUID] = [pk for _, members in _pending_groups(ids) for pk in members]
    publish_now([str(pk) for pk in ordered])
    return SweepResult(recovered=len(recovered), queued=len(ordered))
