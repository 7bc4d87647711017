"""Pagination for list endpoints: keyset cursors (stable under inserts) or plain offsets.

Lists are ordered newest first by ``(created_at, id)``. A cursor is an opaque token holding the
last row's key; pass it back as ``cursor`` for the next page. ``offset`` is there for clients
that want page numbers, and also reports ``total``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import orjson
from django.core.exceptions import ValidationError
from django.db.models import Model, Q, QuerySet
from ninja import Schema
from pydantic import AfterValidator, Field, model_validator

from core.envelope import PaginationMeta
from core.errors import ValidationFailed

# The largest value of a PostgreSQL bigint (an OFFSET, an integer primary key).
BIGINT_MAX = 2**63 - 1

M = TypeVar("M", bound=Model)
R = TypeVar("R")


class PageParams(Schema):
    limit: int = Field(50, ge=1, le=200, description="Rows per page (1-200).")
    cursor: str | None = Field(
        None, description="`meta.pagination.next_cursor` of the previous page."
    )
    offset: int | None = Field(
        None, ge=0, le=BIGINT_MAX, description="Rows to skip; instead of `cursor`."
    )

    @model_validator(mode="after")
    def _one_way(self) -> PageParams:
        if self.cursor is not None and self.offset is not None:
            raise ValueError("pass either cursor or offset, not both")
        return self


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC (without an offset it is taken as UTC); ``ValueError`` when UTC cannot
    hold it. Filters compare in UTC: PostgreSQL takes offsets up to 15:59, ISO 8601 to 23:59."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the date-time is out of range") from None


# A query parameter's date-time, as ``as_utc`` makes it (422 when it cannot be).
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


def invalid_cursor() -> ValidationFailed:
    return ValidationFailed(
        "The cursor is not valid.", details={"fields": {"cursor": "invalid cursor"}}
    )


def encode_cursor(created_at: datetime, pk: Any) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(pk)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The time (in UTC) and the primary key a cursor holds; ``ValidationFailed`` when it is
    not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, pk = orjson.loads(raw)
        return as_utc(datetime.fromisoformat(created)), str(pk)
    except (ValueError, TypeError) as exc:
        raise invalid_cursor() from exc


def _cursor_pk(model: type[Model], raw: str) -> Any:
    """A cursor's primary key as the model's own type (a UUID, an integer in range)."""
    try:
        pk = model._meta.pk.to_python(raw)
    except ValidationError as exc:
        raise invalid_cursor() from exc
    if pk is None or (isinstance(pk, int) and not 0 <= pk <= BIGINT_MAX):
        raise invalid_cursor()
    return pk


async def paginate(queryset: QuerySet[M, R], params: PageParams) -> tuple[list[R], PaginationMeta]:
    """One page of ``queryset`` (newest first) and its ``meta.pagination``; a ``values()``
    queryset gives dicts, which must hold ``created_at`` and ``id``."""
    ordered = queryset.order_by("-created_at", "-pk")
    total: int | None = None
    rows: list[R] = []
    if params.cursor is not None:
        created_at, raw_pk = decode_cursor(params.cursor)
        pk = _cursor_pk(queryset.model, raw_pk)
        ordered = ordered.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    elif params.offset is not None:
        total = await queryset.acount()
        ordered = ordered[params.offset :]
    if params.offset is None or params.offset < (total or 0):
        # (An offset past the end is an empty page: the database is not asked, whatever its
        # size, as an OFFSET beyond a bigint would fail there.)
        rows = [row async for row in ordered[: params.limit + 1]]
    has_more = len(rows) > params.limit
    rows = rows[: params.limit]
    next_cursor = None
    if has_more and rows:
        last: Any = rows[-1]
        if isinstance(last, dict):
            next_cursor = encode_cursor(last["created_at"], last["id"])
        else:
            next_cursor = encode_cursor(last.created_at, last.pk)
    return rows, PaginationMeta(
        limit=params.limit,
        offset=params.offset,
        next_cursor=next_cursor,
        has_more=has_more,
        total=total,
    )
