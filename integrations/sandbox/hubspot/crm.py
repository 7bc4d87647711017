"""CRM v3 objects, one record at a time: list, read, create, update, archive.

``/crm/v3/objects/{contacts|companies|deals}``: lists page by id (``limit`` 1-100, default 10,
``after`` from ``paging.next.after``); ``archived=true`` lists (or reads) archived records only,
with ``archived: true`` and ``archivedAt``;
``properties`` and ``associations`` shape the answer; a missing record reads as 404.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

from starlette.responses import Response

from . import errors, records
from .guard import Call, crm
from .schema import ObjectSchema
from .state import Record

LIST_DEFAULT, LIST_MAX = 10, 100


def flag(call: Call, name: str) -> bool:
    return call.request.query_params.get(name, "false").lower() == "true"


def parse_limit(raw: str | None, default: int, maximum: int) -> int | Response:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return errors.validation(f"Invalid limit: {raw}")
    if not 1 <= value <= maximum:
        return errors.validation(f"limit must be between 1 and {maximum}, but was {value}")
    return value


def next_link(call: Call, after: str) -> str:
    query = dict(call.request.query_params) | {"after": after}
    url = call.request.url.replace_query_params(**query)
    return str(url)


def input_properties(call: Call) -> Any:
    body = call.body if isinstance(call.body, dict) else {}
    return body.get("properties")


def read(call: Call, schema: ObjectSchema, record: Record) -> dict[str, Any]:
    wanted = call.query_list("properties")
    return records.shape(
        schema,
        record,
        records.read_properties(schema, record, wanted or None),
        data=call.data,
        associations=call.query_list("associations"),
    )


@crm("read")
def list_objects(call: Call) -> Response:
    limit = parse_limit(call.request.query_params.get("limit"), LIST_DEFAULT, LIST_MAX)
    if isinstance(limit, Response):
        return limit
    after = call.request.query_params.get("after") or "0"
    if not after.isdigit():
        return errors.validation(f"Invalid after: {after}")
    archived = flag(call, "archived")
    table = call.data.table(call.schema.name)
    ids = list(table)  # id order (see PortalData)
    found: list[Record] = []
    for record_id in itertools.islice(ids, bisect.bisect_left(ids, int(after), key=int), None):
        record = table[record_id]
        if record.archived == archived:
            found.append(record)
            if len(found) > limit:
                break
    page, rest = found[:limit], found[limit:]
    body: dict[str, Any] = {"results": [read(call, call.schema, r) for r in page]}
    if rest:
        body["paging"] = {"next": {"after": rest[0].id, "link": next_link(call, rest[0].id)}}
    return errors.respond(body)


@crm("read")
def get_object(call: Call) -> Response:
    object_id = call.param("object_id")
    id_property = call.request.query_params.get("idProperty")
    record = records.find(call.data, call.schema, object_id, id_property)
    if record is None and flag(call, "archived") and not id_property:
        record = records.live(call.data, call.schema, object_id, archived=True)
    if record is None:
        return errors.empty(404)
    return errors.respond(read(call, call.schema, record))


@crm("write")
def create_object(call: Call) -> Response:
    if not isinstance(call.body, dict) or not isinstance(call.body.get("properties"), dict):
        return errors.validation("Invalid input: properties is required and must be an object")
    values = records.check_write(call.data, call.schema, call.body["properties"])
    if isinstance(values, Response):
        return values
    links = records.parse_links(call.data, call.schema, call.body.get("associations"))
    if isinstance(links, Response):
        return links
    record = records.create(call.hubspot, call.data, call.schema, values, links)
    return errors.respond(records.shape(call.schema, record), 201)


@crm("write")
def update_object(call: Call) -> Response:
    object_id = call.param("object_id")
    record = records.find(
        call.data, call.schema, object_id, call.request.query_params.get("idProperty")
    )
    if record is None:
        return errors.object_not_found(object_id)
    properties = input_properties(call)
    if not isinstance(properties, dict):
        return errors.validation("Invalid input: properties is required and must be an object")
    values = records.check_write(call.data, call.schema, properties, record_id=record.id)
    if isinstance(values, Response):
        return values
    records.update(call.data, call.schema, record, values)
    return errors.respond(records.shape(call.schema, record))


@crm("write")
def archive_object(call: Call) -> Response:
    record = records.live(call.data, call.schema, call.param("object_id"))
    if record is not None:
        records.archive(call.data, call.schema, record)
    return errors.empty(204)
