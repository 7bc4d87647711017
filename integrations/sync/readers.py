"""How each provider's changes are read, one page at a time, from a resumable cursor.

A reader turns ``(cursor, since)`` into a ``ChangePage``: records to upsert, records deleted,
the cursor of the next page (``None`` when the read is complete) and the latest modification
time it saw. Cursors are small JSON objects saved with each page, so a killed worker resumes
at the page it was on.

- **HubSpot.** The full read pages ``GET /crm/v3/objects/{type}`` (100 per call, no result cap),
  then the archived records (``archived=true``), which become deletes. An incremental read
  searches on the modification property (``lastmodifieddate`` for contacts,
  ``hs_lastmodifieddate`` for other objects) in a time window ``[lo, hi)`` sorted ascending;
  whenever a window holds more than the 10,000 results search can page through, the window is
  halved until it fits, then the next window starts where it ended. Archived records are listed
  again at the end, since search never returns them.
- **Salesforce.** SOQL through ``queryAll`` (which includes deleted rows still in the recycle
  bin, ``IsDeleted = true``) ordered by ``SystemModstamp, Id`` with a keyset condition, so each
  page is one query and no query locator has to survive a crash. The full read is the same
  query from the beginning of time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from core.errors import ProviderError
from core.result import Result

from ..providers.base import CrmClient
from ..providers.unified import (
    AnyRecord,
    ObjectType,
    SearchFilter,
    SearchQuery,
    SearchSort,
)
from .mirror import Deleted

Cursor = dict[str, Any]


@dataclass(slots=True)
class ChangePage:
    records: list[AnyRecord] = field(default_factory=list)
    deleted: list[Deleted] = field(default_factory=list)
    cursor: Cursor | None = None  # where the next page starts; None: the read is complete
    latest: datetime | None = None  # the newest modification time on this page


class Reader(Protocol):
    async def read(
        self,
        client: CrmClient,
        object_type: ObjectType,
        *,
        cursor: Cursor | None,
        since: datetime | None,
        until: datetime,
    ) -> Result[ChangePage]:
        """One page. ``since``: None for a full read, else the incremental's start;
        ``until``: when this sync started (the incremental's end)."""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _latest(records: list[AnyRecord]) -> datetime | None:
    stamps = [r.updated_at for r in records if r.updated_at is not None]
    return max(stamps) if stamps else None


class HubSpotReader:
    LIST_PAGE: Final = 100
    SEARCH_PAGE: Final = 200
    SEARCH_CAP: Final = 10_000

    @staticmethod
    def modified_property(object_type: ObjectType) -> str:
        return "lastmodifieddate" if object_type == "contact" else "hs_lastmodifieddate"

    async def read(
        self,
        client: CrmClient,
        object_type: ObjectType,
        *,
        cursor: Cursor | None,
        since: datetime | None,
        until: datetime,
    ) -> Result[ChangePage]:
        if cursor is None:
            cursor = (
                {"stage": "live", "after": None}
                if since is None
                else {"stage": "modified", "lo": _ms(since), "hi": _ms(until), "after": 0}
            )
        stage = cursor.get("stage")
        if stage == "live":
            return await self._list(client, object_type, cursor, archived=False)
        if stage == "archived":
            return await self._list(client, object_type, cursor, archived=True)
        if stage == "modified":
            return await self._search(client, object_type, cursor, end=_ms(until))
        return Result.fail(ProviderError(f"Unknown HubSpot sync cursor stage {stage!r}."))

    async def _list(
        self, client: CrmClient, object_type: ObjectType, cursor: Cursor, *, archived: bool
    ) -> Result[ChangePage]:
        after = cursor.get("after")
        page = await client.list(
            object_type,
            limit=self.LIST_PAGE,
            cursor=str(after) if after is not None else None,
            archived=archived,
        )
        if page.error is not None:
            return Result.fail(page.error)
        answer = page.unwrap()
        out = ChangePage(latest=_latest(answer.results))
        if archived:
            out.deleted = [
                # HubSpot stamps ``updatedAt`` when it archives a record.
                Deleted(external_id=r.id, deleted_at=r.updated_at, raw=dict(r.properties))
                for r in answer.results
            ]
        else:
            out.records = list(answer.results)
        if answer.next_cursor:
            out.cursor = {"stage": cursor["stage"], "after": answer.next_cursor}
        elif not archived:
            out.cursor = {"stage": "archived", "after": None}
        return Result.ok(out)

    async def _search(
        self, client: CrmClient, object_type: ObjectType, cursor: Cursor, *, end: int
    ) -> Result[ChangePage]:
        lo, hi, after = int(cursor["lo"]), int(cursor["hi"]), int(cursor.get("after") or 0)
        prop = self.modified_property(object_type)
        while True:
            query = SearchQuery(
                filter_groups=[
                    [
                        SearchFilter(field=prop, operator="gte", value=str(lo)),
                        SearchFilter(field=prop, operator="lt", value=str(hi)),
                    ]
                ],
                sort=[SearchSort(field=prop, direction="asc")],
                limit=self.SEARCH_PAGE,
                cursor=str(after) if after else None,
            )
            page = await client.search(object_type, query)
            if page.error is not None:
                return Result.fail(page.error)
            answer = page.unwrap()
            total = answer.total or 0
            if after == 0 and total > self.SEARCH_CAP and hi - lo > 1:
                hi = lo + (hi - lo) // 2  # too many in this window for search: halve it
                continue
            break
        out = ChangePage(records=list(answer.results), latest=_latest(answer.results))
        next_after = after + len(answer.results)
        if answer.next_cursor and answer.results and next_after < self.SEARCH_CAP:
            out.cursor = {"stage": "modified", "lo": lo, "hi": hi, "after": next_after}
        elif hi < end:
            out.cursor = {"stage": "modified", "lo": hi, "hi": end, "after": 0}
        else:
            out.cursor = {"stage": "archived", "after": None}
        return Result.ok(out)


class SalesforceReader:
    PAGE: Final = 2000

    async def read(
        self,
        client: CrmClient,
        object_type: ObjectType,
        *,
        cursor: Cursor | None,
        since: datetime | None,
        until: datetime,
    ) -> Result[ChangePage]:
        from ..providers.salesforce.changes import changed_rows

        stamp = cursor.get("stamp") if cursor else None
        last_id = cursor.get("id") if cursor else None
        rows = await changed_rows(
            client,
            object_type,
            after=(str(stamp), str(last_id)) if stamp and last_id else None,
            since=since,
            limit=self.PAGE,
        )
        if rows.error is not None:
            return Result.fail(rows.error)
        answer = rows.unwrap()
        out = ChangePage()
        for record in answer.records:
            if record.archived:
                out.deleted.append(
                    Deleted(
                        external_id=record.id,
                        deleted_at=record.updated_at,
                        raw=dict(record.properties),
                    )
                )
            else:
                out.records.append(record)
        out.latest = answer.latest_stamp
        if answer.full_page and answer.last is not None:
            out.cursor = {"stamp": answer.last[0], "id": answer.last[1]}
        return Result.ok(out)


READERS: dict[str, Reader] = {"hubspot": HubSpotReader(), "salesforce": SalesforceReader()}


def reader_for(provider: str) -> Reader:
    reader = READERS.get(provider)
    if reader is None:
        raise ProviderError(f"{provider} has no sync reader.")
    return reader
