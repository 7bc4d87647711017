"""The CRM tools agents use: search, get and update contacts, companies and deals, add a note,
create a task.

Reads come from the mirror (fast, no provider budget) unless ``fresh`` asks for the provider's
current copy. Writes go through the outbox with an idempotency key the caller derives from the
run's thread and step (``write_key``), so a step that runs again after a crash or a retry finds
its earlier write instead of writing twice. Every tool returns a ``Result``: a failure is a
value with a code (``not_found``, ``validation_failed``, ``provider_unavailable``, ...) that a
model reads as text (``as_text``), never an exception that ends the run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any, Literal

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Q
from pydantic import BaseModel, Field

from accounts.audit import Actor
from core.errors import AppError, NotFound, ValidationFailed
from core.result import Result
from integrations.models import Connection, CrmRecord, CrmWrite
from integrations.outbox.service import WriteOutcome, write_submit
from integrations.providers.unified import OBJECT_TYPES, ObjectType
from integrations.services.calls import crm_client_for
from integrations.sync.mirror import unified_fields

SEARCH_MAX = 100


class RecordView(BaseModel):
    """A CRM record as a tool returns it: the unified fields, where it came from."""

    object_type: str
    id: str
    fields: dict[str, Any]
    updated_at: datetime | None = None
    source: Literal["mirror", "provider"] = "mirror"


class WriteView(BaseModel):
    """A write as a tool returns it: the outbox row's id and where it stands."""

    write_id: uuid.UUID
    idempotency_key: str
    operation: str
    object_type: str
    status: str
    record_id: str | None = None
    replayed: bool = False
    error_code: str | None = None
    error: str | None = None


class ProposedWrite(BaseModel):
    """A write an agent wants to make; what an approval shows and, approved, what is sent."""

    operation: Literal["create", "update", "archive"]
    object_type: Literal["contact", "company", "deal", "note", "task"]
    record_id: str | None = Field(None, description="The record to update or archive.")
    payload: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field("", max_length=2000, description="Why, in a sentence.")


def write_key(thread_id: str, node: str, index: int) -> str:
    """The idempotency key of a run's ``index``-th write from ``node``: the same on every
    execution of that step in the thread (a resume, a redelivery, a retry)."""
    return f"wf:{thread_id}:{node}:{index}"


def as_text(result: Result[Any]) -> str:
    """A tool's result as the text a model reads: JSON, or ``error[code]: message``."""
    if result.error is not None:
        return f"error[{result.error.code.value}]: {result.error.message}"
    value = result.unwrap()
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, list):
        return orjson.dumps(
            [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
        ).decode()
    return orjson.dumps(value, default=str).decode()


def _view(row: CrmRecord) -> RecordView:
    return RecordView(
        object_type=row.object_type,
        id=row.external_id,
        fields=row.fields,
        updated_at=row.remote_updated_at,
    )


def _check_type(object_type: str) -> ObjectType:
    if object_type not in OBJECT_TYPES:
        raise ValidationFailed(
            f"Unknown object type {object_type!r}.", details={"allowed": list(OBJECT_TYPES)}
        )
    return object_type  # type: ignore[return-value]


class CrmTools:
    """The tools, bound to one connection and the run acting through it."""

    def __init__(self, connection: Connection, *, actor: Actor) -> None:
        self.connection = connection
        self.actor = actor

    # -- reads ------------------------------------------------------------------------------

    async def search(
        self,
        object_type: str,
        *,
        text: str | None = None,
        where: dict[str, Any] | None = None,
        limit: int = 20,
    ) -> Result[list[RecordView]]:
        """Live mirror records of a type; ``text`` matches any of the name, email and domain
        fields (case-insensitive), ``where`` holds exact unified-field values."""
        try:
            kind = _check_type(object_type)
        except AppError as exc:
            return Result.fail(exc)
        rows = await sync_to_async(self._search)(kind, text, where or {}, min(limit, SEARCH_MAX))
        return Result.ok([_view(r) for r in rows])

    def _search(
        self, object_type: ObjectType, text: str | None, where: dict[str, Any], limit: int
    ) -> list[CrmRecord]:
        qs = CrmRecord.objects.live().filter(
            connection_id=self.connection.pk, object_type=object_type
        )
        if text:
            match = Q()
            for name in ("name", "email", "domain", "first_name", "last_name"):
                match |= Q(**{f"fields__{name}__icontains": text})
            qs = qs.filter(match)
        for name, value in where.items():
            qs = qs.filter(**{f"fields__{name}": value})
        return list(qs.order_by("-remote_updated_at", "id")[:limit])

    async def get(
        self, object_type: str, record_id: str, *, fresh: bool = False
    ) -> Result[RecordView]:
        """A record from the mirror, or (``fresh``, or not mirrored yet) from the provider."""
        try:
            kind = _check_type(object_type)
        except AppError as exc:
            return Result.fail(exc)
        if not fresh:
            row = await (
                CrmRecord.objects.live()
                .filter(connection_id=self.connection.pk, object_type=kind, external_id=record_id)
                .afirst()
            )
            if row is not None:
                return Result.ok(_view(row))
        result = await crm_client_for(self.connection).get(kind, record_id)
        if result.error is not None:
            return Result.fail(result.error)
        record = result.unwrap()
        return Result.ok(
            RecordView(
                object_type=kind,
                id=record.id,
                fields=unified_fields(record),
                updated_at=record.updated_at,
                source="provider",
            )
        )

    # -- writes -----------------------------------------------------------------------------

    async def update(
        self, object_type: str, record_id: str, fields: dict[str, Any], *, key: str
    ) -> Result[WriteView]:
        write = ProposedWrite.model_validate(
            {
                "operation": "update",
                "object_type": object_type,
                "record_id": record_id,
                "payload": fields,
            }
        )
        return await self.submit(write, key=key)

    async def add_note(self, payload: dict[str, Any], *, key: str) -> Result[WriteView]:
        """``payload``: ``body`` and at least one of ``contact_id``, ``company_id``,
        ``deal_id`` (``NoteIn``)."""
        return await self.submit(
            ProposedWrite(operation="create", object_type="note", payload=payload), key=key
        )

    async def create_task(self, payload: dict[str, Any], *, key: str) -> Result[WriteView]:
        """``payload``: ``subject``, optional ``body``, ``due_date``, ``priority``,
        ``owner_id`` and at least one association (``TaskIn``)."""
        return await self.submit(
            ProposedWrite(operation="create", object_type="task", payload=payload), key=key
        )

    async def submit(self, write: ProposedWrite, *, key: str) -> Result[WriteView]:
        """Send one write through the outbox and wait (``WORKFLOW_WRITE_WAIT_SECONDS`` at most)
        for it to be done. A write still on its way when the wait ends is returned ``pending``:
        the outbox will still deliver it."""
        try:
            outcome = await write_submit(
                connection=self.connection,
                operation=write.operation,
                object_type=write.object_type,
                payload=write.payload if write.operation != "archive" else None,
                record_id=write.record_id,
                idempotency_key=key,
                source="agent",
                actor=self.actor,
            )
        except AppError as exc:
            return Result.fail(exc)
        outcome = await _settled(outcome)
        return self._written(outcome, key)

    def _written(self, outcome: WriteOutcome, key: str) -> Result[WriteView]:
        write = outcome.write
        error = outcome.error
        view = WriteView(
            write_id=write.pk,
            idempotency_key=key,
            operation=write.operation,
            object_type=write.object_type,
            status=write.status,
            record_id=write.result_id or write.record_id or None,
            replayed=outcome.replayed,
            error_code=error.code.value if error else None,
            error=error.message if error else None,
        )
        if error is not None:
            error.details = {**error.details, "write": view.model_dump(mode="json")}
            return Result.fail(error)
        return Result.ok(view)


async def _settled(outcome: WriteOutcome) -> WriteOutcome:
    """Poll the outbox row until it is done or the wait runs out."""
    deadline = time.monotonic() + settings.WORKFLOW_WRITE_WAIT_SECONDS
    delay = 0.1
    while not outcome.done and time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)
        write = await CrmWrite.objects.aget(pk=outcome.write.pk)
        outcome = WriteOutcome(write=write, replayed=outcome.replayed)
    return outcome


async def mirror_fields(
    connection_id: uuid.UUID, object_type: str, record_id: str
) -> dict[str, Any]:
    """The mirror's unified fields of a record ({} when it is not mirrored)."""
    row = await (
        CrmRecord.objects.live()
        .filter(connection_id=connection_id, object_type=object_type, external_id=record_id)
        .afirst()
    )
    if row is None:
        raise NotFound(f"No {object_type} {record_id} in the mirror.")
    return dict(row.fields)


__all__ = [
    "CrmTools",
    "ProposedWrite",
    "RecordView",
    "WriteView",
    "as_text",
    "mirror_fields",
    "write_key",
]
