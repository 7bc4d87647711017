"""CRM search: ``POST /crm/v3/objects/{type}/search`` (developers.hubspot.com, CRM search).

``filterGroups`` are ORed, the filters inside one group ANDed (at most 5 groups of 6 filters, 18
in all); string values compare case-insensitively, enumerations exactly; ``query`` looks in the
object's default searchable properties; one sort; ``limit`` up to 200 (default 10); ``after`` is
an offset, and no query pages past 10,000 results (400). Archived records never match. Answer:
``{"total", "results", "paging": {"next": {"after"}}}``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from . import errors, graph, records
from .crm import parse_limit
from .guard import Call, crm
from .schema import ObjectSchema, comparable, resolve_type, sort_key
from .state import Record

SEARCH_DEFAULT, SEARCH_MAX, RESULT_CAP, BODY_MAX = 10, 200, 10_000, 3_000
OPERATORS = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}
NEEDS_NOTHING = {"HAS_PROPERTY", "NOT_HAS_PROPERTY"}
NEEDS_VALUES = {"IN", "NOT_IN"}
MATCH_WHEN_UNSET = {"NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN", "NOT_HAS_PROPERTY"}


def _check_filters(schema: ObjectSchema, groups: Any) -> list[list[dict[str, Any]]] | Response:
    if groups is None:
        return []
    if not isinstance(groups, list) or len(groups) > 5:
        return errors.validation("filterGroups must be a list of at most 5 groups")
    checked: list[list[dict[str, Any]]] = []
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list) or len(filters) > 6:
            return errors.validation("Each filter group takes a list of at most 6 filters")
        for item in filters:
            problem = _check_filter(schema, item)
            if problem is not None:
                return errors.validation(problem)
        checked.append(filters)
    if sum(len(group) for group in checked) > 18:
        return errors.validation("A search takes at most 18 filters")
    return checked


def _check_filter(schema: ObjectSchema, item: Any) -> str | None:
    if not isinstance(item, dict):
        return "Each filter must be an object"
    name, operator = str(item.get("propertyName", "")), item.get("operator")
    if operator not in OPERATORS:
        return f"Invalid filter operator: {operator}"
    if name.startswith("associations."):
        target = resolve_type(name.split(".", 1)[1])
        if target is None or (schema.name, target.name) not in graph.DEFAULT:
            return f"Invalid association filter: {name}"
    elif name not in schema.props:
        return f"Property {name!r} does not exist on {schema.name}"
    if operator in NEEDS_VALUES and not isinstance(item.get("values"), list):
        return f"Operator {operator} needs values"
    if operator == "BETWEEN" and ("value" not in item or "highValue" not in item):
        return "Operator BETWEEN needs value and highValue"
    if operator not in NEEDS_NOTHING | NEEDS_VALUES and "value" not in item:
        return f"Operator {operator} needs a value"
    return None


def _tokens(text: str) -> set[str]:
    lowered = text.lower()
    parts = set(lowered.split()) | set(re.split(r"[^a-z0-9]+", lowered))
    return {part for part in parts if part} | {lowered}


def _contains_token(stored: str, wanted: str) -> bool:
    pattern = wanted.lower().strip()
    tokens = _tokens(stored)
    if "*" in pattern or "?" in pattern:
        return any(fnmatch.fnmatchcase(token, pattern) for token in tokens)
    return pattern in tokens


def _order(a: Decimal | str, b: Decimal | str) -> int:
    if type(a) is not type(b):
        a, b = str(a), str(b)
    return (a > b) - (a < b)  # type: ignore[operator]


def _matches(call: Call, record: Record, item: dict[str, Any]) -> bool:
    name, operator = str(item["propertyName"]), str(item["operator"])
    if name.startswith("associations."):
        target = resolve_type(name.split(".", 1)[1])
        if target is None:  # excluded by _check_filter
            return False
        linked = graph.associated(call.data, call.schema.name, record.id, target.name)
        wanted = item.get("values") if operator in NEEDS_VALUES else [item.get("value")]
        hit = any(str(value) in linked for value in wanted or [])
        return hit if operator in ("EQ", "IN") else not hit
    stored = record.properties.get(name)
    if stored is None:
        return operator in MATCH_WHEN_UNSET
    if operator in NEEDS_NOTHING:
        return operator == "HAS_PROPERTY"
    prop = call.schema.props[name]
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        hit = _contains_token(stored, str(item.get("value", "")))
        return hit if operator == "CONTAINS_TOKEN" else not hit
    mine = comparable(prop, stored)
    if operator in NEEDS_VALUES:
        hit = any(_order(mine, comparable(prop, value)) == 0 for value in item["values"])
        return hit if operator == "IN" else not hit
    order = _order(mine, comparable(prop, item.get("value")))
    if operator == "BETWEEN":
        return order >= 0 and _order(mine, comparable(prop, item.get("highValue"))) <= 0
    return {
        "EQ": order == 0,
        "NEQ": order != 0,
        "LT": order < 0,
        "LTE": order <= 0,
        "GT": order > 0,
        "GTE": order >= 0,
    }[operator]


def _query_hit(schema: ObjectSchema, record: Record, query: str) -> bool:
    needle = query.strip().lower()
    return not needle or any(
        needle in (record.properties.get(name) or "").lower() for name in schema.searchable
    )


def _sorted(schema: ObjectSchema, found: list[Record], sorts: Any) -> list[Record] | Response:
    found = sorted(found, key=lambda r: int(r.id))
    if not sorts:
        return found
    if not isinstance(sorts, list):
        return errors.validation("sorts must be a list")
    rule = sorts[0]
    if isinstance(rule, str):
        name, descending = rule.lstrip("-"), rule.startswith("-")
    elif isinstance(rule, dict):
        name = str(rule.get("propertyName", ""))
        descending = str(rule.get("direction", "ASCENDING")).upper() == "DESCENDING"
    else:
        return errors.validation("Each sort must be an object")
    if name not in schema.props:
        return errors.validation(f"Property {name!r} does not exist on {schema.name}")
    present = [r for r in found if r.properties.get(name) is not None]
    unset = [r for r in found if r.properties.get(name) is None]
    present.sort(key=lambda r: sort_key(schema, name, r.properties[name]), reverse=descending)
    return present + unset


@crm("read", search=True)
def search_objects(call: Call) -> Response:
    body = call.body
    if not isinstance(body, dict):
        return errors.validation("Invalid input: the search request must be a JSON object")
    if len(json.dumps(body)) > BODY_MAX:
        return errors.validation(f"The search request exceeds {BODY_MAX} characters")
    groups = _check_filters(call.schema, body.get("filterGroups"))
    if isinstance(groups, Response):
        return groups
    limit = parse_limit(
        None if body.get("limit") is None else str(body["limit"]), SEARCH_DEFAULT, SEARCH_MAX
    )
    if isinstance(limit, Response):
        return limit
    after_raw = str(body.get("after") or "0")
    if not after_raw.isdigit():
        return errors.validation(f"Invalid after: {after_raw}; it must be an integer")
    offset = int(after_raw)
    if offset >= RESULT_CAP:
        return errors.validation(
            f"The search endpoints cannot page beyond {RESULT_CAP} results "
            f"(after={offset}); narrow the query with filters instead."
        )
    query = str(body.get("query") or "")
    candidates = [
        r
        for r in call.data.table(call.schema.name).values()
        if not r.archived
        and _query_hit(call.schema, r, query)
        and (not groups or any(all(_matches(call, r, f) for f in group) for group in groups))
    ]
    ordered = _sorted(call.schema, candidates, body.get("sorts"))
    if isinstance(ordered, Response):
        return ordered
    page = ordered[offset : min(offset + limit, RESULT_CAP)]
    wanted = body.get("properties") if isinstance(body.get("properties"), list) else None
    results = [
        records.shape(call.schema, r, records.read_properties(call.schema, r, wanted)) for r in page
    ]
    answer: dict[str, Any] = {"total": len(ordered), "results": results}
    if offset + len(page) < len(ordered):
        answer["paging"] = {"next": {"after": str(offset + len(page))}}
    return errors.respond(answer)
