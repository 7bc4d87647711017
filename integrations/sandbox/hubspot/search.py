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
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from . import errors, graph, records
from .crm import parse_limit
from .guard import Call, crm
from .schema import Comparable, ObjectSchema, Prop, comparable, resolve_type
from .state import PortalData, Record

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


def _order(a: Comparable, b: Comparable) -> int:
    if isinstance(a, str) != isinstance(b, str):  # a number against text: compare as text
        a, b = str(a), str(b)
    return (a > b) - (a < b)  # type: ignore[operator]


def _key(record: Record, prop: Prop) -> Comparable | None:
    """The record's value of ``prop`` in comparable form (cached on the record until a write)."""
    keys = record.keys
    name = prop.name
    if name not in keys:
        stored = record.properties.get(name)
        keys[name] = None if stored is None else comparable(prop, stored)
    found: Comparable | None = keys[name]
    return found


Predicate = Callable[[Record], bool]
TESTS: dict[str, Callable[[int], bool]] = {
    "EQ": lambda order: order == 0,
    "NEQ": lambda order: order != 0,
    "LT": lambda order: order < 0,
    "LTE": lambda order: order <= 0,
    "GT": lambda order: order > 0,
    "GTE": lambda order: order >= 0,
}


def _compile(data: PortalData, schema: ObjectSchema, item: dict[str, Any]) -> Predicate:
    """One checked filter as a test of a record (its values converted once, not per record)."""
    name, operator = str(item["propertyName"]), str(item["operator"])
    if name.startswith("associations."):
        return _association_filter(data, schema, name, operator, item)
    prop = schema.props[name]
    unset = operator in MATCH_WHEN_UNSET
    if operator in NEEDS_NOTHING:
        return lambda record: (record.properties.get(name) is None) == unset
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        wanted = str(item.get("value", ""))
        hit_means = operator == "CONTAINS_TOKEN"

        def tokens(record: Record) -> bool:
            stored = record.properties.get(name)
            if stored is None:
                return unset
            return _contains_token(stored, wanted) == hit_means

        return tokens
    if operator in NEEDS_VALUES:
        choices = [comparable(prop, value) for value in item["values"]]
        hit_means = operator == "IN"

        def among(record: Record) -> bool:
            mine = _key(record, prop)
            if mine is None:
                return unset
            return any(_order(mine, choice) == 0 for choice in choices) == hit_means

        return among
    low = comparable(prop, item.get("value"))
    if operator == "BETWEEN":
        high = comparable(prop, item.get("highValue"))

        def between(record: Record) -> bool:
            mine = _key(record, prop)
            return mine is not None and _order(mine, low) >= 0 and _order(mine, high) <= 0

        return between
    test = TESTS[operator]

    def compare(record: Record) -> bool:
        mine = _key(record, prop)
        if mine is None:
            return unset
        return test(_order(mine, low))

    return compare


def _association_filter(
    data: PortalData, schema: ObjectSchema, name: str, operator: str, item: dict[str, Any]
) -> Predicate:
    target = resolve_type(name.split(".", 1)[1])
    if target is None:  # excluded by _check_filter
        return lambda record: False
    raw = item.get("values") if operator in NEEDS_VALUES else [item.get("value")]
    wanted = {str(value) for value in raw or []}
    hit_means = operator in ("EQ", "IN")

    def linked(record: Record) -> bool:
        links = graph.associated(data, schema.name, record.id, target.name)
        return bool(wanted & set(links)) == hit_means

    return linked


def _query_hit(schema: ObjectSchema, record: Record, query: str) -> bool:
    needle = query.strip().lower()
    return not needle or any(
        needle in (record.properties.get(name) or "").lower() for name in schema.searchable
    )


Sort = tuple[str, bool]  # (property, descending)


def _sort_rule(schema: ObjectSchema, sorts: Any) -> Sort | Response | None:
    """The one sort a search takes (the first given), or None."""
    if not sorts:
        return None
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
    return name, descending


def _sorted(schema: ObjectSchema, found: list[Record], sort: Sort | None) -> list[Record]:
    """``found`` (in id order) sorted by ``sort``; ties stay in id order (in both directions),
    records without the property go last."""
    if sort is None:
        return found
    name, descending = sort
    prop = schema.props[name]
    present = [r for r in found if r.properties.get(name) is not None]
    unset = [r for r in found if r.properties.get(name) is None]
    if prop.kind in ("number", "datetime"):

        def key(record: Record) -> tuple[int, Any]:
            value = _key(record, prop)
            if isinstance(value, Decimal | int):
                return (0, value)
            return (1, record.properties[name].lower())

    else:

        def key(record: Record) -> tuple[int, Any]:
            return (1, record.properties[name].lower())

    present.sort(key=key, reverse=descending)  # stable, also reversed: ties keep id order
    return present + unset


RANGE_OPERATORS = frozenset({"EQ", "GT", "GTE", "LT", "LTE", "BETWEEN"})


def _window(
    schema: ObjectSchema, group: list[dict[str, Any]]
) -> tuple[int | None, int | None, bool]:
    """The modification-time window (inclusive epoch ms; None: open) a filter group's range
    filters on the modification date ask for, and whether those are all the group holds."""
    low: int | None = None
    high: int | None = None
    only_range = True
    for item in group:
        name, operator = str(item["propertyName"]), str(item["operator"])
        prop = schema.props.get(name)
        if prop is None or name not in schema.modified_props or operator not in RANGE_OPERATORS:
            only_range = False
            continue
        value = comparable(prop, item.get("value"))
        top = comparable(prop, item.get("highValue")) if operator == "BETWEEN" else value
        if not isinstance(value, int) or not isinstance(top, int):
            only_range = False  # not a date: left to the filter itself
            continue
        if operator in ("GT", "GTE", "EQ", "BETWEEN"):
            bound = value + 1 if operator == "GT" else value
            low = bound if low is None else max(low, bound)
        if operator in ("LT", "LTE", "EQ", "BETWEEN"):
            bound = top - 1 if operator == "LT" else top
            high = bound if high is None else min(high, bound)
    return low, high, only_range


def _found(
    data: PortalData,
    schema: ObjectSchema,
    groups: list[list[dict[str, Any]]],
    query: str,
    sort: Sort | None,
    offset: int,
    limit: int,
) -> tuple[int, list[Record]]:
    """The number of matches and the page of them from ``offset``.

    Searches on (or sorted by) the modification date read the table's modification log: a
    window is two bisections, and when its range is all a search asks, the page is a slice. The
    rest scan the table in id order.
    """
    table = data.table(schema.name)
    compiled = [[_compile(data, schema, item) for item in group] for group in groups]

    def matches(record: Record) -> bool:
        return (not query or _query_hit(schema, record, query)) and (
            not compiled or any(all(test(record) for test in group) for group in compiled)
        )

    by_modified = sort is not None and sort[0] in schema.modified_props
    low, high, only_range = (None, None, not groups)
    if len(groups) == 1:
        low, high, only_range = _window(schema, groups[0])
    if not by_modified and low is None and high is None:
        everything = [r for r in table.values() if not r.archived and matches(r)]
        ordered = _sorted(schema, everything, sort)
        return len(ordered), ordered[offset : offset + limit]
    log = data.log(schema.name)
    start, end = log.span(low, high)
    if by_modified and only_range and not query:
        descending = bool(sort and sort[1])
        total = end - start
        if descending:
            ids = log.ids[max(end - offset - limit, start) : max(end - offset, start)][::-1]
        else:
            ids = log.ids[start + offset : min(start + offset + limit, end)]
        return total, [table[record_id] for record_id in ids]
    window = [table[record_id] for record_id in log.ids[start:end]]
    found = [r for r in window if matches(r)]
    if by_modified:
        ordered = found[::-1] if sort and sort[1] else found
    else:
        found.sort(key=lambda r: int(r.id))
        ordered = _sorted(schema, found, sort)
    return len(ordered), ordered[offset : offset + limit]


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
    sort = _sort_rule(call.schema, body.get("sorts"))
    if isinstance(sort, Response):
        return sort
    query = str(body.get("query") or "")
    total, page = _found(
        call.data, call.schema, groups, query, sort, offset, min(limit, RESULT_CAP - offset)
    )
    wanted = body.get("properties") if isinstance(body.get("properties"), list) else None
    results = [
        records.shape(call.schema, r, records.read_properties(call.schema, r, wanted)) for r in page
    ]
    answer: dict[str, Any] = {"total": total, "results": results}
    if offset + len(page) < total:
        answer["paging"] = {"next": {"after": str(offset + len(page))}}
    return errors.respond(answer)
