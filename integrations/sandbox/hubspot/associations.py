"""CRM v4 associations (developers.hubspot.com, Associations v4).

Per record: ``PUT .../associations/default/{toType}/{toId}`` (the unlabelled type, answered as a
batch of both directions), ``PUT .../associations/{toType}/{toId}`` with ``[{associationCategory,
associationTypeId}]`` (201, the labels), ``GET .../associations/{toType}`` (paged ``results`` of
``{toObjectId, associationTypes}``) and ``DELETE``. In bulk: ``/crm/v4/associations/{from}/{to}/
batch/{associate/default|create|read|archive}``.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from . import errors, graph, records
from .batch import answer
from .crm import parse_limit
from .guard import Call, crm
from .schema import ObjectSchema, iso_ms, resolve_type

PAGE_DEFAULT, PAGE_MAX = 500, 500
CATEGORY = "HUBSPOT_DEFINED"


def _target(call: Call) -> ObjectSchema | Response:
    name = call.param("to_type")
    target = resolve_type(name)
    if target is None:
        return errors.unknown_object_type(name)
    if (call.schema.name, target.name) not in graph.DEFAULT:
        return errors.validation(
            f"{call.schema.singular} to {target.singular} associations are not supported"
        )
    return target


def _pair(call: Call, target: ObjectSchema, from_id: str, to_id: str) -> Response | None:
    for schema, record_id in ((call.schema, from_id), (target, to_id)):
        if records.live(call.data, schema, record_id) is None:
            return errors.object_not_found(record_id)
    return None


def _specs(call: Call, target: ObjectSchema, raw: Any) -> set[int] | Response:
    if not isinstance(raw, list) or not raw:
        return errors.validation(
            "The body must be a list of {associationCategory, associationTypeId}"
        )
    ids: set[int] = set()
    for spec in raw:
        category = spec.get("associationCategory") if isinstance(spec, dict) else None
        type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
        if (
            category != CATEGORY
            or not isinstance(type_id, int)
            or not graph.valid_type(type_id, call.schema.name, target.name)
        ):
            return errors.validation(
                f"Invalid association type {category}/{type_id} from {call.schema.singular} "
                f"to {target.singular}"
            )
        ids.add(type_id)
    return ids


def _default_results(
    from_type: str, from_id: str, to_type: str, to_id: str
) -> list[dict[str, Any]]:
    forward = graph.DEFAULT[(from_type, to_type)]
    return [
        {
            "from": {"id": a},
            "to": {"id": b},
            "associationSpec": {"associationCategory": CATEGORY, "associationTypeId": kind},
        }
        for a, b, kind in ((from_id, to_id, forward), (to_id, from_id, graph.REVERSE[forward]))
    ]


def _labels(
    call: Call, target: ObjectSchema, from_id: str, to_id: str, ids: set[int]
) -> dict[str, Any]:
    return {
        "fromObjectTypeId": call.schema.type_id,
        "fromObjectId": int(from_id),
        "toObjectTypeId": target.type_id,
        "toObjectId": int(to_id),
        "labels": sorted({graph.TYPES[i].label or "" for i in ids} - {""}),
    }


def _types(kinds: set[int]) -> list[dict[str, Any]]:
    return [
        {"category": CATEGORY, "typeId": kind, "label": graph.TYPES[kind].label}
        for kind in sorted(kinds)
    ]


def _linked(call: Call, target: ObjectSchema, from_id: str) -> list[dict[str, Any]]:
    links = graph.associated(call.data, call.schema.name, from_id, target.name)
    return [
        {"toObjectId": int(to_id), "associationTypes": _types(kinds)}
        for to_id, kinds in links.items()
    ]


def _batch_setup(call: Call) -> tuple[ObjectSchema, list[dict[str, Any]]] | Response:
    target = _target(call)
    if isinstance(target, Response):
        return target
    body = call.body if isinstance(call.body, dict) else {}
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        return errors.validation("Invalid input: inputs is required and must be a list of objects")
    if len(inputs) > 1000:
        return errors.validation("Batch input limit exceeded: the limit is 1000.")
    return target, inputs


def _id(value: Any) -> str:
    return str(value.get("id", "")) if isinstance(value, dict) else ""


@crm("write", type_param="from_type")
def create_default(call: Call) -> Response:
    started = iso_ms(records.now())
    target = _target(call)
    if isinstance(target, Response):
        return target
    from_id, to_id = call.param("from_id"), call.param("to_id")
    problem = _pair(call, target, from_id, to_id)
    if problem is not None:
        return problem
    graph.link(call.data, call.schema.name, from_id, target.name, to_id, set())
    return answer(
        _default_results(call.schema.name, from_id, target.name, to_id), [], started, ok=200
    )


@crm("write", type_param="from_type")
def create_labeled(call: Call) -> Response:
    target = _target(call)
    if isinstance(target, Response):
        return target
    from_id, to_id = call.param("from_id"), call.param("to_id")
    problem = _pair(call, target, from_id, to_id)
    if problem is not None:
        return problem
    ids = _specs(call, target, call.body)
    if isinstance(ids, Response):
        return ids
    graph.link(call.data, call.schema.name, from_id, target.name, to_id, ids)
    return errors.respond(_labels(call, target, from_id, to_id, ids), 201)


@crm("write", type_param="from_type")
def remove(call: Call) -> Response:
    target = _target(call)
    if isinstance(target, Response):
        return target
    graph.unlink(
        call.data, call.schema.name, call.param("from_id"), target.name, call.param("to_id")
    )
    return errors.empty(204)


@crm("read", type_param="from_type")
def list_associations(call: Call) -> Response:
    target = _target(call)
    if isinstance(target, Response):
        return target
    limit = parse_limit(call.request.query_params.get("limit"), PAGE_DEFAULT, PAGE_MAX)
    if isinstance(limit, Response):
        return limit
    after = call.request.query_params.get("after") or "0"
    if not after.isdigit():
        return errors.validation(f"Invalid after: {after}")
    found = _linked(call, target, call.param("from_id"))
    offset = int(after)
    body: dict[str, Any] = {"results": found[offset : offset + limit]}
    if offset + limit < len(found):
        body["paging"] = {"next": {"after": str(offset + limit)}}
    return errors.respond(body)


@crm("write", type_param="from_type")
def batch_default(call: Call) -> Response:
    started = iso_ms(records.now())
    setup = _batch_setup(call)
    if isinstance(setup, Response):
        return setup
    target, inputs = setup
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for item in inputs:
        from_id, to_id = _id(item.get("from")), _id(item.get("to"))
        if _pair(call, target, from_id, to_id) is not None:
            failures.append(
                errors.batch_item_error(
                    "OBJECT_NOT_FOUND",
                    f"No record pair {from_id} / {to_id}",
                    {"ids": [from_id, to_id]},
                )
            )
            continue
        graph.link(call.data, call.schema.name, from_id, target.name, to_id, set())
        results += _default_results(call.schema.name, from_id, target.name, to_id)
    return answer(results, failures, started, ok=200)


@crm("write", type_param="from_type")
def batch_create(call: Call) -> Response:
    started = iso_ms(records.now())
    setup = _batch_setup(call)
    if isinstance(setup, Response):
        return setup
    target, inputs = setup
    planned: list[tuple[str, str, set[int]]] = []
    for item in inputs:
        from_id, to_id = _id(item.get("from")), _id(item.get("to"))
        problem = _pair(call, target, from_id, to_id)
        ids = problem if problem is not None else _specs(call, target, item.get("types"))
        if isinstance(ids, Response):
            return ids
        planned.append((from_id, to_id, ids))
    for from_id, to_id, ids in planned:
        graph.link(call.data, call.schema.name, from_id, target.name, to_id, ids)
    results = [_labels(call, target, a, b, ids) for a, b, ids in planned]
    return answer(results, [], started, ok=201)


@crm("read", type_param="from_type")
def batch_read(call: Call) -> Response:
    started = iso_ms(records.now())
    setup = _batch_setup(call)
    if isinstance(setup, Response):
        return setup
    target, inputs = setup
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for item in inputs:
        from_id = _id(item)
        linked = _linked(call, target, from_id)
        if linked:
            results.append({"from": {"id": from_id}, "to": linked})
            continue
        failures.append(
            errors.batch_item_error(
                "OBJECT_NOT_FOUND",
                f"No {target.singular} is associated with {call.schema.singular} {from_id}.",
                {"fromObjectId": [from_id]},
                sub_category="crm.associations.NO_ASSOCIATIONS_FOUND",
            )
        )
    return answer(results, failures, started, ok=200)


@crm("write", type_param="from_type")
def batch_archive(call: Call) -> Response:
    setup = _batch_setup(call)
    if isinstance(setup, Response):
        return setup
    target, inputs = setup
    for item in inputs:
        from_id = _id(item.get("from"))
        for to in item.get("to") or []:
            graph.unlink(call.data, call.schema.name, from_id, target.name, _id(to))
    return errors.empty(204)
