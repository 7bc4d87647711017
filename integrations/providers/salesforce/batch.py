"""Batch create and update with sObject Collections (``POST``/``PATCH /composite/sobjects``).

Inputs go in chunks of the batch size (Salesforce takes at most 200 records a call) with
``allOrNone: false``, so each record succeeds or fails on its own. Salesforce answers a
well-formed chunk with 200 and one SaveResult per record, in request order, which maps each
result back to the caller's index. The records written are then read back with one query per
chunk (the answer carries ids only); if that read fails they are built from what was sent.

Failure rules (as for HubSpot):
- an input our mapping rejects is never sent (``validation_failed`` at its index);
- a chunk Salesforce rejects as a whole with a 400 fails each of its inputs, and the next chunk
  is still sent (the fault is in the inputs, not the connection);
- any other chunk failure (auth, limit, 5xx, timeout) stops the batch. If nothing was written
  yet the whole call fails with that error; otherwise the records written so far are returned
  and every unwritten input carries the error (same code, so callers can retry it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from core.errors import AppError, ErrorCode, NotFound, ValidationFailed
from core.result import Result

from ..batching import Collected
from ..unified import AnyRecord, BatchItemError, BatchResult, ObjectType, RecordIn
from .errors import save_result_error
from .mapping import sobject, to_fields, to_record
from .soql import is_record_id
from .transport import Sdk
from .wire import SaveResult, validate

if TYPE_CHECKING:
    from .client import SalesforceCrmClient

COLLECTION_MAX: Final = 200  # records per sObject Collections call
# An update's per-record error codes that mean "no such record" when no field is named.
MISSING_RECORD_CODES: Final = frozenset(
    {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "MALFORMED_ID", "NOT_FOUND"}
)


@dataclass(slots=True)
class Prepared:
    index: int
    fields: dict[str, Any]
    record_id: str | None = None  # updates only


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
            if updating and record_id and not is_record_id(record_id):
                raise NotFound(
                    f"{object_type.capitalize()} {record_id} was not found in Salesforce.",
                    details={"provider": "salesforce", "id": record_id},
                )
            fields = to_fields(object_type, data, creating=not updating)
        except AppError as exc:
            collected.fail(index, exc)
            continue
        prepared.append(Prepared(index, fields, record_id))
    return prepared


def collection_body(object_type: ObjectType, chunk: list[Prepared]) -> dict[str, Any]:
    """The sObject Collections request: every record typed, updates carrying their id."""
    name = sobject(object_type)
    records = []
    for p in chunk:
        record: dict[str, Any] = {"attributes": {"type": name}, **p.fields}
        if p.record_id is not None:
            record["id"] = p.record_id
        records.append(record)
    return {"allOrNone": False, "records": records}


def correlate(
    chunk: list[Prepared], results: list[SaveResult], collected: Collected, *, updating: bool
) -> dict[str, Prepared]:
    """File each SaveResult under its input's index (Salesforce keeps request order); returns
    the written records' ids."""
    written: dict[str, Prepared] = {}
    for position, p in enumerate(chunk):
        if position >= len(results):
            message = "Salesforce's answer did not mention this input."
            collected.errors[p.index] = BatchItemError(
                index=p.index, code=ErrorCode.PROVIDER_ERROR.value, message=message
            )
            continue
        result = results[position]
        if result.success and (result.id or p.record_id):
            written[str(result.id or p.record_id)] = p
            continue
        codes = {e.code for e in result.errors}
        if updating and codes & MISSING_RECORD_CODES and not any(e.fields for e in result.errors):
            collected.fail(
                p.index,
                NotFound(
                    f"Record {p.record_id} was not found in Salesforce.",
                    details={"provider": "salesforce", "error_code": sorted(codes)[0]},
                ),
            )
            continue
        collected.errors[p.index] = save_result_error(p.index, result.errors, sent=p.fields)
    return written


def parse_results(data: Any) -> list[SaveResult]:
    if not isinstance(data, list):
        raise ValueError("sObject Collections answer a list of SaveResults")
    return [validate(SaveResult, item) for item in data]


async def run_batch(
    client: SalesforceCrmClient,
    object_type: ObjectType,
    items: Sequence[tuple[str | None, RecordIn]],
    *,
    batch_size: int,
    updating: bool,
) -> Result[BatchResult[AnyRecord]]:
    """Create or update (``items`` hold record ids) every item; see the module docstring."""
    collected = Collected()
    prepared = prepare(object_type, items, collected, updating=updating)
    size = max(1, min(batch_size, COLLECTION_MAX))
    pending = [prepared[i : i + size] for i in range(0, len(prepared), size)]
    for n, chunk in enumerate(pending):
        body = json.dumps(collection_body(object_type, chunk))

        def invoke(sdk: Sdk, body: str = body) -> list[SaveResult]:
            method = "PATCH" if updating else "POST"
            return parse_results(
                sdk.salesforce.restful("composite/sobjects", method=method, data=body)
            )

        answer = await client.transport.call(invoke)
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
        written = correlate(chunk, answer.unwrap(), collected, updating=updating)
        await _read_back(client, object_type, written, collected)
    return Result.ok(collected.result())


async def _read_back(
    client: SalesforceCrmClient,
    object_type: ObjectType,
    written: dict[str, Prepared],
    collected: Collected,
) -> None:
    if not written:
        return
    found = await client.read_many(object_type, list(written))
    records = found.unwrap_or({})
    for record_id, p in written.items():
        record = records.get(record_id)
        if record is None:  # read failed (or the record went meanwhile): what was sent
            record = to_record(object_type, {**p.fields, "Id": record_id})
        collected.records[p.index] = record
