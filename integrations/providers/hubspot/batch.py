"""Batch create and update: any number of inputs, sent in chunks of the batch size.

Every input carries ``objectWriteTraceId`` = its index in the caller's list. HubSpot then
answers a chunk with some bad inputs with 207 and per-input errors that name the trace id
(its documented multi-status mode), so each error goes back to the caller's index.

Failure rules:
- an input our mapping rejects is never sent (``validation_failed`` at its index);
- a chunk HubSpot rejects as a whole with 400 fails each of its inputs, and the next chunk
  is still sent (the fault is in the inputs, not the connection);
- any other chunk failure (auth, 429, 5xx, timeout) stops the batch. If nothing was written
  yet the whole call fails with that error; otherwise the records written so far are
  returned and every unwritten input carries the error (same code, so callers can retry it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from core.errors import AppError, ErrorCode, ValidationFailed
from core.result import Result
from hubspot.crm.associations.v4 import (
    BatchInputPublicDefaultAssociationMultiPost,
    PublicDefaultAssociationMultiPost,
)
from hubspot.crm.associations.v4 import PublicObjectId as AssociationObjectId
from hubspot.crm.objects import (
    AssociationSpec,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
)

from ..batching import Collected
from ..unified import AnyRecord, BatchItemError, BatchResult, ObjectType, RecordIn
from .errors import field_errors
from .mapping import (
    COMPANY_ASSOCIATION_TYPE,
    OBJECT_PATHS,
    company_to_associate,
    to_properties,
    to_record,
)
from .transport import SdkApis, Transport, raw_answer
from .wire import BatchAnswer, BatchErrors, HubSpotError, from_sdk

# Per-input error categories HubSpot uses in batch answers, as our codes.
CATEGORY_CODES: Final[dict[str, ErrorCode]] = {
    "VALIDATION_ERROR": ErrorCode.VALIDATION_FAILED,
    "OBJECT_NOT_FOUND": ErrorCode.NOT_FOUND,
    "CONFLICT": ErrorCode.CONFLICT,
    "OBJECT_ALREADY_EXISTS": ErrorCode.CONFLICT,
}


@dataclass(slots=True)
class Prepared:
    index: int
    properties: dict[str, Any]
    company_id: str | None
    record_id: str | None = None  # updates only


def answer_error(index: int, error: HubSpotError) -> BatchItemError:
    code = CATEGORY_CODES.get(error.category or "", ErrorCode.PROVIDER_ERROR)
    details: dict[str, Any] = {"provider": "hubspot", "category": error.category}
    if fields := field_errors(error):
        details["fields"] = fields
    return BatchItemError(
        index=index, code=code.value, message=f"HubSpot: {error.message}", details=details
    )


def prepare(
    object_type: ObjectType,
    items: Sequence[tuple[str | None, RecordIn]],
    collected: Collected,
    *,
    updating: bool,
) -> list[Prepared]:
    prepared = []
    for index, (record_id, data) in enumerate(items):
        try:
            if updating and not record_id:
                raise ValidationFailed(
                    "An update needs the record id.", details={"fields": {"id": "required"}}
                )
            properties = to_properties(object_type, data, creating=not updating)
        except AppError as exc:
            collected.fail(index, exc)
            continue
        prepared.append(
            Prepared(index, properties, company_to_associate(object_type, data), record_id)
        )
    return prepared


def chunks(items: list[Prepared], size: int) -> list[list[Prepared]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def correlate(
    chunk: list[Prepared], answer: BatchAnswer, object_type: ObjectType, collected: Collected
) -> None:
    """File a 2xx/207 answer's results and errors under the callers' indexes."""
    by_trace = {str(p.index): p.index for p in chunk}
    by_id = {p.record_id: p.index for p in chunk if p.record_id}
    unplaced_errors: list[HubSpotError] = []
    for error in answer.errors:
        keys = [*error.context_values("objectWriteTraceId"), *([error.id] if error.id else [])]
        indexes = {by_trace[k] for k in keys if k in by_trace}
        indexes |= {by_id[i] for i in error.context_values("ids") if i in by_id}
        for index in indexes:
            collected.errors[index] = answer_error(index, error)
        if not indexes:
            unplaced_errors.append(error)
    waiting = [p.index for p in chunk if p.index not in collected.errors]
    untraced = []
    for obj in answer.results:
        found = by_trace.get(obj.object_write_trace_id or "")
        if found is None:
            found = by_id.get(obj.id)
        if found is None:
            untraced.append(obj)
            continue
        collected.records[found] = to_record(object_type, obj)
    # Answers without trace ids: HubSpot keeps input order, so fill the gaps in order.
    waiting = [i for i in waiting if i not in collected.records]
    for index, obj in zip(waiting, untraced, strict=False):
        collected.records[index] = to_record(object_type, obj)
    for index in waiting[len(untraced) :]:
        if unplaced_errors:
            collected.errors[index] = answer_error(index, unplaced_errors[0])
        else:
            message = "HubSpot's batch answer did not mention this input."
            collected.errors[index] = BatchItemError(
                index=index, code="provider_error", message=message
            )


def batch_call(api: str, plural: str, body: Any) -> Callable[[SdkApis], Any]:
    return lambda a: getattr(a.objects_batch, api)(plural, body, **a.kw)


def company_association(object_type: ObjectType, company_id: str | None) -> list[Any]:
    if company_id is None:
        return []
    spec = AssociationSpec(
        association_category="HUBSPOT_DEFINED",
        association_type_id=COMPANY_ASSOCIATION_TYPE[object_type],
    )
    return [PublicAssociationsForObject(to=PublicObjectId(id=company_id), types=[spec])]


async def run_batch(
    transport: Transport,
    object_type: ObjectType,
    items: Sequence[tuple[str | None, RecordIn]],
    *,
    batch_size: int,
    updating: bool,
) -> Result[BatchResult[AnyRecord]]:
    """Create or update (``items`` hold record ids) every item; see the module docstring."""
    collected = Collected()
    prepared = prepare(object_type, items, collected, updating=updating)
    plural = OBJECT_PATHS[object_type]
    verb = "update" if updating else "create"
    api = f"{verb}_with_http_info"
    pending = chunks(prepared, batch_size)
    for n, chunk in enumerate(pending):
        if updating:
            body: Any = BatchInputSimplePublicObjectBatchInput(
                inputs=[
                    SimplePublicObjectBatchInput(
                        id=p.record_id, properties=p.properties, object_write_trace_id=str(p.index)
                    )
                    for p in chunk
                ]
            )
        else:
            body = BatchInputSimplePublicObjectBatchInputForCreate(
                inputs=[
                    SimplePublicObjectBatchInputForCreate(
                        properties=p.properties,
                        associations=company_association(object_type, p.company_id),
                        object_write_trace_id=str(p.index),
                    )
                    for p in chunk
                ]
            )
        answer = await transport.sdk(
            "POST",
            f"/crm/v3/objects/{plural}/batch/{verb}",
            batch_call(api, plural, body),
            lambda data: from_sdk(BatchAnswer, data),
        )
        if answer.error is not None:
            error = answer.error
            if error.code == ErrorCode.VALIDATION_FAILED:
                for p in chunk:
                    collected.fail(p.index, error)
                continue
            if not collected.records:
                return Result.fail(error)
            for later in pending[n:]:
                for p in later:
                    collected.fail(p.index, error, prefix="Not written: ")
            break
        correlate(chunk, answer.unwrap(), object_type, collected)
        await _link_companies(transport, object_type, chunk, collected, created=not updating)
    return Result.ok(collected.result())


async def _link_companies(
    transport: Transport,
    object_type: ObjectType,
    chunk: list[Prepared],
    collected: Collected,
    *,
    created: bool,
) -> None:
    """Record the company on written records; updates associate it in one v4 batch call
    (creates already sent it with the inputs)."""
    linked = [p for p in chunk if p.company_id and p.index in collected.records]
    if not linked:
        return
    if not created:
        plural = OBJECT_PATHS[object_type]
        body = BatchInputPublicDefaultAssociationMultiPost(
            inputs=[
                PublicDefaultAssociationMultiPost(
                    _from=AssociationObjectId(id=collected.records[p.index].id),
                    to=AssociationObjectId(id=p.company_id),
                )
                for p in linked
            ]
        )
        done = await transport.sdk(
            "POST",
            f"/crm/v4/associations/{plural}/companies/batch/associate/default",
            lambda a: raw_answer(
                a.associations_batch.create_default_with_http_info(
                    plural, "companies", body, _preload_content=False, **a.kw
                )
            ),
            lambda data: from_sdk(BatchErrors, data),
        )
        if done.error is not None:
            for p in linked:
                del collected.records[p.index]
                collected.fail(
                    p.index, done.error, prefix="Updated, but not associated with the company: "
                )
            return
        # A 207 names the failed pairs by their ids.
        for error in done.unwrap().errors:
            failed = set(error.context_values("ids"))
            for p in [p for p in linked if collected.records[p.index].id in failed]:
                del collected.records[p.index]
                collected.errors[p.index] = answer_error(p.index, error)
                linked.remove(p)
    for p in linked:
        record = collected.records[p.index]
        if getattr(record, "company_id", None) is None:
            collected.records[p.index] = record.model_copy(update={"company_id": p.company_id})
