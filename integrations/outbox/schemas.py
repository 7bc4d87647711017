"""The outbox in the API: writes, the 202 answer of a queued write, per-item batch answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from core.envelope import ErrorBody

from ..models import CrmWrite
from ..providers.unified import BatchItemError, Record

R = TypeVar("R", bound=Record)

API_PREFIX = "/api/v1"


def status_url(write_id: uuid.UUID) -> str:
    return f"{API_PREFIX}/writes/{write_id}"


class WriteOut(BaseModel):
    """One CRM write as stored in the outbox (tokens never appear here: payloads are the
    caller's own record fields)."""

    id: uuid.UUID
    connection_id: uuid.UUID
    idempotency_key: str
    operation: str = Field(description="create, update, archive or associate")
    object_type: str
    record_id: str = Field(description="The target record (empty for creates).")
    payload: dict[str, Any]
    source: str = Field(description="api, admin, agent or system")
    requested_by: str
    status: Literal["pending", "sending", "succeeded", "failed", "dead"]
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None = Field(
        description="Pending: when the next attempt is due. Sending: when its lease ends."
    )
    uncertain: bool = Field(
        description="An attempt got no answer: the record is looked up before any resend."
    )
    last_error_code: str
    last_error: str
    result: dict[str, Any] | None = Field(
        description='Succeeded: the written record. Failed or dead: `{"error": {...}}`.'
    )
    result_id: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    status_url: str

    @classmethod
    def of(cls, w: CrmWrite) -> WriteOut:
        return cls(
            id=w.pk,
            connection_id=w.connection_id,
            idempotency_key=w.idempotency_key,
            operation=w.operation,
            object_type=w.object_type,
            record_id=w.record_id,
            payload=w.payload,
            source=w.source,
            requested_by=w.requested_by,
            status=w.status,  # type: ignore[arg-type]
            attempts=w.attempts,
            max_attempts=w.max_attempts,
            next_attempt_at=w.next_attempt_at,
            uncertain=w.uncertain,
            last_error_code=w.last_error_code,
            last_error=w.last_error,
            result=w.result,
            result_id=w.result_id,
            created_at=w.created_at,
            updated_at=w.updated_at,
            completed_at=w.completed_at,
            status_url=status_url(w.pk),
        )


class WriteQueuedOut(BaseModel):
    """202: the write is stored and on its way; follow ``status_url`` (also ``Location``)."""

    write: WriteOut
    status_url: str


class BatchItemOut(BaseModel, Generic[R]):
    index: int = Field(description="Position of the item in the request.")
    write_id: uuid.UUID
    status: Literal["pending", "sending", "succeeded", "failed", "dead"]
    record: R | None = None
    error: ErrorBody | None = None


class BatchWriteOut(BaseModel, Generic[R]):
    """Per item: its write and where it stands. ``results`` and ``errors`` hold the records
    written and the items that failed (as a plain batch answer would); items still ``pending``
    or ``sending`` are in neither: the answer is then a 202 and ``status_url`` lists them."""

    results: list[R]
    errors: list[BatchItemError] = Field(default_factory=list)
    items: list[BatchItemOut[R]]
    queued: int = Field(description="Items not finished yet (pending or sending).")
    idempotency_key: str = Field(description="The batch's key; item keys are `<key>:<index>`.")
    status_url: str
