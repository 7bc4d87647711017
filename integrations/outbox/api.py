"""The outbox under /api/v1: ``/writes`` (list, get, replay), and how the record write routes
(``integrations/api.py``) answer with a write's outcome.

No ``from __future__ import annotations``: Ninja reads the real types of these signatures.
"""

import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status
from ninja.params.functions import Header
from pydantic import BaseModel, Field

from accounts.auth import principal_of
from core.envelope import Envelope, ErrorBody, api_responses, ok
from core.pagination import PageParams, paginate

from ..models import WriteStatus
from ..providers.unified import BatchItemError, Record
from .schemas import BatchItemOut, BatchWriteOut, WriteOut, WriteQueuedOut, status_url
from .selectors import write_for, write_list
from .service import WriteOutcome, write_record, write_replay

router = Router(tags=["writes"])

# The optional ``Idempotency-Key`` header of every record write route.
IdempotencyKey = Annotated[
    str | None,
    Header(
        None,
        alias="Idempotency-Key",
        description=(
            "Any unique string (1-200 printable ASCII characters; 190 for a batch). Sending "
            "the same key with the same request again returns the first answer without "
            "writing again; with a different request it is `idempotency_key_reused` (422)."
        ),
    ),
]

REPLAYED_HEADER = "Idempotent-Replayed"


def queued_responses(schema: Any, status: int) -> dict[Any, Any]:
    """``api_responses`` of a write route: its success, 202 (queued) and the errors (the
    provider's too: a write is sent at once, and its failure is the answer)."""
    responses = api_responses(schema, status=status, provider=True)
    for key in list(responses):
        if isinstance(key, frozenset) and 202 in key:
            responses[key - {202}] = responses.pop(key)
    return responses | {202: Envelope[WriteQueuedOut]}


def write_answer(
    outcome: WriteOutcome,
    response: HttpResponse,
    *,
    status: int,
    data: Callable[[WriteOutcome], Any],
) -> Status[Any]:
    """The answer of a record write route: ``status`` with ``data(outcome)`` when it
    succeeded, the write's error envelope when it failed or was dead-lettered, else 202 with
    the write and its status URL (also in ``Location``)."""
    if outcome.replayed:
        response[REPLAYED_HEADER] = "true"
    if outcome.status == WriteStatus.SUCCEEDED:
        return Status(status, ok(data(outcome)))
    if (error := outcome.error) is not None:
        raise error
    url = status_url(outcome.write.pk)
    response["Location"] = url
    return Status(202, ok(WriteQueuedOut(write=WriteOut.of(outcome.write), status_url=url)))


def batch_answer(
    outcomes: list[WriteOutcome], response: HttpResponse, *, key: str
) -> Status[Envelope[BatchWriteOut[Any]]]:
    """200 when every item is done, else 202 (``Location``: the batch's writes)."""
    items: list[BatchItemOut[Any]] = []
    results: list[Record] = []
    errors: list[BatchItemError] = []
    for index, outcome in enumerate(outcomes):
        record = write_record(outcome.write)
        error = outcome.error
        body = None
        if error is not None:
            details = {k: v for k, v in error.details.items() if k != "write_id"}
            body = ErrorBody(code=error.code, message=error.message, details=details)
            errors.append(
                BatchItemError(
                    index=index, code=error.code.value, message=error.message, details=details
                )
            )
        if record is not None:
            results.append(record)
        items.append(
            BatchItemOut[Any](
                index=index,
                write_id=outcome.write.pk,
                status=outcome.status.value,  # type: ignore[arg-type]
                record=record,
                error=body,
            )
        )
    queued = sum(1 for o in outcomes if not o.done)
    url = f"{status_url_list()}?{urlencode({'batch': key})}"
    if any(o.replayed for o in outcomes):
        response[REPLAYED_HEADER] = "true"
    if queued:
        response["Location"] = url
    answer = BatchWriteOut[Any](
        results=results,
        errors=errors,
        items=items,
        queued=queued,
        idempotency_key=key,
        status_url=url,
    )
    return Status(202 if queued else 200, ok(answer))


def status_url_list() -> str:
    return status_url(uuid.UUID(int=0)).rsplit("/", 1)[0]


class WriteFilters(BaseModel):
    status: Literal["pending", "sending", "succeeded", "failed", "dead"] | None = None
    connection_id: uuid.UUID | None = None
    operation: Literal["create", "update", "archive", "associate"] | None = None
    batch: str | None = Field(
        None, max_length=200, description="A batch request's key: the writes of its items."
    )


@router.get(
    "/writes",
    response=api_responses(Envelope[list[WriteOut]]),
    summary="List CRM writes (the outbox), newest first",
)
async def writes_list(
    request: HttpRequest, filters: Query[WriteFilters], page: Query[PageParams]
) -> Envelope[list[WriteOut]]:
    p = principal_of(request)
    writes = write_list(
        organization_id=p.organization_id,
        status=WriteStatus(filters.status) if filters.status else None,
        connection_id=filters.connection_id,
        operation=filters.operation,
        batch_key=filters.batch,
    )
    rows, meta = await paginate(writes, page)
    return ok([WriteOut.of(w) for w in rows], pagination=meta)


@router.get(
    "/writes/{write_id}",
    response=api_responses(Envelope[WriteOut]),
    summary="A CRM write and where it stands",
)
async def writes_get(request: HttpRequest, write_id: str) -> Envelope[WriteOut]:
    p = principal_of(request)
    return ok(WriteOut.of(await write_for(organization_id=p.organization_id, write_id=write_id)))


@router.post(
    "/writes/{write_id}/replay",
    response=api_responses(Envelope[WriteOut], status=202),
    summary="Send a dead or failed write again (attempts reset; owners and admins)",
)
async def writes_replay(
    request: HttpRequest, write_id: str, response: HttpResponse
) -> Status[Envelope[WriteOut]]:
    p = principal_of(request)
    write = await write_for(organization_id=p.organization_id, write_id=write_id)
    p.require_manager()
    replayed = await write_replay(write=write, actor=p.actor)
    response["Location"] = status_url(replayed.pk)
    return Status(202, ok(WriteOut.of(replayed)))
