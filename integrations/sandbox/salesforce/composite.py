"""sObject Collections: ``/composite/sobjects`` (create ``POST``, update ``PATCH``, delete
``DELETE ?ids=``) and ``GET /composite/sobjects/{type}?ids=&fields=`` (retrieve).

Up to 200 records a call (more answers 400 ``EXCEEDED_ID_LIMIT`` and writes nothing). Each record
carries ``attributes.type``; updates carry their ``id``. The answer is 200 with one result per
record, in order: ``{"id", "success": true, "errors": []}``, or ``{"success": false, "errors":
[{"statusCode", "message", "fields"}]}``. With ``allOrNone`` true one failure writes nothing: the
failing records report their errors and the others ``ALL_OR_NONE_OPERATION_ROLLED_BACK``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from . import errors, ids
from .guard import Call, rest
from .records import check_write, create, delete, requested_fields, shape, update
from .schema import SObject, WriteError, resolve
from .state import Record

MAX_RECORDS = 200
MAX_RETRIEVE = 2000
ROLLED_BACK = WriteError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone "
    "header",
    [],
)
Apply = Callable[[], str]  # writes one checked record, returns its id


def _too_many() -> Response:
    return errors.error(
        400,
        "EXCEEDED_ID_LIMIT",
        f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call",
    )


def _ok(record_id: str) -> dict[str, Any]:
    return {"id": record_id, "success": True, "errors": []}


def _failed(problem: WriteError) -> dict[str, Any]:
    return {"success": False, "errors": [errors.item_error(problem)]}


def _finish(planned: list[Apply | WriteError], all_or_none: bool) -> Response:
    """Write what was checked, and answer one result per record."""
    if all_or_none and any(isinstance(p, WriteError) for p in planned):
        return errors.respond(
            [_failed(p if isinstance(p, WriteError) else ROLLED_BACK) for p in planned]
        )
    return errors.respond([_failed(p) if isinstance(p, WriteError) else _ok(p()) for p in planned])


def _records(call: Call) -> tuple[list[tuple[SObject, dict[str, Any]]], bool] | Response:
    body = call.body
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        return errors.json_parser(
            "Cannot deserialize instance of SObjectCollectionRequest: a records list is required"
        )
    raw_records: list[Any] = body["records"]
    if len(raw_records) > MAX_RECORDS:
        return _too_many()
    typed: list[tuple[SObject, dict[str, Any]]] = []
    for item in raw_records:
        attributes = item.get("attributes") if isinstance(item, dict) else None
        name = attributes.get("type") if isinstance(attributes, dict) else None
        if not isinstance(item, dict) or not isinstance(name, str):
            return errors.error(400, "INVALID_TYPE", "Must send a concrete entity type.")
        sobject = resolve(name)
        if sobject is None:
            return errors.error(400, "INVALID_TYPE", f"sObject type '{name}' is not supported.")
        typed.append((sobject, item))
    return typed, body.get("allOrNone") is True


def _check_create(call: Call, sobject: SObject, item: dict[str, Any]) -> Apply | WriteError:
    if not sobject.writable:
        return WriteError(
            "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
            f"entity type cannot be inserted: {sobject.name}",
            [],
        )
    if any(key.lower() == "id" for key in item):
        return WriteError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
    values = check_write(call.data, sobject, item)
    if isinstance(values, WriteError):
        return values
    return lambda: create(call.salesforce, call.data, sobject, values).id


@rest
def create_many(call: Call) -> Response:
    parsed = _records(call)
    if isinstance(parsed, Response):
        return parsed
    typed, all_or_none = parsed
    if not all_or_none:  # each record sees the ones written before it
        return errors.respond(
            [
                _failed(p) if isinstance(p, WriteError) else _ok(p())
                for p in (_check_create(call, s, i) for s, i in typed)
            ]
        )
    return _finish([_check_create(call, s, i) for s, i in typed], all_or_none)


def _target(call: Call, sobject: SObject, raw_id: Any) -> Record | WriteError:
    if not isinstance(raw_id, str) or not raw_id:
        return WriteError("MISSING_ARGUMENT", "Id not specified in an update call", [])
    normal = ids.normalize(raw_id)
    if normal is None:
        return WriteError("MALFORMED_ID", f"malformed id {raw_id}", [])
    if normal[:3] != sobject.prefix:
        return WriteError(
            "MALFORMED_ID", f"{sobject.label} ID: id value of incorrect type: {raw_id}", ["Id"]
        )
    record = call.data.table(sobject.name).get(normal)
    if record is None:
        return WriteError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
    if record.deleted:
        return WriteError("ENTITY_IS_DELETED", "entity is deleted", [])
    return record


def _check_update(call: Call, sobject: SObject, item: dict[str, Any]) -> Apply | WriteError:
    raw_id = next((v for k, v in item.items() if k.lower() == "id"), None)
    record = _target(call, sobject, raw_id)
    if isinstance(record, WriteError):
        return record
    if not sobject.writable:
        return WriteError(
            "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
            f"entity type cannot be updated: {sobject.name}",
            [],
        )
    fields = {k: v for k, v in item.items() if k.lower() != "id"}
    values = check_write(call.data, sobject, fields, record=record)
    if isinstance(values, WriteError):
        return values

    def apply() -> str:
        update(call.data, record, values)
        return record.id

    return apply


@rest
def update_many(call: Call) -> Response:
    parsed = _records(call)
    if isinstance(parsed, Response):
        return parsed
    typed, all_or_none = parsed
    if not all_or_none:
        return errors.respond(
            [
                _failed(p) if isinstance(p, WriteError) else _ok(p())
                for p in (_check_update(call, s, i) for s, i in typed)
            ]
        )
    return _finish([_check_update(call, s, i) for s, i in typed], all_or_none)


def _check_delete(call: Call, raw_id: str) -> Apply | WriteError:
    normal = ids.normalize(raw_id)
    if normal is None:
        return WriteError("MALFORMED_ID", f"malformed id {raw_id}", [])
    record = call.data.find(normal)
    if record is None:
        return WriteError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
    if record.deleted:
        return WriteError("ENTITY_IS_DELETED", "entity is deleted", [])
    if record.sobject == "Organization":
        return WriteError(
            "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", []
        )

    def apply() -> str:
        if not record.deleted:  # a cascade from an earlier id may have deleted it
            delete(call.data, record)
        return record.id

    return apply


@rest
def delete_many(call: Call) -> Response:
    wanted = call.query_list("ids")
    if not wanted:
        return errors.error(400, "MISSING_ARGUMENT", "ids parameter is required")
    if len(wanted) > MAX_RECORDS:
        return _too_many()
    all_or_none = call.request.query_params.get("allOrNone", "false").lower() == "true"
    if not all_or_none:
        return errors.respond(
            [
                _failed(p) if isinstance(p, WriteError) else _ok(p())
                for p in (_check_delete(call, raw) for raw in wanted)
            ]
        )
    return _finish([_check_delete(call, raw) for raw in wanted], all_or_none)


@rest
def retrieve_many(call: Call) -> Response:
    sobject = call.sobject()
    if sobject is None:
        return errors.not_found()
    wanted = call.query_list("ids")
    fields = requested_fields(call, sobject)
    if isinstance(fields, Response):
        return fields
    if not wanted or fields is None:
        return errors.error(400, "MISSING_ARGUMENT", "ids and fields parameters are required")
    if len(wanted) > MAX_RETRIEVE:
        return errors.error(
            400, "EXCEEDED_ID_LIMIT", f"cannot retrieve more than {MAX_RETRIEVE} records"
        )
    found: list[dict[str, Any] | None] = []
    for raw in wanted:
        normal = ids.normalize(raw)
        record = call.data.table(sobject.name).get(normal) if normal else None
        found.append(
            None if record is None or record.deleted else shape(call.version, record, fields)
        )
    return errors.respond(found)
