"""sObject records: checking writes as Salesforce does, storing them, and the single-record
endpoints (``/sobjects``, ``/sobjects/{type}``, ``/sobjects/{type}/describe`` and
``/sobjects/{type}/{id}``).

Creates answer 201 ``{"id", "success": true, "errors": []}``; updates and deletes answer 204. A
write is checked in Salesforce's order: the JSON body (unknown columns: ``INVALID_FIELD``; values
of the wrong type: ``JSON_PARSER_ERROR`` or ``INVALID_TYPE_ON_FIELD_IN_RECORD``), read-only fields
(``INVALID_FIELD_FOR_INSERT_UPDATE``), lookups (``MALFORMED_ID``, ``FIELD_INTEGRITY_EXCEPTION``,
``INVALID_CROSS_REFERENCE_KEY``, ``ENTITY_IS_DELETED``), then required fields
(``REQUIRED_FIELD_MISSING``). Deleting a record keeps it, with ``IsDeleted`` set (the recycle
bin, which ``queryAll`` sees), and deletes its dependants as Salesforce cascades (contact roles,
and the tasks and notes logged on it).
A task's derived fields and the ``LastActivityDate`` it sets are in ``activities.py``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from . import errors, ids
from .activities import derive_task, log_activity
from .guard import Call, rest
from .schema import (
    SOBJECTS,
    SObject,
    WriteError,
    check_reference,
    coerce,
    describe,
    summary,
)
from .state import OrgData, Record, SalesforceState

CASCADES: dict[str, tuple[tuple[str, str], ...]] = {
    # parent type -> (child type, lookup field) deleted with it
    "Account": (
        ("Contact", "AccountId"),
        ("Opportunity", "AccountId"),
        ("Task", "WhatId"),
        ("Note", "ParentId"),
    ),
    "Contact": (("OpportunityContactRole", "ContactId"), ("Task", "WhoId"), ("Note", "ParentId")),
    "Opportunity": (
        ("OpportunityContactRole", "OpportunityId"),
        ("Task", "WhatId"),
        ("Note", "ParentId"),
    ),
}
CLOSED_STAGES = {"Closed Won": (True, True), "Closed Lost": (True, False)}
# Values a create leaves to Salesforce, per sObject.
CREATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "OpportunityContactRole": {"IsPrimary": False},
    "Task": {"Status": "Not Started", "Priority": "Normal", "TaskSubtype": "Task"},
    "Note": {"IsPrivate": False},
}


def url(version: str, sobject: str, record_id: str) -> str:
    return f"/services/data/v{version}/sobjects/{sobject}/{record_id}"


def shape(version: str, record: Record, fields: list[str] | None = None) -> dict[str, Any]:
    """A record as the REST API answers it: ``attributes`` first, then its fields."""
    names = fields if fields is not None else list(record.values)
    body: dict[str, Any] = {
        "attributes": {"type": record.sobject, "url": url(version, record.sobject, record.id)}
    }
    for name in names:
        body[name] = record.values.get(name)
    return body


def _column(raw: bytes, key: str) -> int:
    """Where the value of ``key`` starts in the body (for JSON_PARSER_ERROR's position)."""
    found = raw.find(f'"{key}"'.encode())
    return 1 if found < 0 else found + len(key) + 4


def check_write(
    data: OrgData,
    sobject: SObject,
    body: dict[str, Any],
    *,
    record: Record | None = None,
    raw: bytes = b"",
) -> dict[str, Any] | WriteError:
    """The values to store (by API name), or the first error Salesforce reports."""
    values: dict[str, Any] = {}
    read_only: list[str] = []
    for key, raw_value in body.items():
        if key == "attributes":
            continue
        spec = sobject.field(key)
        if spec is None:
            return WriteError(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}"
            )
        value, problem = coerce(spec, raw_value, _column(raw, key))
        if problem is not None:
            return problem
        writable = spec.createable if record is None else spec.updateable
        if not writable:
            read_only.append(spec.name)
        values[spec.name] = value
    if read_only:
        return WriteError(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            f"Unable to create/update fields: {', '.join(read_only)}. Please check the security "
            "settings of this field and verify that it is read/write for your profile or "
            "permission set.",
            read_only,
        )
    for name, value in list(values.items()):
        spec = sobject.field(name)
        if spec is None or spec.type != "reference" or value is None:
            continue
        normal, problem = check_reference(spec, value)
        if problem is not None or normal is None:
            return problem or WriteError("MALFORMED_ID", f"{spec.label}: invalid id", [name])
        values[name] = normal
        if spec.reference_to == ("User",):
            if normal != data.org.user_id:
                return WriteError(
                    "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name]
                )
            continue
        target = data.find(normal)
        if target is None:
            return WriteError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])
        if target.deleted:
            return WriteError("ENTITY_IS_DELETED", "entity is deleted", [name])
    merged = dict(record.values) if record is not None else {}
    merged |= values
    missing = [
        f.name
        for f in sobject.fields
        if f.required and merged.get(f.name) is None and (record is None or f.name in values)
    ]
    if missing:
        return WriteError(
            "REQUIRED_FIELD_MISSING",
            f"Required fields are missing: [{', '.join(missing)}]",
            missing,
        )
    return values


def _derive(data: OrgData, record: Record, stamp: str) -> None:
    """Fields Salesforce computes: a contact's Name, an opportunity's IsClosed and IsWon, a
    task's IsClosed, IsHighPriority, AccountId and CompletedDateTime (``stamp``: now)."""
    values = record.values
    if record.sobject == "Contact":
        values["Name"] = " ".join(p for p in (values.get("FirstName"), values.get("LastName")) if p)
    elif record.sobject == "Opportunity":
        values["IsClosed"], values["IsWon"] = CLOSED_STAGES.get(
            str(values.get("StageName")), (False, False)
        )
    elif record.sobject == "Task":
        derive_task(data, record, stamp)


def create(
    salesforce: SalesforceState, data: OrgData, sobject: SObject, values: dict[str, Any]
) -> Record:
    stamp = data.stamp()
    stamp_ms = data.clock_ms
    user = data.org.user_id
    record_id = salesforce.next_id(sobject.prefix)
    stored: dict[str, Any] = {f.name: None for f in sobject.fields}
    stored |= {
        "Id": record_id,
        "IsDeleted": False,
        "CreatedDate": stamp,
        "CreatedById": user,
        "LastModifiedDate": stamp,
        "LastModifiedById": user,
        "SystemModstamp": stamp,
    }
    if "OwnerId" in stored:
        stored["OwnerId"] = user
    stored |= CREATE_DEFAULTS.get(sobject.name, {})
    stored |= {k: v for k, v in values.items() if v is not None or k not in ("OwnerId",)}
    record = Record(record_id, sobject.name, stored)
    _derive(data, record, stamp)
    data.insert(record, stamp_ms)
    log_activity(data, record)
    return record


def update(data: OrgData, record: Record, values: dict[str, Any]) -> None:
    stamp = data.restamp(record)
    record.values |= values
    record.values |= {
        "LastModifiedDate": stamp,
        "LastModifiedById": data.org.user_id,
        "SystemModstamp": stamp,
    }
    _derive(data, record, stamp)
    log_activity(data, record)


def delete(data: OrgData, record: Record) -> None:
    """Move the record (and what cascades from it) to the recycle bin: ``IsDeleted``, and a new
    ``SystemModstamp`` and ``LastModifiedDate`` (what an incremental ``queryAll`` reads)."""
    stamp = data.restamp(record)
    record.values |= {
        "IsDeleted": True,
        "LastModifiedDate": stamp,
        "LastModifiedById": data.org.user_id,
        "SystemModstamp": stamp,
    }
    record.deleted_ms = data.clock_ms
    for child_type, lookup in CASCADES.get(record.sobject, ()):
        for child in list(data.table(child_type).values()):
            if not child.deleted and child.values.get(lookup) == record.id:
                delete(data, child)


def locate(data: OrgData, sobject: SObject, raw_id: str) -> Record | Response:
    """The record an id in a URL names (deleted ones too), or Salesforce's 400/404 answer."""
    normal = ids.normalize(raw_id)
    if normal is None:
        return errors.not_found(
            f"Provided external ID field does not exist or is not accessible: {raw_id}"
        )
    if normal[:3] != sobject.prefix:
        return errors.error(
            400, "MALFORMED_ID", f"{sobject.label} ID: id value of incorrect type: {raw_id}", ["Id"]
        )
    record = data.table(sobject.name).get(normal)
    return record if record is not None else errors.not_found()


def unknown_sobject() -> Response:
    return errors.not_found()


def method_not_allowed(method: str, allowed: str) -> Response:
    return errors.error(
        405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {allowed}"
    )


def body_object(call: Call, sobject: SObject) -> dict[str, Any] | Response:
    if call.body is None:
        return {}
    if not isinstance(call.body, dict):
        token = "START_ARRAY" if isinstance(call.body, list) else "VALUE_STRING"
        return errors.json_parser(
            f"Cannot deserialize instance of {sobject.name} from {token} value "
            "or request may be missing a required field at [line:1, column:1]"
        )
    return call.body


def requested_fields(call: Call, sobject: SObject) -> list[str] | Response | None:
    wanted = call.query_list("fields")
    if not wanted:
        return None
    names: list[str] = []
    for name in wanted:
        spec = sobject.field(name)
        if spec is None:
            return errors.error(
                400,
                "INVALID_FIELD",
                f"No such column '{name}' on entity '{sobject.name}'. If you are attempting to "
                "use a custom field, be sure to append the '__c' after the custom field name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
            )
        names.append(spec.name)
    return names


# --- endpoints ---------------------------------------------------------------------------------


@rest
def global_describe(call: Call) -> Response:
    return errors.respond(
        {
            "encoding": "UTF-8",
            "maxBatchSize": 200,
            "sobjects": [summary(s, call.version) for s in SOBJECTS.values()],
        }
    )


@rest
def sobject_info(call: Call) -> Response:
    sobject = call.sobject()
    if sobject is None:
        return unknown_sobject()
    recent = sorted(
        (r for r in call.data.table(sobject.name).values() if not r.deleted),
        key=lambda r: str(r.values.get("LastModifiedDate")),
        reverse=True,
    )[:5]
    name_field = next((f.name for f in sobject.fields if f.name_field), "Id")
    return errors.respond(
        {
            "objectDescribe": summary(sobject, call.version),
            "recentItems": [shape(call.version, r, ["Id", name_field]) for r in recent],
        }
    )


@rest
def describe_sobject(call: Call) -> Response:
    sobject = call.sobject()
    if sobject is None:
        return unknown_sobject()
    return errors.respond(describe(sobject, call.version))


@rest
def create_record(call: Call) -> Response:
    sobject = call.sobject()
    if sobject is None:
        return unknown_sobject()
    if not sobject.writable:
        return method_not_allowed("POST", "GET,HEAD")
    body = body_object(call, sobject)
    if isinstance(body, Response):
        return body
    values = check_write(call.data, sobject, body, raw=call.raw)
    if isinstance(values, WriteError):
        return errors.write_error(values)
    record = create(call.salesforce, call.data, sobject, values)
    return errors.respond({"id": record.id, "success": True, "errors": []}, 201)


@rest
def get_record(call: Call) -> Response:
    sobject = call.sobject()
    if sobject is None:
        return unknown_sobject()
    record = locate(call.data, sobject, call.param("record_id"))
    if isinstance(record, Response):
        return record
    if record.deleted:
        return errors.not_found()
    fields = requested_fields(call, sobject)
    if isinstance(fields, Response):
        return fields
    return errors.respond(shape(call.version, record, fields))


@rest
def update_record(call: Call) -> Response:
    sobject = call.sobject()
    if sobject is None:
        return unknown_sobject()
    if not sobject.writable:
        return method_not_allowed("PATCH", "GET,HEAD")
    record = locate(call.data, sobject, call.param("record_id"))
    if isinstance(record, Response):
        return record
    if record.deleted:
        return errors.error(404, "ENTITY_IS_DELETED", "entity is deleted", [])
    body = body_object(call, sobject)
    if isinstance(body, Response):
        return body
    values = check_write(call.data, sobject, body, record=record, raw=call.raw)
    if isinstance(values, WriteError):
        return errors.write_error(values)
    update(call.data, record, values)
    return errors.empty(204)


@rest
def delete_record(call: Call) -> Response:
    sobject = call.sobject()
    if sobject is None:
        return unknown_sobject()
    if not sobject.writable:
        return method_not_allowed("DELETE", "GET,HEAD")
    record = locate(call.data, sobject, call.param("record_id"))
    if isinstance(record, Response):
        return record
    if record.deleted:
        return errors.error(404, "ENTITY_IS_DELETED", "entity is deleted", [])
    delete(call.data, record)
    return errors.empty(204)


def allowed_methods(request: Request) -> list[str]:
    """The methods other routes take for this path (for a 405's ``Allowed are``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.PARTIAL:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


@rest
def not_found(call: Call) -> Response:
    allowed = allowed_methods(call.request)
    if allowed:
        return method_not_allowed(call.request.method, ",".join(allowed))
    return errors.not_found()
