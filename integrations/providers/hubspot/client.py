"""``HubSpotCrmClient``: the unified CRM operations on HubSpot's CRM v3/v4 APIs.

Each method builds one SDK call (or a few), lets the ``Transport`` run it (worker thread,
401 -> one refresh, call log, error mapping) and maps the answer to unified records. Every
method returns a ``Result``; none raises for a HubSpot failure. Pages of records (``list``,
``search``) are read as raw JSON and validated straight into the wire models: the SDK's own
models parse every timestamp with dateutil and are then turned back into dicts, which cost a
sync more time per page than everything else it does with the page.

``company_id`` on a contact/deal input becomes HubSpot's default contact/deal -> company
association: sent with the create call itself (one atomic request), or made with the v4
"default association" call after an update (both calls are idempotent, so a retry is safe).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from django.conf import settings

from core.errors import AppError
from core.result import Result
from hubspot.crm.objects import SimplePublicObjectInput, SimplePublicObjectInputForCreate

from ..base import (
    NO_BUDGET,
    CallBudget,
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
)
from .activities import activity_associations, activity_properties, to_activity, with_links
from .batch import company_association, run_batch
from .mapping import (
    OBJECT_PATHS,
    company_to_associate,
    read_associations,
    read_properties,
    search_property,
    to_properties,
    to_record,
)
from .search import search_request, to_sdk
from .transport import Transport, raw_answer
from .wire import AssociationPage, HubSpotObject, ObjectPage, from_sdk

LIST_PAGE_MAX = 100  # HubSpot's cap on ``limit`` for object pages
ASSOCIATIONS_PAGE_MAX = 500  # and for v4 association pages


def _segment(value: str) -> str:
    return quote(value, safe="")


class HubSpotCrmClient(CrmClient):
    # ``list`` below shadows the builtin inside this class body: annotations say ``builtins.list``.

    def __init__(
        self,
        *,
        tokens: TokenSource,
        record_call: CallRecorder = discard_call,
        api_url: str,
        rate_limit: RateLimitPolicy,
        timeout: float | None = None,
        extra_properties: Mapping[ObjectType, Sequence[str]] | None = None,
        budget: CallBudget = NO_BUDGET,
    ) -> None:
        """``extra_properties``: HubSpot properties to read besides the mapped ones (custom
        properties), per object type; they arrive in each record's ``properties``.
        ``budget``: the account's shared rate-limit budget (every HTTP attempt takes from it)."""
        super().__init__(tokens=tokens, record_call=record_call, budget=budget)
        self.rate_limit = rate_limit
        self.extra_properties = dict(extra_properties or {})
        self.transport = Transport(
            api_url=api_url,
            timeout=settings.PROVIDER_TIMEOUT_SECONDS if timeout is None else timeout,
            tokens=tokens,
            record_call=record_call,
            budget=budget,
        )

    def _properties(self, object_type: ObjectType) -> builtins.list[str]:
        return read_properties(object_type, self.extra_properties.get(object_type, ()))

    # --- single records ------------------------------------------------------------------

    async def get(self, object_type: ObjectType, record_id: str) -> Result[AnyRecord]:
        plural = OBJECT_PATHS[object_type]
        return await self.transport.sdk(
            "GET",
            f"/crm/v3/objects/{plural}/{_segment(record_id)}",
            lambda a: a.objects_basic.get_by_id_with_http_info(
                plural,
                record_id,
                properties=self._properties(object_type),
                associations=read_associations(object_type) or None,
                archived=False,
                **a.kw,
            ),
            lambda data: to_record(object_type, from_sdk(HubSpotObject, data)),
            subject=f"{object_type.capitalize()} {record_id}",
        )

    async def list(
        self,
        object_type: ObjectType,
        *,
        limit: int = 50,
        cursor: str | None = None,
        archived: bool = False,
    ) -> Result[Page[AnyRecord]]:
        plural = OBJECT_PATHS[object_type]

        def parse(data: Any) -> Page[AnyRecord]:
            page = from_sdk(ObjectPage, data)
            records = [to_record(object_type, obj) for obj in page.results]
            return Page[AnyRecord](results=records, next_cursor=page.after)

        return await self.transport.sdk(
            "GET",
            f"/crm/v3/objects/{plural}",
            lambda a: raw_answer(
                a.objects_basic.get_page_with_http_info(
                    plural,
                    limit=max(1, min(limit, LIST_PAGE_MAX)),
                    after=cursor,
                    properties=self._properties(object_type),
                    associations=read_associations(object_type) or None,
                    archived=archived,
                    _preload_content=False,
                    **a.kw,
                )
            ),
            parse,
        )

    async def create(self, object_type: ObjectType, data: RecordIn) -> Result[AnyRecord]:
        try:
            properties = to_properties(object_type, data, creating=True)
        except AppError as exc:
            return Result.fail(exc)
        plural = OBJECT_PATHS[object_type]
        company_id = company_to_associate(object_type, data)
        body = SimplePublicObjectInputForCreate(
            properties=properties, associations=company_association(object_type, company_id)
        )
        created = await self.transport.sdk(
            "POST",
            f"/crm/v3/objects/{plural}",
            lambda a: a.objects_basic.create_with_http_info(plural, body, **a.kw),
            lambda answer: to_record(object_type, from_sdk(HubSpotObject, answer)),
        )
        return _with_company(created, company_id)

    async def update(
        self, object_type: ObjectType, record_id: str, data: RecordIn
    ) -> Result[AnyRecord]:
        try:
            properties = to_properties(object_type, data, creating=False)
        except AppError as exc:
            return Result.fail(exc)
        plural = OBJECT_PATHS[object_type]
        body = SimplePublicObjectInput(properties=properties)
        updated = await self.transport.sdk(
            "PATCH",
            f"/crm/v3/objects/{plural}/{_segment(record_id)}",
            lambda a: a.objects_basic.update_with_http_info(plural, record_id, body, **a.kw),
            lambda answer: to_record(object_type, from_sdk(HubSpotObject, answer)),
            subject=f"{object_type.capitalize()} {record_id}",
        )
        company_id = company_to_associate(object_type, data)
        if updated.error is not None or company_id is None:
            return updated
        linked = await self.associate(
            Association(
                from_type=object_type, from_id=record_id, to_type="company", to_id=company_id
            )
        )
        if linked.error is not None:
            return Result.fail(linked.error)
        return _with_company(updated, company_id)

    async def archive(self, object_type: ObjectType, record_id: str) -> Result[None]:
        plural = OBJECT_PATHS[object_type]
        return await self.transport.sdk(
            "DELETE",
            f"/crm/v3/objects/{plural}/{_segment(record_id)}",
            lambda a: a.objects_basic.archive_with_http_info(plural, record_id, **a.kw),
            lambda _answer: None,
            subject=f"{object_type.capitalize()} {record_id}",
        )

    # --- many records --------------------------------------------------------------------

    async def batch_create(
        self, object_type: ObjectType, items: builtins.list[RecordIn]
    ) -> Result[BatchResult[AnyRecord]]:
        return await run_batch(
            self.transport,
            object_type,
            [(None, data) for data in items],
            batch_size=self.rate_limit.batch_size,
            updating=False,
        )

    async def batch_update(
        self, object_type: ObjectType, items: builtins.list[tuple[str, RecordIn]]
    ) -> Result[BatchResult[AnyRecord]]:
        return await run_batch(
            self.transport,
            object_type,
            [(record_id, data) for record_id, data in items],
            batch_size=self.rate_limit.batch_size,
            updating=True,
        )

    async def search(self, object_type: ObjectType, query: SearchQuery) -> Result[Page[AnyRecord]]:
        """Search with HubSpot's CRM search (see ``search.py``). Search results carry no
        associations, so a deal's ``company_id`` is empty here (``get`` has it)."""
        try:
            body = search_request(
                object_type,
                query,
                properties=self._properties(object_type),
                page_size=self.rate_limit.search_page_size,
                result_cap=self.rate_limit.search_result_cap,
            )
        except AppError as exc:
            return Result.fail(exc)
        plural = OBJECT_PATHS[object_type]
        request = to_sdk(body)

        def parse(data: Any) -> Page[AnyRecord]:
            page = from_sdk(ObjectPage, data)
            records = [to_record(object_type, obj) for obj in page.results]
            return Page[AnyRecord](results=records, next_cursor=page.after, total=page.total)

        return await self.transport.sdk(
            "POST",
            f"/crm/v3/objects/{plural}/search",
            lambda a: raw_answer(
                a.objects_search.do_search_with_http_info(
                    plural, request, _preload_content=False, **a.kw
                )
            ),
            parse,
        )

    # --- associations ----------------------------------------------------------------------

    async def associate(self, association: Association) -> Result[None]:
        """HubSpot's default association between the two records (v4); idempotent."""
        src, dst = OBJECT_PATHS[association.from_type], OBJECT_PATHS[association.to_type]
        src_id, dst_id = association.from_id, association.to_id
        return await self.transport.sdk(
            "PUT",
            f"/crm/v4/objects/{src}/{_segment(src_id)}/associations/default/{dst}/{_segment(dst_id)}",
            lambda a: a.associations_basic.create_default_with_http_info(
                src, src_id, dst, dst_id, **a.kw
            ),
            lambda _answer: None,
            subject=f"{association.from_type.capitalize()} {src_id} or "
            f"{association.to_type} {dst_id}",
        )

    async def associations(
        self, object_type: ObjectType, record_id: str, to_type: ObjectType
    ) -> Result[builtins.list[str]]:
        """Every page of the v4 association list, one call per page."""
        ids: dict[str, None] = {}
        after: str | None = None
        while True:
            page = await self._association_page(object_type, record_id, to_type, after)
            if page.error is not None:
                return Result.fail(page.error)
            answer = page.unwrap()
            ids.update(dict.fromkeys(t.to_object_id for t in answer.results))
            if answer.after is None or answer.after == after:
                return Result.ok(builtins.list(ids))
            after = answer.after

    async def _association_page(
        self, object_type: ObjectType, record_id: str, to_type: ObjectType, after: str | None
    ) -> Result[AssociationPage]:
        src, dst = OBJECT_PATHS[object_type], OBJECT_PATHS[to_type]
        return await self.transport.sdk(
            "GET",
            f"/crm/v4/objects/{src}/{_segment(record_id)}/associations/{dst}",
            lambda a: a.associations_basic.get_page_with_http_info(
                src, record_id, dst, after=after, limit=ASSOCIATIONS_PAGE_MAX, **a.kw
            ),
            lambda data: from_sdk(AssociationPage, data),
            subject=f"{object_type.capitalize()} {record_id}",
        )

    # --- activities --------------------------------------------------------------------------

    async def create_activity(
        self, activity_type: ActivityType, data: ActivityIn
    ) -> Result[AnyActivity]:
        """One create call carrying the associations (see ``activities.py``)."""
        try:
            checked = activity_input(activity_type, data)
        except AppError as exc:
            return Result.fail(exc)
        plural = OBJECT_PATHS[activity_type]
        body = SimplePublicObjectInputForCreate(
            properties=activity_properties(checked, now=datetime.now(UTC)),
            associations=activity_associations(activity_type, checked),
        )
        created = await self.transport.sdk(
            "POST",
            f"/crm/v3/objects/{plural}",
            lambda a: a.objects_basic.create_with_http_info(plural, body, **a.kw),
            lambda answer: to_activity(activity_type, from_sdk(HubSpotObject, answer)),
        )
        if created.error is not None:
            return created
        return Result.ok(with_links(created.unwrap(), checked))

    async def get_activity(
        self, activity_type: ActivityType, record_id: str
    ) -> Result[AnyActivity]:
        plural = OBJECT_PATHS[activity_type]
        return await self.transport.sdk(
            "GET",
            f"/crm/v3/objects/{plural}/{_segment(record_id)}",
            lambda a: a.objects_basic.get_by_id_with_http_info(
                plural,
                record_id,
                properties=read_properties(activity_type),
                associations=read_associations(activity_type),
                archived=False,
                **a.kw,
            ),
            lambda data: to_activity(activity_type, from_sdk(HubSpotObject, data)),
            subject=f"{activity_type.capitalize()} {record_id}",
        )

    async def search_activities(
        self, activity_type: ActivityType, query: SearchQuery
    ) -> Result[Page[AnyActivity]]:
        """HubSpot's CRM search on notes or tasks. The raw properties the filters name are read
        too (HubSpot answers a search with the properties it names only)."""
        named = [search_property(activity_type, f.field) for g in query.filter_groups for f in g]
        named = [name for name in named if "." not in name]  # not associations.deal
        try:
            body = search_request(
                activity_type,
                query,
                properties=read_properties(activity_type, named),
                page_size=self.rate_limit.search_page_size,
                result_cap=self.rate_limit.search_result_cap,
            )
        except AppError as exc:
            return Result.fail(exc)
        plural = OBJECT_PATHS[activity_type]
        request = to_sdk(body)

        def parse(data: Any) -> Page[AnyActivity]:
            page = from_sdk(ObjectPage, data)
            found = [to_activity(activity_type, obj) for obj in page.results]
            return Page[AnyActivity](results=found, next_cursor=page.after, total=page.total)

        return await self.transport.sdk(
            "POST",
            f"/crm/v3/objects/{plural}/search",
            lambda a: a.objects_search.do_search_with_http_info(plural, request, **a.kw),
            parse,
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
        """Raw passthrough (httpx) under the API base URL, with the same token handling and
        error mapping as every other call: a non-2xx answer is a failed ``Result``."""
        return await self.transport.http(method, path, params=params, json=json)


def _with_company(result: Result[AnyRecord], company_id: str | None) -> Result[AnyRecord]:
    """The written record, showing the company it was just associated with (HubSpot's write
    answers carry no associations)."""
    if company_id is None or result.error is not None:
        return result
    record = result.unwrap()
    if getattr(record, "company_id", None) is None:
        return Result.ok(record.model_copy(update={"company_id": company_id}))
    return result
