"""``SearchQuery`` as HubSpot's CRM search request (``POST /crm/v3/objects/{type}/search``).

Field names are unified names (``email``, ``close_date``, ``company_id``...) or raw HubSpot
properties, which pass through. HubSpot pages search results with a numeric offset
(``paging.next.after``, our cursor) and never past 10,000 results; asking beyond that cap is
a ``validation_failed`` here rather than HubSpot's bare 400.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, Final

from core.errors import ValidationFailed
from hubspot.crm.objects import Filter, FilterGroup, PublicObjectSearchRequest

from ..unified import SearchFilter, SearchQuery, WritableType
from .mapping import property_value, search_property

OPERATORS: Final[dict[str, str]] = {
    "eq": "EQ",
    "neq": "NEQ",
    "lt": "LT",
    "lte": "LTE",
    "gt": "GT",
    "gte": "GTE",
    "contains": "CONTAINS_TOKEN",
    "in": "IN",
    "has_property": "HAS_PROPERTY",
    "not_has_property": "NOT_HAS_PROPERTY",
}
MAX_FILTERS_PER_GROUP: Final = 6  # SearchQuery's documented contract


def filter_value(value: Any) -> str:
    """A filter value as HubSpot compares it: dates and datetimes as epoch milliseconds."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return str(int(moment.timestamp() * 1000))
    if isinstance(value, date):
        return str(int(datetime.combine(value, time(), tzinfo=UTC).timestamp() * 1000))
    return property_value(value)


def _filter(object_type: WritableType, where: str, spec: SearchFilter) -> dict[str, Any]:
    out: dict[str, Any] = {
        "propertyName": search_property(object_type, spec.field),
        "operator": OPERATORS[spec.operator],
    }
    if spec.operator in ("has_property", "not_has_property"):
        return out
    if spec.operator == "in":
        if not isinstance(spec.value, list | tuple) or not spec.value:
            raise _invalid(where, "'in' takes a non-empty list of values")
        out["values"] = [filter_value(v) for v in spec.value]
        return out
    if spec.value is None or isinstance(spec.value, list | tuple | dict):
        raise _invalid(where, f"'{spec.operator}' takes one value")
    out["value"] = filter_value(spec.value)
    return out


def _invalid(where: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid search: {where}: {message}.", details={"fields": {where: message}}
    )


def search_offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise _invalid("cursor", "not a cursor this search returned")
    return int(cursor)


def search_request(
    object_type: WritableType,
    query: SearchQuery,
    *,
    properties: list[str],
    page_size: int,
    result_cap: int | None,
) -> dict[str, Any]:
    """HubSpot's search body (JSON names) for ``query``; raises ``ValidationFailed``."""
    offset = search_offset(query.cursor)
    limit = min(query.limit, page_size)
    if result_cap is not None:
        if offset >= result_cap:
            raise ValidationFailed(
                f"HubSpot search pages through at most {result_cap:,} results and this cursor "
                f"asks for result {offset + 1:,}. Narrow the filters (e.g. on updated_at) "
                "and search again.",
                details={"fields": {"cursor": f"beyond HubSpot's {result_cap:,}-result cap"}},
            )
        limit = min(limit, result_cap - offset)
    groups: list[dict[str, Any]] = []
    for g, group in enumerate(query.filter_groups):
        if len(group) > MAX_FILTERS_PER_GROUP:
            raise _invalid(f"filter_groups[{g}]", f"at most {MAX_FILTERS_PER_GROUP} filters")
        if group:
            filters = [
                _filter(object_type, f"filter_groups[{g}][{i}]", f) for i, f in enumerate(group)
            ]
            groups.append({"filters": filters})
    body: dict[str, Any] = {
        "filterGroups": groups,
        "properties": properties,
        "limit": limit,
    }
    if query.query:
        body["query"] = query.query
    if query.sort:
        body["sorts"] = [
            {
                "propertyName": search_property(object_type, s.field),
                "direction": "ASCENDING" if s.direction == "asc" else "DESCENDING",
            }
            for s in query.sort
        ]
    if query.cursor:
        body["after"] = query.cursor
    return body


def to_sdk(body: dict[str, Any]) -> Any:
    """The SDK's ``PublicObjectSearchRequest`` for a body from ``search_request``."""
    groups = [
        FilterGroup(
            filters=[
                Filter(
                    property_name=f["propertyName"],
                    operator=f["operator"],
                    value=f.get("value"),
                    values=f.get("values"),
                )
                for f in group["filters"]
            ]
        )
        for group in body["filterGroups"]
    ]
    return PublicObjectSearchRequest(
        filter_groups=groups,
        properties=body["properties"],
        limit=body["limit"],
        after=body.get("after"),
        query=body.get("query"),
        # The SDK types ``sorts`` as strings; HubSpot documents objects and the SDK
        # serialises whatever list it holds.
        sorts=body.get("sorts", []),
    )
