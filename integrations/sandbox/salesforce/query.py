"""``GET /query?q=``, ``GET /queryAll?q=`` and their next pages, ``GET /query/{locator}``.

Answers are ``{"totalSize", "done", "records": [{"attributes": {"type", "url"}, ...}]}`` plus
``nextRecordsUrl`` (``/services/data/vXX.X/query/01g...-2000``) while rows remain. A batch holds
2,000 rows unless ``Sforce-Query-Options: batchSize=N`` asks for another size (200 to 2,000).
``query`` leaves deleted records out; ``queryAll`` includes them (``IsDeleted`` true) while they
are in the recycle bin (15 days, or until ``POST /_sandbox/salesforce/recycle-bin/empty``). The rows are
fixed when the query runs; the last 100 locators are kept; one that is unknown, past the end or
of another org answers 400 ``INVALID_QUERY_LOCATOR``.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from starlette.responses import Response

from . import errors, soql
from .guard import Call, rest
from .records import url
from .schema import now, to_ms
from .state import Cursor, Record

BATCH_DEFAULT, BATCH_MIN, BATCH_MAX = 2000, 200, 2000
RECYCLE_BIN_MS = 15 * 86_400_000  # deleted records stay in the recycle bin for 15 days
MAX_CURSORS = 100  # open query locators kept (the oldest goes first)
_BATCH = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_LOCATOR = re.compile(r"^(01g[A-Za-z0-9]{15})-(\d+)$")


def batch_size(call: Call) -> int:
    found = _BATCH.search(call.request.headers.get("sforce-query-options", ""))
    if found is None:
        return BATCH_DEFAULT
    return min(max(int(found.group(1)), BATCH_MIN), BATCH_MAX)


def _page(call: Call, endpoint: str, cursor: Cursor, locator: str, offset: int) -> Response:
    rows = cursor.rows[offset : offset + cursor.batch]
    done = offset + len(rows) >= len(cursor.rows)
    body: dict[str, Any] = {"totalSize": len(cursor.rows), "done": done}
    if not done:
        body["nextRecordsUrl"] = (
            f"/services/data/v{call.version}/{endpoint}/{locator}-{offset + len(rows)}"
        )
    body["records"] = rows
    return errors.respond(body)


def run(call: Call, *, include_deleted: bool) -> Response:
    text = call.request.query_params.get("q")
    if text is None or not text.strip():
        return errors.error(400, "MALFORMED_QUERY", "A query string has to be specified")
    try:
        query = soql.parse(text)
    except soql.SoqlError as exc:
        return errors.error(400, exc.code, exc.message)
    found = _select(call, query, include_deleted=include_deleted)
    if query.fields is None:  # SELECT COUNT()
        return errors.respond({"totalSize": len(found), "done": True, "records": []})
    sobject = query.sobject.name
    rows = [
        {"attributes": {"type": sobject, "url": url(call.version, sobject, values["Id"])}}
        | {f.name: values.get(f.name) for f in query.fields}
        for values in found
    ]
    endpoint = "queryAll" if include_deleted else "query"
    cursor = Cursor(call.data.org.key, rows, batch_size(call), endpoint)
    locator = "01g" + "".join(
        secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(15)
    )
    if len(rows) > cursor.batch:
        cursors = call.salesforce.cursors
        while len(cursors) >= MAX_CURSORS:
            del cursors[next(iter(cursors))]
        cursors[locator] = cursor
    return _page(call, endpoint, cursor, locator, 0)


def _select(call: Call, query: soql.Query, *, include_deleted: bool) -> list[dict[str, Any]]:
    """The rows ``query`` selects, ordered, after OFFSET and LIMIT.

    A query with a window on, or ordered by, the modification time reads the table's log of
    records by ``SystemModstamp``: two bisections, and when the order is the log's, it stops
    once LIMIT rows match. Others scan the table.
    """
    table = call.data.table(query.sobject.name)
    emptied = to_ms(now()) - RECYCLE_BIN_MS  # deleted before this: gone from the recycle bin

    def visible(record: Record) -> bool:
        if not record.deleted:
            return True
        return include_deleted and (record.deleted_ms or 0) > emptied

    low, high = soql.stamp_bounds(query.where)
    newest_first = soql.stamp_order(query)
    log = call.data.logs.get(query.sobject.name)
    if log is None or (low is None and high is None and newest_first is None):
        found = [
            r.values for r in table.values() if visible(r) and soql.matches(query.where, r.values)
        ]
        found = soql.ordered(query, found)
    else:
        start, end = log.span(low, high)
        ids = log.ids[start:end]
        if newest_first:
            ids.reverse()
        wanted = None
        if newest_first is not None and query.limit is not None and query.fields is not None:
            wanted = query.offset + query.limit
        found = []
        for record_id in ids:
            record = table[record_id]
            if visible(record) and soql.matches(query.where, record.values):
                found.append(record.values)
                if wanted is not None and len(found) >= wanted:
                    break
        if newest_first is None:
            found.sort(key=lambda values: str(values["Id"]))
            found = soql.ordered(query, found)
    found = found[query.offset :]
    return found if query.limit is None else found[: query.limit]


@rest
def query(call: Call) -> Response:
    return run(call, include_deleted=False)


@rest
def query_all(call: Call) -> Response:
    return run(call, include_deleted=True)


@rest
def more(call: Call) -> Response:
    found = _LOCATOR.match(call.param("locator"))
    cursor = call.salesforce.cursors.get(found.group(1)) if found else None
    if found is None or cursor is None or cursor.org != call.data.org.key:
        return errors.error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    offset = int(found.group(2))
    if offset >= len(cursor.rows):
        return errors.error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _page(call, cursor.endpoint, cursor, found.group(1), offset)
