"""The SOQL subset the sandbox runs: one object, its own fields, filters, order and limits.

::

    SELECT field[, field...] | COUNT() FROM object
      [WHERE condition] [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST][, ...]]
      [LIMIT n] [OFFSET n]

Conditions compare a field with a literal (``=``, ``!=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``,
``LIKE`` with ``%`` and ``_``, ``IN (...)``, ``NOT IN (...)``) and combine with ``AND``, ``OR``,
``NOT`` and parentheses (mixing ``AND`` and ``OR`` needs parentheses, as in SOQL). Literals:
``'strings'`` (backslash escapes), numbers, dates (``2024-01-31``), datetimes
(``2024-01-31T10:00:00Z`` or with an offset), ``TRUE``/``FALSE`` and ``NULL``. Keywords, object and
field names are case-insensitive, and so are text comparisons. Relationship paths
(``Account.Name``), aggregates other than ``COUNT()``, ``GROUP BY`` and date literals such as
``TODAY`` are not supported.

Errors are Salesforce's: ``MALFORMED_QUERY`` (syntax), ``INVALID_FIELD`` (unknown column or
relationship), ``INVALID_TYPE`` (unknown object), ``INVALID_QUERY_FILTER_OPERATOR`` (a literal of
the wrong type for its field), each with the query, a caret and ``ERROR at Row:r:Column:c``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ids
from .schema import (
    ID_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    Field,
    SObject,
    format_datetime,
    parse_date,
    parse_datetime,
    resolve,
    to_ms,
)

KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "TRUE",
        "FALSE",
        "NULL",
        "GROUP",
        "HAVING",
    }
)
OPERATORS = ("=", "!=", "<>", "<", "<=", ">", ">=")
MAX_OFFSET = 2000
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>[+-]?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
FILTER_TYPE_NAMES = {
    "boolean": "boolean",
    "currency": "double",
    "double": "double",
    "percent": "double",
    "int": "integer",
    "date": "date",
    "datetime": "dateTime",
    "id": "id",
    "reference": "id",
}


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Token:
    kind: str  # string, datetime, date, number, ident, op, punct, eof
    value: str
    pos: int

    @property
    def keyword(self) -> str | None:
        upper = self.value.upper()
        return upper if self.kind == "ident" and upper in KEYWORDS else None


@dataclass
class Comparison:
    field: Field
    op: str  # one of OPERATORS, LIKE, IN, NOT IN
    value: Any  # a stored-form value, a list of them (IN), or a compiled pattern (LIKE)


@dataclass
class Junction:
    op: str  # AND, OR
    items: list[Condition]


@dataclass
class Negation:
    item: Condition


Condition = Comparison | Junction | Negation


@dataclass
class Order:
    field: Field
    descending: bool
    nulls_first: bool


@dataclass
class Query:
    sobject: SObject
    fields: list[Field] | None  # None: SELECT COUNT()
    where: Condition | None = None
    order: list[Order] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


def _locate(text: str, pos: int) -> tuple[str, int, int]:
    """The line holding ``pos``, its row and its column (both 1-based)."""
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    line = text[start : end if end >= 0 else len(text)]
    return line, text.count("\n", 0, pos) + 1, pos - start + 1


def _error(code: str, text: str, pos: int, detail: str) -> SoqlError:
    line, row, column = _locate(text, pos)
    caret = " " * (column - 1) + "^"
    return SoqlError(code, f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{column}\n{detail}")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] == "'":
                raise _error("MALFORMED_QUERY", text, pos, "unexpected token: '")
            _, row, column = _locate(text, pos)
            raise SoqlError(
                "MALFORMED_QUERY",
                f"line {row}:{column - 1} no viable alternative at character '{text[pos]}'",
            )
        kind = str(match.lastgroup)
        if kind != "ws":
            tokens.append(Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(Token("eof", "<EOF>", len(text)))
    return tokens


def _unquote(literal: str) -> str:
    """A string literal's value; ``\\%`` and ``\\_`` keep their backslash (LIKE needs it)."""
    out, chars, index = [], literal[1:-1], 0
    while index < len(chars):
        char = chars[index]
        if char == "\\" and index + 1 < len(chars):
            nxt = chars[index + 1]
            out.append("\\" + nxt if nxt in "%_" else _ESCAPES.get(nxt, nxt))
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _like(pattern: str) -> re.Pattern[str]:
    regex, index = "", 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            regex += re.escape(pattern[index + 1])
            index += 2
            continue
        regex += ".*" if char == "%" else "." if char == "_" else re.escape(char)
        index += 1
    return re.compile(regex, re.IGNORECASE | re.DOTALL)


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.sobject: SObject | None = None

    # --- tokens --------------------------------------------------------------------------------

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "eof":
            self.index += 1
        return token

    def unexpected(self, token: Token | None = None) -> SoqlError:
        token = token or self.current
        return _error("MALFORMED_QUERY", self.text, token.pos, f"unexpected token: {token.value}")

    def at_keyword(self, *words: str) -> bool:
        return self.current.keyword in words

    def expect_keyword(self, word: str) -> Token:
        if self.current.keyword != word:
            raise self.unexpected()
        return self.advance()

    def expect_punct(self, char: str) -> Token:
        if self.current.kind != "punct" or self.current.value != char:
            raise self.unexpected()
        return self.advance()

    # --- names ---------------------------------------------------------------------------------

    def resolve_field(self, token: Token) -> Field:
        assert self.sobject is not None  # noqa: S101 - fields are resolved after FROM
        if "." in token.value:
            relation = token.value.split(".", 1)[0]
            raise _error(
                "INVALID_FIELD",
                self.text,
                token.pos,
                f"Didn't understand relationship '{relation}' in field path. If you are "
                "attempting to use a custom relationship, be sure to append the '__r' after the "
                "custom relationship name. Please reference your WSDL or the describe call for "
                "the appropriate names.",
            )
        spec = self.sobject.field(token.value)
        if spec is None:
            raise _error(
                "INVALID_FIELD",
                self.text,
                token.pos,
                f"No such column '{token.value}' on entity '{self.sobject.name}'. If you are "
                "attempting to use a custom field, be sure to append the '__c' after the custom "
                "field name. Please reference your WSDL or the describe call for the appropriate "
                "names.",
            )
        return spec

    def field_token(self) -> Token:
        token = self.current
        if token.kind != "ident" or token.keyword is not None:
            raise self.unexpected()
        return self.advance()

    # --- the statement -------------------------------------------------------------------------

    def parse(self) -> Query:
        self.expect_keyword("SELECT")
        selected: list[Token] | None = []
        if self.current.kind == "ident" and self.current.value.upper() == "COUNT":
            after = self.tokens[self.index + 1]
            if after.kind == "punct" and after.value == "(":
                self.advance()
                self.advance()
                self.expect_punct(")")
                selected = None
        if selected is not None:
            selected.append(self.field_token())
            while self.current.kind == "punct" and self.current.value == ",":
                self.advance()
                selected.append(self.field_token())
        self.expect_keyword("FROM")
        name = self.current
        if name.kind != "ident" or name.keyword is not None:
            raise self.unexpected()
        self.advance()
        self.sobject = resolve(name.value)
        if self.sobject is None:
            raise _error(
                "INVALID_TYPE",
                self.text,
                name.pos,
                f"sObject type '{name.value}' is not supported. If you are attempting to use a "
                "custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        fields: list[Field] | None = None
        if selected is not None:
            fields = []
            for token in selected:
                spec = self.resolve_field(token)
                if spec in fields:
                    raise _error(
                        "MALFORMED_QUERY",
                        self.text,
                        token.pos,
                        f"duplicate field selected: {spec.name}",
                    )
                fields.append(spec)
        query = Query(self.sobject, fields)
        if self.at_keyword("WHERE"):
            self.advance()
            query.where = self.condition()
        if self.at_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            query.order.append(self.order())
            while self.current.kind == "punct" and self.current.value == ",":
                self.advance()
                query.order.append(self.order())
        if self.at_keyword("LIMIT"):
            self.advance()
            query.limit = self.integer()
        if self.at_keyword("OFFSET"):
            self.advance()
            query.offset = self.integer()
            if query.offset > MAX_OFFSET:
                raise SoqlError(
                    "NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}"
                )
        if self.current.kind != "eof":
            raise self.unexpected()
        return query

    def integer(self) -> int:
        token = self.current
        if token.kind != "number" or not token.value.lstrip("+").isdigit():
            raise self.unexpected()
        self.advance()
        return int(token.value)

    def order(self) -> Order:
        token = self.field_token()
        spec = self.resolve_field(token)
        if spec.type == "textarea":
            raise _error(
                "INVALID_FIELD",
                self.text,
                token.pos,
                f"field '{spec.name}' can not be sorted in a query call",
            )
        descending = False
        if self.at_keyword("ASC", "DESC"):
            descending = self.advance().value.upper() == "DESC"
        nulls_first = not descending
        if self.at_keyword("NULLS"):
            self.advance()
            if not self.at_keyword("FIRST", "LAST"):
                raise self.unexpected()
            nulls_first = self.advance().value.upper() == "FIRST"
        return Order(spec, descending, nulls_first)

    # --- conditions ----------------------------------------------------------------------------

    def condition(self) -> Condition:
        first = self.unary()
        joiner: str | None = None
        items = [first]
        while self.at_keyword("AND", "OR"):
            word = str(self.current.keyword)
            if joiner is not None and word != joiner:
                raise self.unexpected()  # SOQL needs parentheses to mix AND and OR
            joiner = word
            self.advance()
            items.append(self.unary())
        return first if joiner is None else Junction(joiner, items)

    def unary(self) -> Condition:
        if self.at_keyword("NOT"):
            self.advance()
            return Negation(self.unary())
        if self.current.kind == "punct" and self.current.value == "(":
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        token = self.field_token()
        spec = self.resolve_field(token)
        if spec.type == "textarea":
            raise _error(
                "INVALID_FIELD",
                self.text,
                token.pos,
                f"field '{spec.name}' can not be filtered in a query call",
            )
        if self.current.kind == "op":
            op = self.advance().value
            return Comparison(spec, "!=" if op == "<>" else op, self.literal(spec))
        if self.at_keyword("LIKE"):
            self.advance()
            value = self.current
            if spec.type not in TEXT_TYPES and spec.type not in ID_TYPES:
                raise _error(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    self.text,
                    token.pos,
                    f"invalid operator on field: {spec.name}",
                )
            if value.kind != "string":
                raise self.type_error(spec, value)
            self.advance()
            return Comparison(spec, "LIKE", _like(_unquote(value.value)))
        negated = False
        if self.at_keyword("NOT"):
            self.advance()
            negated = True
        if not self.at_keyword("IN"):
            raise self.unexpected()
        self.advance()
        self.expect_punct("(")
        values = [self.literal(spec)]
        while self.current.kind == "punct" and self.current.value == ",":
            self.advance()
            values.append(self.literal(spec))
        self.expect_punct(")")
        return Comparison(spec, "NOT IN" if negated else "IN", values)

    def type_error(self, spec: Field, token: Token) -> SoqlError:
        if spec.type in TEXT_TYPES:
            detail = (
                f"value of filter criterion for field '{spec.name}' must be of type string and "
                "should be enclosed in quotes"
            )
        else:
            kind = FILTER_TYPE_NAMES.get(spec.type, spec.type)
            quoted = "should be enclosed" if spec.type in ID_TYPES else "should not be enclosed"
            detail = (
                f"value of filter criterion for field '{spec.name}' must be of type {kind} and "
                f"{quoted} in quotes"
            )
        return _error("INVALID_QUERY_FILTER_OPERATOR", self.text, token.pos, detail)

    def literal(self, spec: Field) -> Any:
        """The next literal, in the stored form of ``spec``'s values."""
        token = self.current
        kind = spec.type
        keyword = token.keyword
        if keyword == "NULL":
            self.advance()
            return None
        if token.kind in ("eof", "punct", "op") or (token.kind == "ident" and keyword is None):
            raise self.unexpected()
        value: Any
        if kind in TEXT_TYPES and token.kind == "string":
            value = _unquote(token.value).replace("\\%", "%").replace("\\_", "_")
        elif kind in ID_TYPES and token.kind == "string":
            text = _unquote(token.value)
            value = ids.normalize(text)
            if value is None:
                raise _error(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    self.text,
                    token.pos,
                    f"invalid ID field: {text}",
                )
        elif kind == "boolean" and keyword in ("TRUE", "FALSE"):
            value = keyword == "TRUE"
        elif kind in NUMBER_TYPES and token.kind == "number":
            value = float(token.value)
        elif kind == "date" and token.kind == "date":
            day = parse_date(token.value)
            if day is None:
                raise self.unexpected()
            value = day.isoformat()
        elif kind == "datetime" and token.kind == "datetime":
            moment = parse_datetime(token.value)
            if moment is None:
                raise self.unexpected()
            value = format_datetime(moment)
        else:
            raise self.type_error(spec, token)
        self.advance()
        return value


def parse(text: str) -> Query:
    return Parser(text).parse()


# --- evaluation ------------------------------------------------------------------------------


def _key(spec: Field, value: Any) -> Any:
    if spec.type in TEXT_TYPES:
        return str(value).casefold()
    if spec.type in NUMBER_TYPES:
        return float(value)
    if spec.type == "boolean":
        return int(bool(value))
    return str(value)


def _holds(item: Comparison, values: dict[str, Any]) -> bool:
    spec, op, wanted = item.field, item.op, item.value
    stored = values.get(spec.name)
    if op == "LIKE":
        return stored is not None and bool(wanted.fullmatch(str(stored)))
    if op in ("IN", "NOT IN"):
        hit = (
            stored is not None
            and any(w is not None and _key(spec, stored) == _key(spec, w) for w in wanted)
        ) or (stored is None and None in wanted)
        return hit if op == "IN" else not hit
    if wanted is None or stored is None:
        same = wanted is None and stored is None
        if op == "=":
            return same
        if op == "!=":
            return not same
        return False
    mine, theirs = _key(spec, stored), _key(spec, wanted)
    return bool(
        {
            "=": mine == theirs,
            "!=": mine != theirs,
            "<": mine < theirs,
            "<=": mine <= theirs,
            ">": mine > theirs,
            ">=": mine >= theirs,
        }[op]
    )


def matches(condition: Condition | None, values: dict[str, Any]) -> bool:
    if condition is None:
        return True
    if isinstance(condition, Comparison):
        return _holds(condition, values)
    if isinstance(condition, Negation):
        return not matches(condition.item, values)
    results = (matches(item, values) for item in condition.items)
    return all(results) if condition.op == "AND" else any(results)


def _sort_key(spec: Field) -> Callable[[dict[str, Any]], Any]:
    return lambda row: _key(spec, row[spec.name])


def ordered(query: Query, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows sorted by the ORDER BY clauses (stable, so earlier clauses win)."""
    result = list(rows)
    for order in reversed(query.order):
        spec = order.field
        present = [r for r in result if r.get(spec.name) is not None]
        absent = [r for r in result if r.get(spec.name) is None]
        present.sort(key=_sort_key(spec), reverse=order.descending)
        result = absent + present if order.nulls_first else present + absent
    return result


# --- windows on the modification time ---------------------------------------------------------

STAMP_FIELDS = frozenset({"SystemModstamp", "LastModifiedDate"})
Bounds = tuple[int | None, int | None]  # inclusive epoch ms; None: open


def _stamp_ms(value: Any) -> int | None:
    moment = parse_datetime(value) if isinstance(value, str) else None
    return to_ms(moment) if moment is not None else None


def stamp_bounds(condition: Condition | None) -> Bounds:
    """The modification-time window every row matching ``condition`` lies in (from its
    comparisons of ``SystemModstamp`` / ``LastModifiedDate``; both hold the same time)."""
    if condition is None or isinstance(condition, Negation):
        return None, None
    if isinstance(condition, Comparison):
        value = _stamp_ms(condition.value)
        if condition.field.name not in STAMP_FIELDS or value is None:
            return None, None
        op = condition.op
        low = value + 1 if op == ">" else value if op in (">=", "=") else None
        high = value - 1 if op == "<" else value if op in ("<=", "=") else None
        return low, high
    parts = [stamp_bounds(item) for item in condition.items]
    lows, highs = [p[0] for p in parts], [p[1] for p in parts]
    if condition.op == "AND":
        known_lows = [v for v in lows if v is not None]
        known_highs = [v for v in highs if v is not None]
        return (max(known_lows) if known_lows else None, min(known_highs) if known_highs else None)
    return (
        None if None in lows else min(v for v in lows if v is not None),
        None if None in highs else max(v for v in highs if v is not None),
    )


def stamp_order(query: Query) -> bool | None:
    """Whether the rows are wanted by modification time (True: newest first), when the first
    ORDER BY is one; times are unique within an org, so later clauses never matter."""
    if not query.order or query.order[0].field.name not in STAMP_FIELDS:
        return None
    return query.order[0].descending
