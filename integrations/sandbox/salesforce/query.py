"""``GET /query?q=``, ``GET /queryAll?q=`` and their next pages, ``GET /query/{locator}``.

Answers are ``{"totalSize", "done", "records": [{"attributes": {"type", "url"}, ...}]}`` plus
``nextRecordsUrl`` (``/services/data/vXX.X/query/01g...-2000``) while rows remain. A batch holds
2,000 rows unless ``Sforce-Query-Options: batchSize=N`` asks for another size (200 to 2,000).
``query`` leaves deleted records out; ``queryAll`` includes them (``IsDeleted`` true). The rows are
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
from .state import Cursor

BATCH_DEFAULT, BATCH_MIN, BATCH_MAX = 2000, 200, 2000
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
    table = call.data.table(query.sobject.name)
    found = [
        r.values
        for r in table.values()
        if (include_deleted or not r.deleted) and soql.matches(query.where, r.values)
    ]
    found = soql.ordered(query, found)
    found = found[query.offset :]
    if query.limit is not None:
        found = found[: query.limit]
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
