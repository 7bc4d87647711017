"""Changed rows for the sync engine: ``queryAll`` ordered by ``SystemModstamp, Id``.

``SystemModstamp`` changes on every update (also system ones) and on delete, unlike
``LastModifiedDate``; ``queryAll`` also returns rows deleted into the recycle bin, with
``IsDeleted = true``, so one query per page reads upserts and deletes together. The page
boundary is a keyset condition (``SystemModstamp > t OR (SystemModstamp = t AND Id > id)``),
so a read can resume from the last row it stored, whatever happened in between.

Not covered: records hard-deleted or purged from the recycle bin (after 15 days) vanish from
``queryAll``; Salesforce's ``getDeleted`` API would report those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.result import Result

from ..base import CrmClient
from ..unified import AnyRecord, ObjectType
from .mapping import parse_datetime, sobject, to_record
from .soql import literal, quote, statement

SYNC_FIELDS = ("IsDeleted", "SystemModstamp")


@dataclass(frozen=True, slots=True)
class ChangedRows:
    records: list[AnyRecord]
    last: tuple[str, str] | None  # (SystemModstamp as returned, Id) of the last row
    latest_stamp: datetime | None
    full_page: bool  # as many rows as asked: there may be more


def _stamp(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("SystemModstamp")
    return value if isinstance(value, str) else None


async def changed_rows(
    client: CrmClient,
    object_type: ObjectType,
    *,
    after: tuple[str, str] | None,
    since: datetime | None,
    limit: int,
) -> Result[ChangedRows]:
    """One page of rows modified at or after ``since`` (all rows when None), after the
    keyset position ``after`` = (SystemModstamp, Id)."""
    from .client import SalesforceCrmClient

    if not isinstance(client, SalesforceCrmClient):
        raise TypeError("changed_rows reads through a Salesforce client")
    sf: SalesforceCrmClient = client
    found = await sf._fields(object_type)  # this module belongs to the client
    if found.error is not None:
        return Result.fail(found.error)
    fields = found.unwrap()
    select = list(fields.select)
    for name in SYNC_FIELDS:
        if name not in select and select != ["FIELDS(ALL)"]:
            select.append(name)
    rows = limit if fields.max_rows is None else min(limit, fields.max_rows)
    where: list[str] = []
    if since is not None:
        where.append(f"SystemModstamp >= {literal(since, 'datetime')}")
    if after is not None:
        stamp = literal(after[0], "datetime")
        where.append(
            f"(SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > {quote(after[1])}))"
        )
    soql = statement(
        sobject(object_type),
        select,
        where=where,
        order_by="SystemModstamp ASC, Id ASC",
        limit=rows,
    )
    answer = await sf._query(soql, include_deleted=True)
    if answer.error is not None:
        return Result.fail(answer.error)
    raw_rows = answer.unwrap().records
    records = [to_record(object_type, row) for row in raw_rows]
    last: tuple[str, str] | None = None
    latest: datetime | None = None
    if raw_rows:
        tail = raw_rows[-1]
        stamp_text = _stamp(tail)
        if stamp_text is not None:
            last = (stamp_text, str(tail["Id"]))
            latest = parse_datetime(stamp_text)
    return Result.ok(
        ChangedRows(
            records=records, last=last, latest_stamp=latest, full_page=len(raw_rows) >= rows
        )
    )
