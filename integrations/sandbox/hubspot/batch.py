"""CRM v3 batch endpoints: ``/crm/v3/objects/{type}/batch/{create|read|update|archive}``.

At most 100 inputs per call (400 otherwise). Answers are ``{"status": "COMPLETE", "results",
"startedAt", "completedAt"}``, plus ``numErrors`` and ``errors`` with status 207 when some inputs
failed. Invalid properties fail the whole batch (nothing is written) unless the inputs carry
``objectWriteTraceId``s, which ask for HubSpot's multi-status answer instead.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from . import errors, records
from .guard import Call, crm
from .schema import iso_ms
from .state import Record

MAX_INPUTS = 100


def inputs_of(call: Call) -> list[dict[str, Any]] | Response:
    body = call.body if isinstance(call.body, dict) else None
    inputs = body.get("inputs") if body is not None else None
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        return errors.validation("Invalid input: inputs is required and must be a list of objects")
    if len(inputs) > MAX_INPUTS:
        return errors.validation(
            f"Batch input limit exceeded: {len(inputs)} inputs were given, the limit is {MAX_INPUTS}."
        )
    return inputs


def answer(
    results: list[dict[str, Any]], failures: list[dict[str, Any]], started: str, *, ok: int
) -> Response:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if failures:
        body |= {"numErrors": len(failures), "errors": failures}
    body |= {"startedAt": started, "completedAt": iso_ms(records.now())}
    return errors.respond(body, 207 if failures else ok)


def write_failure(response: Response, trace: str) -> dict[str, Any]:
    """A single-record error answer turned into a multi-status ``errors`` entry."""
    detail = json.loads(bytes(response.body))
    return errors.batch_item_error(
        detail.get("category", "VALIDATION_ERROR"),
        detail.get("message", "Invalid input"),
        {"objectWriteTraceId": [trace]},
    )


@crm("write")
def batch_create(call: Call) -> Response:
    started = iso_ms(records.now())
    inputs = inputs_of(call)
    if isinstance(inputs, Response):
        return inputs
    traced = bool(inputs) and all("objectWriteTraceId" in i for i in inputs)
    planned: list[tuple[dict[str, str | None], records.Links]] = []
    failures: list[dict[str, Any]] = []
    emails: dict[str, int] = {}
    for index, item in enumerate(inputs):
        values: Any = records.check_write(call.data, call.schema, item.get("properties", {}))
        links: Any = (
            []
            if isinstance(values, Response)
            else records.parse_links(call.data, call.schema, item.get("associations"))
        )
        email = values.get("email") if isinstance(values, dict) else None
        if email and email in emails:
            values = errors.validation(f"Duplicate email in batch input: {email} (input {index})")
        problem = (
            values
            if isinstance(values, Response)
            else links
            if isinstance(links, Response)
            else None
        )
        if problem is not None:
            if not traced:
                return problem
            failures.append(write_failure(problem, str(item["objectWriteTraceId"])))
            continue
        if email:
            emails[email] = index
        planned.append((values, links))
    created = [
        records.create(call.hubspot, call.data, call.schema, values, links)
        for values, links in planned
    ]
    results = [records.shape(call.schema, record) for record in created]
    return answer(results, failures, started, ok=201)


@crm("read")
def batch_read(call: Call) -> Response:
    started = iso_ms(records.now())
    inputs = inputs_of(call)
    if isinstance(inputs, Response):
        return inputs
    body = call.body if isinstance(call.body, dict) else {}
    wanted = body.get("properties") if isinstance(body.get("properties"), list) else None
    id_property = body.get("idProperty")
    archived = call.request.query_params.get("archived", "false").lower() == "true"
    results: list[dict[str, Any]] = []
    missing: list[str] = []
    for item in inputs:
        value = str(item.get("id", ""))
        if archived and not id_property:
            record = records.live(call.data, call.schema, value, archived=True)
        else:
            record = records.find(call.data, call.schema, value, id_property)
        if record is None:
            missing.append(value)
            continue
        properties = records.read_properties(call.schema, record, wanted)
        results.append(records.shape(call.schema, record, properties))
    failures = []
    if missing:
        kind = call.schema.singular.upper()
        failures.append(
            errors.batch_item_error(
                "OBJECT_NOT_FOUND",
                f"Could not get some {kind} objects, they may be deleted or not exist. "
                "Check that ids are valid.",
                {"ids": missing},
            )
        )
    return answer(results, failures, started, ok=200)


@crm("write")
def batch_update(call: Call) -> Response:
    started = iso_ms(records.now())
    inputs = inputs_of(call)
    if isinstance(inputs, Response):
        return inputs
    planned: list[tuple[Record, dict[str, str | None]]] = []
    missing: list[str] = []
    for item in inputs:
        value = str(item.get("id", ""))
        record = records.find(call.data, call.schema, value, item.get("idProperty"))
        if record is None:
            missing.append(value)
            continue
        values = records.check_write(
            call.data, call.schema, item.get("properties", {}), record_id=record.id
        )
        if isinstance(values, Response):
            return values
        planned.append((record, values))
    for record, values in planned:
        records.update(call.data, call.schema, record, values)
    results = [records.shape(call.schema, record) for record, _ in planned]
    failures = []
    if missing:
        failures.append(
            errors.batch_item_error(
                "OBJECT_NOT_FOUND",
                f"Could not update some {call.schema.singular.upper()} objects, they may be "
                "deleted or not exist. Check that ids are valid.",
                {"ids": missing},
            )
        )
    return answer(results, failures, started, ok=200)


@crm("write")
def batch_archive(call: Call) -> Response:
    inputs = inputs_of(call)
    if isinstance(inputs, Response):
        return inputs
    for item in inputs:
        record = records.live(call.data, call.schema, str(item.get("id", "")))
        if record is not None:
            records.archive(call.data, call.schema, record)
    return errors.empty(204)
