"""Sending one claimed group of writes (one connection, operation and object type) and
recording each write's outcome.

Creates and updates of a group go out in one batch call (the client chunks it to the
provider's batch size) or one single call; archives, associations and activities (notes and
tasks, create-only and never mirrored) one call each, at once.
Uncertain creates are looked up first (``reconcile.py``). Outcomes are collected, then written
by ``finish``: each only while the claim still holds (status ``sending`` with the same
``attempts``, a fencing token), retries scheduled together (one backoff for the group), and
the mirror updated with the records written.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import timedelta
from typing import Any, Final

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from core.errors import AppError, Conflict, ErrorCode, ProviderError, ProviderUnavailable
from core.result import Result

from ..models import Connection, CrmWrite, WriteOperation, WriteStatus
from ..providers.base import CrmClient
from ..providers.unified import (
    WRITE_INPUT_MODELS,
    ActivityIn,
    ActivityType,
    AnyActivity,
    AnyRecord,
    AnyWritten,
    Association,
    BatchResult,
    Company,
    Contact,
    Deal,
    ObjectType,
    RecordIn,
    WritableType,
    is_activity,
)
from ..sync.mirror import Deleted, amirror_mark_deleted, amirror_upsert
from . import policy
from .dispatch import publish
from .reconcile import adopt_conflict, reconcile

logger = logging.getLogger("switchboard.outbox")

SYSTEM: Final = Actor.system("outbox")


class Sender:
    """One claimed group (one connection, operation and type): the calls, then the outcomes."""

    def __init__(
        self,
        connection: Connection,
        client: CrmClient | None,
        operation: WriteOperation,
        object_type: str,
    ) -> None:
        self.connection = connection
        self.client = client
        self.operation = operation
        self.object_type: WritableType = object_type  # type: ignore[assignment]
        self.prop = policy.write_id_property(connection.provider, object_type)
        self.upserts: list[tuple[uuid.UUID, AnyRecord]] = []
        self.deletes: list[tuple[uuid.UUID, Deleted]] = []
        self.retry: list[tuple[CrmWrite, AppError, dict[str, Any]]] = []
        self.settled: list[tuple[CrmWrite, dict[str, Any], str | None]] = []
        self.held: list[CrmWrite] = []  # the claimed writes whose lease this sender renews
        self.renewed_at = time.monotonic()

    @property
    def record_type(self) -> ObjectType:
        """The type of a record write: every operation but the create of an activity."""
        kind = self.object_type
        if is_activity(kind):
            raise RuntimeError(f"A {kind} is create-only and never mirrored.")
        return kind

    # -- the lease ------------------------------------------------------------------------------

    async def renew(self, *, force: bool = False) -> set[uuid.UUID]:
        """Extend the lease of the writes held (when a third of it is used, or ``force``);
        returns the ids still held. A write whose claim ended (its lease ran out and another
        worker took it) is dropped: it must not be sent from here any more."""
        lease = settings.OUTBOX_LEASE_SECONDS
        if force or time.monotonic() - self.renewed_at > lease / 3:
            self.renewed_at = time.monotonic()
            kept = await sync_to_async(renew_leases)(self.held)
            self.held = [w for w in self.held if w.pk in kept]
        return {w.pk for w in self.held}

    async def keepalive(self) -> None:
        await self.renew()

    # -- outcomes (collected, then written by ``finish``) ----------------------------------------

    def succeeded(self, write: CrmWrite, result: dict[str, Any], result_id: str) -> None:
        now = timezone.now()
        self.settled.append(
            (
                write,
                {
                    "status": WriteStatus.SUCCEEDED,
                    "result": result,
                    "result_id": result_id[:64],
                    "uncertain": False,
                    "next_attempt_at": None,
                    "completed_at": now,
                },
                None,
            )
        )

    def record_written(self, write: CrmWrite, record: AnyWritten, *, found: bool = False) -> None:
        self.succeeded(write, record.model_dump(mode="json"), record.id)
        if isinstance(record, Contact | Company | Deal):  # activities stay out of the mirror
            self.upserts.append((write.pk, record))
        if found:
            logger.info(
                "outbox: uncertain create found at the provider",
                extra={"crm_write": str(write.pk), "record_id": record.id},
            )
            self.settled[-1][1]["last_error"] = (
                f"{write.last_error} (checked: the record was found at the provider; "
                "not sent again)"
            ).strip()

    def failed(self, write: CrmWrite, error: AppError, *, was_uncertain: bool = False) -> None:
        """A failed attempt: ``failed`` (not retryable), ``dead`` (attempts ran out) or back to
        ``pending`` (scheduled by ``finish``)."""
        code = error.code.value
        uncertain = policy.is_uncertain(code, error.details) or was_uncertain
        stored = policy.stored_error(error)
        base: dict[str, Any] = {"last_error_code": code, "last_error": error.message}
        now = timezone.now()
        if not (error.retryable or policy.is_retryable(code)):
            self.settled.append(
                (
                    write,
                    base
                    | {
                        "status": WriteStatus.FAILED,
                        "result": {"error": stored},
                        "uncertain": False,
                        "next_attempt_at": None,
                        "completed_at": now,
                    },
                    None,
                )
            )
            return
        if error.details.get("sent") is False and not uncertain:
            # Our own rate-limit budget held the call back: nothing reached the provider, so
            # the attempt is given back and the write waits for budget, however long.
            self.retry.append((write, error, base | {"attempts": write.attempts - 1}))
            return
        if write.attempts >= write.max_attempts:
            note = f"{error.message} (gave up after {write.attempts} attempts)"
            if uncertain and self.operation == WriteOperation.CREATE:
                note += "; the last attempt got no answer, so a replay looks the record up first"
            self.settled.append(
                (
                    write,
                    base
                    | {
                        "status": WriteStatus.DEAD,
                        "last_error": note,
                        "result": {"error": stored | {"message": note}},
                        "uncertain": uncertain,
                        "next_attempt_at": None,
                        "completed_at": now,
                    },
                    "crm_write.dead_lettered",
                )
            )
            return
        self.retry.append((write, error, base | {"uncertain": uncertain}))

    def unverifiable(self, write: CrmWrite, why: str) -> None:
        """An uncertain create that cannot be checked: dead-lettered for a person."""
        provider = self.connection.provider
        message = (
            f"A create got no answer from {provider} and may have happened; {why}. "
            "Look for the record there: if it is missing, replay this write (it is looked up "
            "again first); if it exists, leave this write dead."
        )
        error = Conflict(message, details={"reason": "uncertain", "provider": provider})
        self.settled.append(
            (
                write,
                {
                    "status": WriteStatus.DEAD,
                    "last_error_code": "uncertain",
                    "last_error": message,
                    "result": {"error": policy.stored_error(error)},
                    "uncertain": True,
                    "next_attempt_at": None,
                    "completed_at": timezone.now(),
                },
                "crm_write.dead_lettered",
            )
        )

    async def finish(self) -> None:
        """Write every outcome (fenced), schedule the retries, update the mirror."""
        delay = 0.0
        if self.retry:
            attempts = max(w.attempts for w, _, _ in self.retry)
            retry_after = max(
                (
                    float(e.retry_after or e.details.get("retry_after") or 0.0)
                    for _, e, _ in self.retry
                ),
                default=0.0,
            )
            delay = policy.backoff_seconds(attempts, retry_after=retry_after)
            due = timezone.now() + timedelta(seconds=delay)
            for write, _, fields in self.retry:
                self.settled.append(
                    (write, fields | {"status": WriteStatus.PENDING, "next_attempt_at": due}, None)
                )
        kept = await sync_to_async(settle_all)(self.settled, self.connection)
        retry_ids = [w.pk for w, _, _ in self.retry if w.pk in kept]
        if retry_ids:
            await publish(retry_ids, delay=delay + 0.05)
        await self._mirror(
            [r for pk, r in self.upserts if pk in kept], [d for pk, d in self.deletes if pk in kept]
        )

    async def _mirror(self, records: list[AnyRecord], deleted: list[Deleted]) -> None:
        try:
            if records:
                await amirror_upsert(
                    connection_id=self.connection.pk, object_type=self.record_type, records=records
                )
            if deleted:
                await amirror_mark_deleted(
                    connection_id=self.connection.pk, object_type=self.record_type, deleted=deleted
                )
        except Exception:  # the write happened; the next sync brings the mirror up to date
            logger.warning("outbox: could not update the mirror", exc_info=True)

    # -- the calls ------------------------------------------------------------------------------------

    async def send(self, writes: list[CrmWrite]) -> None:
        self.held = list(writes)
        self.renewed_at = time.monotonic()
        client = self.client
        if client is None:
            raise RuntimeError("Sender.send needs a client; use failed() + finish() without one")
        if self.operation == WriteOperation.CREATE:
            await self._creates(client, writes)
        elif self.operation == WriteOperation.UPDATE:
            await self._updates(client, writes)
        else:
            await asyncio.gather(*(self._one(client, w) for w in writes))
        await self.finish()

    def _input(self, write: CrmWrite, *, stamp: bool) -> RecordIn:
        payload = dict(write.payload)
        if stamp and self.prop:
            payload["properties"] = {**payload.get("properties", {}), self.prop: str(write.pk)}
        if self.object_type == "note" and payload.get("timestamp") is None:
            # A note without a time happened when it was submitted, whenever it is sent.
            payload["timestamp"] = write.created_at.isoformat()
        return WRITE_INPUT_MODELS[self.object_type].model_validate(payload)

    async def _creates(self, client: CrmClient, writes: list[CrmWrite]) -> None:
        sure = [w for w in writes if not w.uncertain]
        doubtful = [w for w in writes if w.uncertain]
        rechecked: set[uuid.UUID] = set()
        if doubtful:
            checked = await reconcile(
                client,
                provider=self.connection.provider,
                object_type=self.object_type,
                writes=doubtful,
                keepalive=self.keepalive,
            )
            for write, record in checked.found:
                self.record_written(write, record, found=True)
            for write in checked.unverifiable:
                self.unverifiable(write, "it has no natural key and no write-id property is set")
            for write in checked.unchecked:
                self._lookup_failed(write, checked.error or ProviderUnavailable())
            sure.extend(checked.missing)
            rechecked = {w.pk for w in checked.missing}
        sendable = []
        for write in sure:
            if write.attempts > write.max_attempts:  # back from an expired lease, no tries left
                self.failed(
                    write,
                    ProviderUnavailable(
                        "The last attempt's worker stopped before an answer was recorded; the "
                        "record was not found at the provider."
                    ),
                )
            else:
                sendable.append(write)
        if doubtful and sendable:
            # The lookups took time: never send a write whose claim may have ended meanwhile.
            held = await self.renew(force=True)
            sendable = [w for w in sendable if w.pk in held]
        if not sendable:
            return
        inputs = [self._input(w, stamp=True) for w in sendable]
        kind = self.object_type
        if is_activity(kind):
            await asyncio.gather(
                *(
                    self._log_activity(client, kind, w, i)
                    for w, i in zip(sendable, inputs, strict=True)
                )
            )
            return
        if len(sendable) == 1:
            created = await client.create(kind, inputs[0])
            await self._created(client, sendable[0], created, rechecked)
            return
        batch = await client.batch_create(kind, inputs)
        await self._batch(client, sendable, batch, rechecked)

    async def _log_activity(
        self, client: CrmClient, kind: ActivityType, write: CrmWrite, data: RecordIn
    ) -> None:
        if not isinstance(data, ActivityIn):  # _input built it from WRITE_INPUT_MODELS
            raise TypeError(f"A {kind} takes an ActivityIn, not {type(data).__name__}")
        created: Result[AnyActivity] = await client.create_activity(kind, data)
        if created.error is None:
            self.record_written(write, created.unwrap())
        else:
            self.failed(write, created.error)

    def _lookup_failed(self, write: CrmWrite, error: AppError) -> None:
        if error.retryable or policy.is_retryable(error.code.value):
            self.failed(write, error, was_uncertain=True)
        else:
            self.unverifiable(write, f"looking for it failed ({error.code.value}: {error.message})")

    async def _created(
        self,
        client: CrmClient,
        write: CrmWrite,
        result: Result[AnyRecord],
        rechecked: set[uuid.UUID],
    ) -> None:
        if result.error is None:
            self.record_written(write, result.unwrap())
            return
        if write.pk in rechecked:
            # The lookup may have missed our own earlier attempt (search lags writes).
            record = await adopt_conflict(client, self.record_type, write, result.error)
            if record is not None:
                self.record_written(write, record, found=True)
                return
        self.failed(write, result.error)

    async def _updates(self, client: CrmClient, writes: list[CrmWrite]) -> None:
        if len(writes) == 1:
            write = writes[0]
            updated = await client.update(
                self.record_type, write.record_id, self._input(write, stamp=False)
            )
            if updated.error is None:
                self.record_written(write, updated.unwrap())
            else:
                self.failed(write, updated.error, was_uncertain=write.uncertain)
            return
        items = [(w.record_id, self._input(w, stamp=False)) for w in writes]
        batch = await client.batch_update(self.record_type, items)
        await self._batch(client, writes, batch, set())

    async def _batch(
        self,
        client: CrmClient,
        writes: list[CrmWrite],
        answer: Result[BatchResult[AnyRecord]],
        rechecked: set[uuid.UUID],
    ) -> None:
        """Per-item outcomes of one batch call (``writes`` in the order they were sent)."""
        creating = self.operation == WriteOperation.CREATE
        if answer.error is not None:
            for write in writes:
                await self._item_failed(client, write, answer.error, rechecked, creating)
            return
        result = answer.unwrap()
        errors = {e.index: e for e in result.errors if 0 <= e.index < len(writes)}
        written = [i for i in range(len(writes)) if i not in errors]
        if len(written) != len(result.results):
            # The answer cannot be matched to the inputs: check each written one again.
            unmatched = ProviderError(
                "The provider's batch answer could not be matched to its inputs.",
                details={"provider": self.connection.provider, "uncertain": True},
                retryable=True,
            )
            for i in written:
                self.failed(writes[i], unmatched, was_uncertain=True)
        else:
            for i, record in zip(written, result.results, strict=True):
                self.record_written(writes[i], record)
        for index, item in errors.items():
            error = policy.error_from(
                {"code": item.code, "message": item.message, "details": item.details},
                code=item.code,
                message=item.message,
            )
            retry_after = item.details.get("retry_after")
            if isinstance(retry_after, int | float):
                error.retry_after = float(retry_after)
            await self._item_failed(client, writes[index], error, rechecked, creating)

    async def _item_failed(
        self,
        client: CrmClient,
        write: CrmWrite,
        error: AppError,
        rechecked: set[uuid.UUID],
        creating: bool,
    ) -> None:
        if creating:
            await self._created(client, write, Result.fail(error), rechecked)
        else:
            self.failed(write, error, was_uncertain=write.uncertain)

    async def _one(self, client: CrmClient, write: CrmWrite) -> None:
        kind = self.record_type
        if self.operation == WriteOperation.ARCHIVE:
            done = await client.archive(kind, write.record_id)
            if done.error is None or (write.uncertain and done.error.code == ErrorCode.NOT_FOUND):
                # (Not found after an unanswered archive: that archive did it.)
                self.succeeded(write, {"id": write.record_id, "archived": True}, write.record_id)
                self.deletes.append((write.pk, Deleted(external_id=write.record_id)))
            else:
                self.failed(write, done.error, was_uncertain=write.uncertain)
            return
        association = Association(
            from_type=kind,
            from_id=write.record_id,
            to_type=write.payload["to_type"],
            to_id=write.payload["to_id"],
        )
        linked = await client.associate(association)
        if linked.error is None:
            self.succeeded(write, association.model_dump(), write.record_id)
        else:
            self.failed(write, linked.error, was_uncertain=write.uncertain)


def settle_all(
    settled: list[tuple[CrmWrite, dict[str, Any], str | None]], connection: Connection
) -> dict[uuid.UUID, CrmWrite]:
    """Record each outcome while the claim still holds; returns the writes recorded."""
    kept: dict[uuid.UUID, CrmWrite] = {}
    now = timezone.now()
    for write, fields, action in settled:
        fields = fields | {"updated_at": now}
        with transaction.atomic():
            changed = CrmWrite.objects.filter(
                pk=write.pk, status=WriteStatus.SENDING, attempts=write.attempts
            ).update(**fields)
            if not changed:
                logger.warning(
                    "outbox: the claim on a write ended before its outcome was recorded",
                    extra={"crm_write": str(write.pk), "attempt": write.attempts},
                )
                continue
            for name, value in fields.items():
                setattr(write, name, value)
            kept[write.pk] = write
            if action is not None:
                audit_record(
                    actor=SYSTEM,
                    action=action,
                    entity_type="crm_write",
                    entity_id=write.pk,
                    organization_id=write.organization_id,
                    changes={
                        "attempts": write.attempts,
                        "last_error_code": write.last_error_code,
                        "uncertain": write.uncertain,
                        "provider": connection.provider,
                    },
                )
        log = logger.warning if write.status != WriteStatus.SUCCEEDED else logger.info
        log(
            "outbox: write %s %s",
            write.pk,
            write.status,
            extra={
                "crm_write": str(write.pk),
                "write_status": write.status,
                "attempt": write.attempts,
                "error_code": write.last_error_code or None,
            },
        )
    return kept


def renew_leases(writes: list[CrmWrite]) -> set[uuid.UUID]:
    """A fresh lease for each write still claimed by this attempt (status ``sending``, same
    ``attempts``, lease not run out); returns their ids."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    by_attempt: dict[int, list[uuid.UUID]] = {}
    for write in writes:
        by_attempt.setdefault(write.attempts, []).append(write.pk)
    kept: set[uuid.UUID] = set()
    with transaction.atomic():
        for attempts, ids in by_attempt.items():
            held = list(
                CrmWrite.objects.select_for_update()
                .filter(
                    pk__in=ids,
                    status=WriteStatus.SENDING,
                    attempts=attempts,
                    next_attempt_at__gt=now,
                )
                .values_list("pk", flat=True)
            )
            CrmWrite.objects.filter(pk__in=held).update(next_attempt_at=until, updated_at=now)
            kept.update(held)
    for write in writes:
        if write.pk in kept:
            write.next_attempt_at = until
    return kept
