"""``SalesforceCrmClient``: the unified CRM operations on Salesforce's REST API.

Reads are SOQL (``query``; ``queryAll`` for deleted rows) selecting every field the object's
describe lists, paged by keyset (see ``soql.py``). Single writes go through the sObject
resource and are read back, so callers get the stored record (defaults, timestamps); a write
that succeeded never reports failure because its read-back did: the record is then built from
what was sent. Every method returns a ``Result``; none raises for a Salesforce failure.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from core.errors import AppError, NotFound, ProviderError, ValidationFailed
from core.result import Result

from ..base import (
    NO_BUDGET,
    CallBudget,
    CallKind,
    CallRecorder,
    CrmClient,
    RateLimitPolicy,
    TokenSource,
    activity_input,
    discard_call,
)
from ..unified import (
    ActivityIn,
    ActivityType,
    AnyActivity,
    AnyRecord,
    Association,
    BatchResult,
    ObjectType,
    Page,
    RawResponse,
    RecordIn,
    SearchQuery,
    WritableType,
)
from .activities import activity_fields, to_activity
from .associations import link, linked_ids
from .batch import run_batch
from .catalog import ObjectFields, fields_of
from .mapping import sobject, to_fields, to_record
from .soql import is_record_id, next_cursor, quote, search_statement, statement
from .transport import Sdk, Transport
from .wire import QueryAnswer, SaveResult, validate

Row = dict[str, Any]


def missing(object_type: WritableType, record_id: str) -> NotFound:
    return NotFound(
        f"{object_type.capitalize()} {record_id} was not found in Salesforce.",
        details={"provider": "salesforce", "id": record_id},
    )


class SalesforceCrmClient(CrmClient):
    # ``list`` below shadows the builtin inside this class body: annotations say ``builtins.list``.

    def __init__(
        self,
        *,
        tokens: TokenSource,
        record_call: CallRecorder = discard_call,
        instance_url: str | None,
        api_version: str,
        rate_limit: RateLimitPolicy,
        ca_file: str | None = None,
        timeout: float | None = None,
        org_id: str | None = None,
        budget: CallBudget = NO_BUDGET,
    ) -> None:
        """``instance_url``: the org's API host from the token answer (without it every call
        fails with ``reauth_required``); ``ca_file``: a CA bundle to trust instead of the
        system store (the sandbox's); ``org_id`` keys the cached field lists; ``budget`` is the
        org's shared rate-limit budget (every HTTP attempt takes from it)."""
        super().__init__(tokens=tokens, record_call=record_call, budget=budget)
        self.rate_limit = rate_limit
        self.org_id = org_id or ""
        self.transport = Transport(
            instance_url=instance_url,
            api_version=api_version,
            ca_file=ca_file,
            timeout=settings.PROVIDER_TIMEOUT_SECONDS if timeout is None else timeout,
            tokens=tokens,
            record_call=record_call,
            budget=budget,
        )

    async def _fields(self, object_type: WritableType) -> Result[ObjectFields]:
        return await fields_of(self.transport, object_type, org=self.org_id)

    def _page_size(self, fields: ObjectFields, limit: int) -> int:
        size = max(1, min(limit, self.rate_limit.search_page_size))
        cap = fields.max_rows
        return size if cap is None else min(size, cap - 1)  # one row more shows a next page

    async def _query(
        self, soql: str, *, include_deleted: bool = False, subject: str | None = None
    ) -> Result[QueryAnswer]:
        return await self.transport.call(
            lambda sdk: validate(
                QueryAnswer, sdk.salesforce.query(soql, include_deleted=include_deleted)
            ),
            subject=subject,
        )

    async def _row(self, object_type: WritableType, record_id: str) -> Result[Row]:
        """One record's every field (``not_found`` when it is not there)."""
        fields = await self._fields(object_type)
        if fields.error is not None:
            return Result.fail(fields.error)
        soql = statement(
            sobject(object_type),
            fields.unwrap().select,
            where=[f"Id = {quote(record_id)}"],
            limit=1,
        )
        answer = await self._query(soql)
        if answer.error is not None:
            return Result.fail(answer.error)
        rows = answer.unwrap().records
        if not rows:
            return Result.fail(missing(object_type, record_id))
        return Result.ok(rows[0])

    async def _read(self, object_type: ObjectType, record_id: str) -> Result[AnyRecord]:
        row = await self._row(object_type, record_id)
        if row.error is not None:
            return Result.fail(row.error)
        return Result.ok(to_record(object_type, row.unwrap()))

    async def _insert(self, object_type: WritableType, fields: dict[str, Any]) -> Result[str]:
        """Create one sObject record; its new id."""
        name = sobject(object_type)
        created = await self.transport.call(
            lambda sdk: validate(SaveResult, sdk.sobject(name).create(fields)),
            sent=fields,
            kind="write",
        )
        if created.error is not None:
            return Result.fail(created.error)
        record_id = created.unwrap().id
        if not record_id:
            return Result.fail(
                ProviderError(
                    f"Salesforce did not return the new {object_type}'s id.",
                    details={"provider": "salesforce"},
                )
            )
        return Result.ok(record_id)

    async def _written(
        self, object_type: ObjectType, record_id: str, sent: Mapping[str, Any]
    ) -> Result[AnyRecord]:
        """The record just written, read back; built from ``sent`` if the read fails."""
        read = await self._read(object_type, record_id)
        if read.error is None:
            return read
        return Result.ok(to_record(object_type, {**sent, "Id": record_id}))

    # --- single records ------------------------------------------------------------------

    async def get(self, object_type: ObjectType, record_id: str) -> Result[AnyRecord]:
        if not is_record_id(record_id):
            return Result.fail(missing(object_type, record_id))
        return await self._read(object_type, record_id)

    async def list(
        self,
        object_type: ObjectType,
        *,
        limit: int = 50,
        cursor: str | None = None,
        archived: bool = False,
    ) -> Result[Page[AnyRecord]]:
        """Records in ``Id`` order; the cursor is the last ``Id`` of the previous page.
        ``archived``: deleted records still in the recycle bin (``queryAll``)."""
        if cursor is not None and not is_record_id(cursor):
            return Result.fail(
                ValidationFailed(
                    "Not a cursor this list returned.",
                    details={"fields": {"cursor": "not a Salesforce record id"}},
                )
            )
        fields = await self._fields(object_type)
        if fields.error is not None:
            return Result.fail(fields.error)
        size = self._page_size(fields.unwrap(), limit)
        where = ["IsDeleted = true"] if archived else []
        if cursor is not None:
            where.append(f"Id > {quote(cursor)}")
        soql = statement(sobject(object_type), fields.unwrap().select, where=where, limit=size + 1)
        answer = await self._query(soql, include_deleted=archived)
        if answer.error is not None:
            return Result.fail(answer.error)
        rows = answer.unwrap().records
        page = rows[:size]
        more = bool(page) and (len(rows) > size or not answer.unwrap().done)
        return Result.ok(
            Page[AnyRecord](
                results=[to_record(object_type, row) for row in page],
                next_cursor=str(page[-1]["Id"]) if more else None,
            )
        )

    async def create(self, object_type: ObjectType, data: RecordIn) -> Result[AnyRecord]:
        try:
            fields = to_fields(object_type, data, creating=True)
        except AppError as exc:
            return Result.fail(exc)
        created = await self._insert(object_type, fields)
        if created.error is not None:
            return Result.fail(created.error)
        return await self._written(object_type, created.unwrap(), fields)

    async def update(
        self, object_type: ObjectType, record_id: str, data: RecordIn
    ) -> Result[AnyRecord]:
        try:
            fields = to_fields(object_type, data, creating=False)
        except AppError as exc:
            return Result.fail(exc)
        if not is_record_id(record_id):
            return Result.fail(missing(object_type, record_id))
        name = sobject(object_type)
        if fields:
            updated = await self.transport.call(
                lambda sdk: sdk.sobject(name).update(record_id, fields),
                subject=f"{object_type.capitalize()} {record_id}",
                sent=fields,
                kind="write",
            )
            if updated.error is not None:
                return Result.fail(updated.error)
        return await self._written(object_type, record_id, fields)

    async def archive(self, object_type: ObjectType, record_id: str) -> Result[None]:
        """Delete the record (it stays in the recycle bin, listed with ``archived=True``)."""
        if not is_record_id(record_id):
            return Result.fail(missing(object_type, record_id))
        name = sobject(object_type)

        def invoke(sdk: Sdk) -> None:
            sdk.sobject(name).delete(record_id)

        return await self.transport.call(
            invoke, subject=f"{object_type.capitalize()} {record_id}", kind="write"
        )

    # --- many records --------------------------------------------------------------------

    async def batch_create(
        self, object_type: ObjectType, items: builtins.list[RecordIn]
    ) -> Result[BatchResult[AnyRecord]]:
        return await run_batch(
            self,
            object_type,
            [(None, data) for data in items],
            batch_size=self.rate_limit.batch_size,
            updating=False,
        )

    async def batch_update(
        self, object_type: ObjectType, items: builtins.list[tuple[str, RecordIn]]
    ) -> Result[BatchResult[AnyRecord]]:
        return await run_batch(
            self,
            object_type,
            [(record_id, data) for record_id, data in items],
            batch_size=self.rate_limit.batch_size,
            updating=True,
        )

    async def read_many(
        self, object_type: ObjectType, ids: builtins.list[str]
    ) -> Result[dict[str, AnyRecord]]:
        """Records by id (at most 200 ids, one query); ids not found are left out."""
        fields = await self._fields(object_type)
        if fields.error is not None:
            return Result.fail(fields.error)
        wanted = [i for i in ids if is_record_id(i)]
        if not wanted:
            return Result.ok({})
        listed = ", ".join(quote(i) for i in wanted)
        soql = statement(
            sobject(object_type),
            fields.unwrap().select,
            where=[f"Id IN ({listed})"],
            limit=len(wanted),
        )
        answer = await self._query(soql)
        if answer.error is not None:
            return Result.fail(answer.error)
        records = [to_record(object_type, row) for row in answer.unwrap().records]
        return Result.ok({r.id: r for r in records})

    async def search(self, object_type: ObjectType, query: SearchQuery) -> Result[Page[AnyRecord]]:
        """Filters, free text and sort as SOQL (``soql.py``); keyset cursors. Salesforce
        reports no total for a paged query, so ``total`` stays empty."""
        found = await self._search_rows(object_type, query)
        if found.error is not None:
            return Result.fail(found.error)
        rows, cursor = found.unwrap()
        return Result.ok(
            Page[AnyRecord](
                results=[to_record(object_type, row) for row in rows], next_cursor=cursor
            )
        )

    async def _search_rows(
        self, object_type: WritableType, query: SearchQuery
    ) -> Result[tuple[builtins.list[Mapping[str, Any]], str | None]]:
        """One page of rows matching ``query`` and the cursor after it."""
        fields = await self._fields(object_type)
        if fields.error is not None:
            return Result.fail(fields.error)
        size = self._page_size(fields.unwrap(), query.limit)
        try:
            soql, sort, print_ = search_statement(
                object_type,
                query,
                fields=fields.unwrap().select,
                catalog=fields.unwrap().catalog,
                page_size=size,
            )
        except AppError as exc:
            return Result.fail(exc)
        answer = await self._query(soql)
        if answer.error is not None:
            return Result.fail(answer.error)
        limit = min(query.limit, size)
        rows = answer.unwrap().records
        return Result.ok(next_cursor(rows, limit, sort, print_, done=answer.unwrap().done))

    # --- associations ----------------------------------------------------------------------

    async def associate(self, association: Association) -> Result[None]:
        """contact/deal -> company: the record's ``AccountId``; contact <-> deal: an
        ``OpportunityContactRole`` (made once; asking again changes nothing)."""
        return await link(self.transport, association)

    async def associations(
        self, object_type: ObjectType, record_id: str, to_type: ObjectType
    ) -> Result[builtins.list[str]]:
        return await linked_ids(self.transport, object_type, record_id, to_type)

    # --- activities --------------------------------------------------------------------------

    async def create_activity(
        self, activity_type: ActivityType, data: ActivityIn
    ) -> Result[AnyActivity]:
        """Create the ``Task`` or ``Note`` (``activities.py``) and read it back (built from
        what was sent if the read fails: the create happened)."""
        try:
            fields = activity_fields(activity_input(activity_type, data))
        except AppError as exc:
            return Result.fail(exc)
        created = await self._insert(activity_type, fields)
        if created.error is not None:
            return Result.fail(created.error)
        record_id = created.unwrap()
        read = await self.get_activity(activity_type, record_id)
        if read.error is None:
            return read
        return Result.ok(to_activity(activity_type, {**fields, "Id": record_id}))

    async def get_activity(
        self, activity_type: ActivityType, record_id: str
    ) -> Result[AnyActivity]:
        if not is_record_id(record_id):
            return Result.fail(missing(activity_type, record_id))
        row = await self._row(activity_type, record_id)
        if row.error is not None:
            return Result.fail(row.error)
        return Result.ok(to_activity(activity_type, row.unwrap()))

    async def search_activities(
        self, activity_type: ActivityType, query: SearchQuery
    ) -> Result[Page[AnyActivity]]:
        found = await self._search_rows(activity_type, query)
        if found.error is not None:
            return Result.fail(found.error)
        rows, cursor = found.unwrap()
        return Result.ok(
            Page[AnyActivity](
                results=[to_activity(activity_type, row) for row in rows], next_cursor=cursor
            )
        )

    # --- anything else -----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Result[RawResponse]:
        """Raw passthrough on the instance: ``/services/...`` paths as they are, any other
        path under the versioned data API (``/limits`` -> ``/services/data/vXX.X/limits``).
        Same token handling and error mapping as every other call."""
        if not path.startswith("/") or path.startswith("//") or "://" in path or "\\" in path:
            return Result.fail(
                ValidationFailed(
                    "The path must be relative to the Salesforce instance, e.g. /limits or "
                    "/services/data/v62.0/limits.",
                    details={"fields": {"path": "must start with a single '/'"}},
                )
            )
        if ".." in path.split("?", 1)[0].split("/"):
            return Result.fail(
                ValidationFailed(
                    "The path may not climb out of the API.",
                    details={"fields": {"path": "no '..' segments"}},
                )
            )
        verb = method.upper()

        def invoke(sdk: Sdk) -> RawResponse:
            base = "" if path.startswith("/services/") else sdk.data_path
            status, headers, body = sdk.send(
                verb, sdk.instance_url + base + path, params=params, json=json
            )
            return RawResponse(status=status, headers=headers, body=body)

        kind: CallKind = "read" if verb in {"GET", "HEAD", "OPTIONS"} else "write"
        return await self.transport.call(invoke, kind=kind)
