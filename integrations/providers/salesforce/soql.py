"""SOQL for reads: field names checked, literals escaped and typed, keyset pages. No I/O.

Injection: a field name reaches SOQL only after matching ``[A-Za-z0-9_]+`` and (when the
org's field list is known) naming one of the object's fields; a value only as a literal built
here: strings quoted with every quote, backslash and control character escaped (``LIKE``
patterns also escape ``%`` and ``_``), and anything unquoted (numbers, dates, booleans, null)
parsed first, so its text is ours, never the caller's.

Pages are keyset pages, not ``nextRecordsUrl``: Salesforce's query locators serve batches of
200 to 2,000 rows (``Sforce-Query-Options: batchSize`` is a hint with a floor of 200), so
smaller pages cannot be served from them reliably. Every read orders by its sort field (if
any) then ``Id``, asks for one row more than the page, and the cursor carries the last row's
sort value and ``Id``; the next page starts strictly after that pair. Cursors stay valid while
records change and cost nothing to keep.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from core.errors import ValidationFailed

from ..unified import SearchFilter, SearchQuery, WritableType
from .mapping import KNOWN_TYPES, TEXT_FIELDS, salesforce_field, sobject

FIELD_NAME: Final = re.compile(r"[A-Za-z0-9_]+")
RECORD_ID: Final = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_ESCAPES: Final = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_LIKE_ESCAPES: Final = {"%": "\\%", "_": "\\_"}
NUMBER_TYPES: Final = frozenset({"int", "long", "double", "currency", "percent"})
MAX_FILTERS_PER_GROUP: Final = 6  # SearchQuery's documented contract
OPERATORS: Final = {"eq": "=", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}

# Field name (any case) -> (name as Salesforce spells it, describe type); None: not known.
Catalog = Mapping[str, tuple[str, str]]


def invalid(where: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Invalid search: {where}: {message}.", details={"fields": {where: message}}
    )


def is_record_id(value: str) -> bool:
    return RECORD_ID.fullmatch(value) is not None


# --- literals --------------------------------------------------------------------------


def quote(text: str, *, like: bool = False) -> str:
    """``text`` as a quoted SOQL string literal (``like``: ``%``/``_`` match themselves)."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif like and char in _LIKE_ESCAPES:
            out.append(_LIKE_ESCAPES[char])
        elif ord(char) < 32 or char == "\x7f":
            raise ValueError("control characters cannot appear in a SOQL string")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def _number(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("a number, not a boolean")
    try:
        number = Decimal(str(value).strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not number.is_finite():
        raise ValueError("numbers must be finite")
    return format(number, "f")


def _date_literal(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        return date.fromisoformat(value.strip()).isoformat()
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")


def _datetime_literal(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 datetime") from exc
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=UTC)
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a datetime")
    moment = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    millis = f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + millis + "Z"


def _boolean(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    raise ValueError(f"{value!r} is not a boolean")


def literal(value: Any, field_type: str | None) -> str:
    """``value`` as a SOQL literal for a field of ``field_type`` (describe's type name);
    ``None`` for a field of unknown type, where the value's own type decides. Raises
    ``ValueError`` when the value does not fit."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple | dict | set):
        raise ValueError("one value, not a collection")
    if field_type == "boolean" or (field_type is None and isinstance(value, bool)):
        return _boolean(value)
    if field_type == "date" or (field_type is None and type(value) is date):
        return _date_literal(value)
    if field_type == "datetime" or (field_type is None and isinstance(value, datetime)):
        return _datetime_literal(value)
    if field_type in NUMBER_TYPES or (
        field_type is None and isinstance(value, int | float | Decimal)
    ):
        return _number(value)
    if isinstance(value, bool):
        return quote("true" if value else "false")
    if isinstance(value, date):
        return quote(value.isoformat())
    return quote(value if isinstance(value, str) else _number(value))


# --- field names -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str | None


def resolve_field(
    object_type: WritableType, name: str, catalog: Catalog | None, *, where: str
) -> Field:
    """A unified or Salesforce field name, checked; raises ``ValidationFailed``."""
    mapped = salesforce_field(object_type, name)
    if FIELD_NAME.fullmatch(mapped) is None:
        raise invalid(where, f"{name!r} is not a field name")
    if catalog is not None:
        found = catalog.get(mapped.lower())
        if found is None:
            raise ValidationFailed(
                f"Salesforce {sobject(object_type)} has no field {mapped!r}.",
                details={"fields": {mapped: f"no such field on {sobject(object_type)}"}},
            )
        return Field(found[0], found[1])
    return Field(mapped, KNOWN_TYPES.get(mapped))


# --- filters ---------------------------------------------------------------------------


def condition(field: Field, spec: SearchFilter, where: str) -> str:
    try:
        if spec.operator == "has_property":
            return f"{field.name} != null"
        if spec.operator == "not_has_property":
            return f"{field.name} = null"
        if spec.operator == "in":
            if not isinstance(spec.value, list | tuple) or not spec.value:
                raise ValueError("'in' takes a non-empty list of values")
            values = ", ".join(literal(v, field.type) for v in spec.value)
            return f"{field.name} IN ({values})"
        if spec.operator == "contains":
            if spec.value is None or isinstance(spec.value, list | tuple | dict | bool):
                raise ValueError("'contains' takes one text value")
            return f"{field.name} LIKE {_like(str(spec.value))}"
        return f"{field.name} {OPERATORS[spec.operator]} {literal(spec.value, field.type)}"
    except ValueError as exc:
        raise invalid(where, str(exc)) from exc


def _like(text: str) -> str:
    return "'%" + quote(text, like=True)[1:-1] + "%'"


def where_clause(object_type: WritableType, query: SearchQuery, catalog: Catalog | None) -> str:
    """``SearchQuery``'s filters (groups ORed, filters ANDed) and free text, as SOQL."""
    parts: list[str] = []
    if query.query and query.query.strip():
        try:
            pattern = _like(query.query.strip())
        except ValueError as exc:
            raise invalid("query", str(exc)) from exc
        parts.append(
            "(" + " OR ".join(f"{f} LIKE {pattern}" for f in TEXT_FIELDS[object_type]) + ")"
        )
    groups: list[str] = []
    for g, group in enumerate(query.filter_groups):
        if len(group) > MAX_FILTERS_PER_GROUP:
            raise invalid(f"filter_groups[{g}]", f"at most {MAX_FILTERS_PER_GROUP} filters")
        conditions = []
        for i, spec in enumerate(group):
            where = f"filter_groups[{g}][{i}]"
            field = resolve_field(object_type, spec.field, catalog, where=where)
            conditions.append(condition(field, spec, where))
        if conditions:
            groups.append("(" + " AND ".join(conditions) + ")")
    if groups:
        parts.append("(" + " OR ".join(groups) + ")")
    return " AND ".join(parts)


# --- keyset pages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sort:
    field: Field
    descending: bool

    def order_by(self) -> str:
        if self.field.name == "Id":
            return "Id DESC" if self.descending else "Id ASC"
        # Explicit null placement so the keyset conditions below match the order.
        direction = "DESC NULLS LAST" if self.descending else "ASC NULLS FIRST"
        return f"{self.field.name} {direction}, Id ASC"

    def after(self, value: Any, record_id: str) -> str:
        """Rows strictly after (``value``, ``record_id``) in ``order_by``'s order."""
        if self.field.name == "Id":
            return f"Id {'<' if self.descending else '>'} {quote(record_id)}"
        name, same = self.field.name, f"Id > {quote(record_id)}"
        if value is None:
            tail = f"({name} = null AND {same})"
            return tail if self.descending else f"({tail} OR {name} != null)"
        lit = literal(value, self.field.type)
        beyond = f"{name} < {lit}" if self.descending else f"{name} > {lit}"
        nulls = f" OR {name} = null" if self.descending else ""
        return f"({beyond} OR ({name} = {lit} AND {same}){nulls})"


@dataclass(frozen=True, slots=True)
class Cursor:
    value: Any
    record_id: str


def fingerprint(object_type: WritableType, query: SearchQuery) -> str:
    shape = query.model_dump(mode="json", exclude={"cursor", "limit"})
    raw = json.dumps([object_type, shape], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_cursor(value: Any, record_id: str, print_: str) -> str:
    raw = json.dumps({"v": value, "id": record_id, "q": print_}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, print_: str) -> Cursor:
    """A cursor ``encode_cursor`` made for the same search; ``ValidationFailed`` otherwise."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        value, record_id = raw["v"], raw["id"]
        if raw["q"] != print_:
            raise ValueError("made for another search")
    except (ValueError, TypeError, KeyError) as exc:
        raise invalid("cursor", "not a cursor this search returned") from exc
    scalar = value is None or isinstance(value, str | int | float | bool)
    if not scalar or not isinstance(record_id, str) or not is_record_id(record_id):
        raise invalid("cursor", "not a cursor this search returned")
    return Cursor(value, record_id)


def statement(
    sobject_name: str,
    fields: Sequence[str],
    *,
    where: Sequence[str] = (),
    order_by: str = "Id ASC",
    limit: int,
) -> str:
    """``SELECT fields FROM <sObject> [WHERE a AND b] ORDER BY ... LIMIT n``."""
    for name in fields:
        if FIELD_NAME.fullmatch(name) is None and name != "FIELDS(ALL)":
            raise ValueError(f"not a field name: {name!r}")
    if FIELD_NAME.fullmatch(sobject_name) is None:
        raise ValueError(f"not an sObject name: {sobject_name!r}")
    # Names are checked above and every condition is built in this module: S608 is handled.
    soql = f"SELECT {', '.join(fields)} FROM {sobject_name}"  # noqa: S608
    conditions = [w for w in where if w]
    if conditions:
        soql += " WHERE " + " AND ".join(conditions)
    return f"{soql} ORDER BY {order_by} LIMIT {int(limit)}"


def search_statement(
    object_type: WritableType,
    query: SearchQuery,
    *,
    fields: Sequence[str],
    catalog: Catalog | None,
    page_size: int,
) -> tuple[str, Sort | None, str]:
    """The SOQL for one page of ``query`` (one row more than the page, to see if there is a
    next one), its sort, and the fingerprint cursors carry. Raises ``ValidationFailed``."""
    print_ = fingerprint(object_type, query)
    sort = None
    if query.sort:
        spec = query.sort[0]
        field = resolve_field(object_type, spec.field, catalog, where="sort[0].field")
        sort = Sort(field, spec.direction == "desc")
    where = [where_clause(object_type, query, catalog)]
    if query.cursor:
        cursor = decode_cursor(query.cursor, print_)
        try:
            where.append(
                sort.after(cursor.value, cursor.record_id)
                if sort
                else f"Id > {quote(cursor.record_id)}"
            )
        except ValueError as exc:
            raise invalid("cursor", str(exc)) from exc
    limit = min(query.limit, page_size)
    order_by = sort.order_by() if sort else "Id ASC"
    soql = statement(sobject(object_type), fields, where=where, order_by=order_by, limit=limit + 1)
    return soql, sort, print_


def next_cursor(
    rows: Sequence[Mapping[str, Any]], limit: int, sort: Sort | None, print_: str, *, done: bool
) -> tuple[list[Mapping[str, Any]], str | None]:
    """One page of ``rows`` (a query for up to ``limit + 1`` rows) and the cursor after it,
    when there is more: a row beyond the page, or an answer Salesforce cut short (``done``
    false: it may serve fewer rows than asked when rows are wide)."""
    page = list(rows[:limit])
    if not page or (len(rows) <= limit and done):
        return page, None
    value = None if sort is None else _sort_value(page[-1], sort.field.name)
    return page, encode_cursor(value, str(page[-1]["Id"]), print_)


def _sort_value(row: Mapping[str, Any], name: str) -> Any:
    for key, value in row.items():
        if key.lower() == name.lower():
            return value
    return None
