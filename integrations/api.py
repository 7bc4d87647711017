"""Connections and their CRM records under /api/v1 (async, enveloped, organisation-scoped).

No ``from __future__ import annotations`` here: the record routes are made by one factory for
each object type, and Ninja must see the real input classes in their signatures.
"""

from typing import Any, Literal

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from accounts.audit import Actor
from accounts.auth import principal_of
from core.envelope import Envelope, api_responses, ok
from core.errors import ValidationFailed
from core.pagination import PageParams, paginate

from .models import Connection
from .outbox.api import IdempotencyKey, batch_answer, queued_responses, write_answer
from .outbox.schemas import BatchWriteOut
from .outbox.service import check_key, write_batch_submit, write_submit
from .providers.base import CrmClient
from .providers.unified import (
    INPUT_MODELS,
    RECORD_MODELS,
    Association,
    ObjectType,
    Page,
    SearchQuery,
)
from .ratelimit import budget_snapshot
from .schemas import (
    ArchivedOut,
    AssociationsOut,
    ConnectionBudgetOut,
    ConnectionDeletedOut,
    ConnectionOut,
    ConnectionTestOut,
)
from .selectors import connection_for, connection_list
from .services.calls import crm_client_for
from .services.connections import connection_disconnect, connection_test

router = Router(tags=["connections"])

# The object types in URLs (documented as the path parameter's enum).
Plural = Literal["contacts", "companies", "deals"]
PLURALS: dict[ObjectType, Plural] = {"contact": "contacts", "company": "companies", "deal": "deals"}
BY_PLURAL: dict[str, ObjectType] = {plural: kind for kind, plural in PLURALS.items()}


async def own_connection(request: HttpRequest, connection_id: str) -> Connection:
    """The caller's organisation's connection; another organisation's is a 404."""
    p = principal_of(request)
    return await connection_for(organization_id=p.organization_id, connection_id=connection_id)


@router.get("/connections", response=api_responses(Envelope[list[ConnectionOut]]))
async def connections_list(
    request: HttpRequest, page: Query[PageParams]
) -> Envelope[list[ConnectionOut]]:
    p = principal_of(request)
    rows, meta = await paginate(connection_list(organization_id=p.organization_id), page)
    return ok([ConnectionOut.of(c) for c in rows], pagination=meta)


@router.get("/connections/{connection_id}", response=api_responses(Envelope[ConnectionOut]))
async def connections_get(request: HttpRequest, connection_id: str) -> Envelope[ConnectionOut]:
    connection = await own_connection(request, connection_id)
    return ok(ConnectionOut.of(connection))


@router.delete(
    "/connections/{connection_id}",
    response=api_responses(Envelope[ConnectionDeletedOut]),
    summary="Disconnect: revoke the grant at the provider and delete the connection",
)
async def connections_delete(
    request: HttpRequest, connection_id: str
) -> Envelope[ConnectionDeletedOut]:
    p = principal_of(request)
    connection = await own_connection(request, connection_id)
    p.require_manager()
    deleted_id = connection.pk  # delete() clears the instance's pk
    revoked = await connection_disconnect(connection=connection, actor=p.actor)
    return ok(ConnectionDeletedOut(id=deleted_id, revoked_at_provider=revoked))


@router.post(
    "/connections/{connection_id}/test",
    response=api_responses(Envelope[ConnectionTestOut], provider=True),
    summary="Check the connection's tokens with the provider",
)
async def connections_test(request: HttpRequest, connection_id: str) -> Envelope[ConnectionTestOut]:
    connection = await own_connection(request, connection_id)
    found = (await connection_test(connection=connection)).unwrap()
    return ok(ConnectionTestOut(ok=True, account=found["account"], scopes=found["scopes"]))


@router.get(
    "/connections/{connection_id}/budget",
    response=api_responses(Envelope[ConnectionBudgetOut]),
    summary="The shared rate-limit budget of the connection's provider account",
)
async def connections_budget(
    request: HttpRequest, connection_id: str
) -> Envelope[ConnectionBudgetOut]:
    connection = await own_connection(request, connection_id)
    snapshot = await budget_snapshot(connection.provider, connection.external_account_id)
    return ok(ConnectionBudgetOut.of(connection, snapshot))


async def _client(request: HttpRequest, connection_id: str) -> tuple[Connection, CrmClient]:
    connection = await own_connection(request, connection_id)
    return connection, crm_client_for(connection)


async def _writer(request: HttpRequest, connection_id: str) -> tuple[Connection, Actor]:
    """The caller's connection (404 for another organisation's) and who is writing."""
    p = principal_of(request)
    connection = await own_connection(request, connection_id)
    return connection, p.actor


class ListParams(BaseModel):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None
    archived: bool = False


class BatchIn(BaseModel):
    """Either ``create`` (inputs) or ``update`` (``id`` plus fields); any number of items."""

    model_config = ConfigDict(extra="forbid")
    create: list[dict[str, Any]] | None = Field(None, max_length=10_000)
    update: list[dict[str, Any]] | None = Field(None, max_length=10_000)


def _inputs(kind: ObjectType, items: list[dict[str, Any]], *, with_id: bool) -> list[Any]:
    """Validate batch items with the type's input model, naming the bad item's index."""
    model = INPUT_MODELS[kind]
    parsed: list[Any] = []
    for index, item in enumerate(items):
        fields = dict(item)
        record_id = fields.pop("id", None) if with_id else None
        if with_id and not isinstance(record_id, str | int):
            raise ValidationFailed(
                "Every update needs the record's id.", details={"index": index, "field": "id"}
            )
        try:
            data = model.model_validate(fields)
        except ValidationError as exc:
            # Where and why only, as for every 422: never echo the submitted values back.
            errors = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ]
            raise ValidationFailed(
                f"Item {index} did not validate.", details={"index": index, "errors": errors}
            ) from exc
        parsed.append((str(record_id), data) if with_id else data)
    return parsed


def _register(kind: ObjectType) -> None:
    plural = PLURALS[kind]
    In = INPUT_MODELS[kind]
    Out = RECORD_MODELS[kind]
    base = f"/connections/{{connection_id}}/{plural}"
    tag: list[str] = [plural]

    async def list_records(
        request: HttpRequest, connection_id: str, params: Query[ListParams]
    ) -> Envelope[Page[Any]]:
        _, client = await _client(request, connection_id)
        page = await client.list(
            kind, limit=params.limit, cursor=params.cursor, archived=params.archived
        )
        return ok(page.unwrap())

    async def create_record(
        request: HttpRequest,
        connection_id: str,
        body: In,  # type: ignore[valid-type]
        response: HttpResponse,
        idempotency_key: IdempotencyKey = None,
    ) -> Status[Any]:
        connection, actor = await _writer(request, connection_id)
        outcome = await write_submit(
            connection=connection,
            operation="create",
            object_type=kind,
            payload=body,
            idempotency_key=idempotency_key,
            actor=actor,
        )
        return write_answer(outcome, response, status=201, data=lambda o: o.record)

    async def get_record(request: HttpRequest, connection_id: str, record_id: str) -> Envelope[Any]:
        _, client = await _client(request, connection_id)
        return ok((await client.get(kind, record_id)).unwrap())

    async def update_record(
        request: HttpRequest,
        connection_id: str,
        record_id: str,
        body: In,  # type: ignore[valid-type]
        response: HttpResponse,
        idempotency_key: IdempotencyKey = None,
    ) -> Status[Any]:
        connection, actor = await _writer(request, connection_id)
        outcome = await write_submit(
            connection=connection,
            operation="update",
            object_type=kind,
            record_id=record_id,
            payload=body,
            idempotency_key=idempotency_key,
            actor=actor,
        )
        return write_answer(outcome, response, status=200, data=lambda o: o.record)

    async def archive_record(
        request: HttpRequest,
        connection_id: str,
        record_id: str,
        response: HttpResponse,
        idempotency_key: IdempotencyKey = None,
    ) -> Status[Any]:
        connection, actor = await _writer(request, connection_id)
        outcome = await write_submit(
            connection=connection,
            operation="archive",
            object_type=kind,
            record_id=record_id,
            idempotency_key=idempotency_key,
            actor=actor,
        )
        return write_answer(
            outcome, response, status=200, data=lambda o: ArchivedOut(id=o.write.record_id)
        )

    async def search_records(
        request: HttpRequest, connection_id: str, body: SearchQuery
    ) -> Envelope[Page[Any]]:
        _, client = await _client(request, connection_id)
        return ok((await client.search(kind, body)).unwrap())

    async def batch_records(
        request: HttpRequest,
        connection_id: str,
        body: BatchIn,
        response: HttpResponse,
        idempotency_key: IdempotencyKey = None,
    ) -> Status[Any]:
        if (body.create is None) == (body.update is None):
            raise ValidationFailed("Send either `create` or `update`.")
        if idempotency_key is not None:
            check_key(idempotency_key, batch=True)
        connection, actor = await _writer(request, connection_id)
        if body.create is not None:
            operation = "create"
            items = [(None, data) for data in _inputs(kind, body.create, with_id=False)]
        else:
            operation = "update"
            items = list(_inputs(kind, body.update or [], with_id=True))
        outcomes = await write_batch_submit(
            connection=connection,
            operation=operation,
            object_type=kind,
            items=items,
            idempotency_key=idempotency_key,
            actor=actor,
        )
        key = outcomes[0].write.idempotency_key.rsplit(":", 1)[0] if outcomes else ""
        return batch_answer(outcomes, response, key=key)

    async def associate_record(
        request: HttpRequest,
        connection_id: str,
        record_id: str,
        to_plural: Plural,
        to_id: str,
        response: HttpResponse,
        idempotency_key: IdempotencyKey = None,
    ) -> Status[Any]:
        to_type = _to_type(to_plural)
        connection, actor = await _writer(request, connection_id)
        outcome = await write_submit(
            connection=connection,
            operation="associate",
            object_type=kind,
            record_id=record_id,
            payload={"to_type": to_type, "to_id": to_id},
            idempotency_key=idempotency_key,
            actor=actor,
        )
        return write_answer(
            outcome,
            response,
            status=200,
            data=lambda o: Association(
                from_type=kind, from_id=o.write.record_id, to_type=to_type, to_id=to_id
            ),
        )

    async def list_associations(
        request: HttpRequest, connection_id: str, record_id: str, to_plural: Plural
    ) -> Envelope[AssociationsOut]:
        to_type = _to_type(to_plural)
        _, client = await _client(request, connection_id)
        return ok(
            AssociationsOut(ids=(await client.associations(kind, record_id, to_type)).unwrap())
        )

    one = api_responses(Envelope[Out], provider=True)  # type: ignore[valid-type]
    many = api_responses(Envelope[Page[Out]], provider=True)  # type: ignore[valid-type]
    # Writes go through the outbox: their answer, or 202 when still on the way.
    created = queued_responses(Envelope[Out], 201)  # type: ignore[valid-type]
    updated = queued_responses(Envelope[Out], 200)  # type: ignore[valid-type]
    batched = api_responses(Envelope[BatchWriteOut[Out]], provider=True) | {  # type: ignore[valid-type]
        202: Envelope[BatchWriteOut[Out]]  # type: ignore[valid-type]
    }
    router.get(
        base, response=many, tags=tag, operation_id=f"{plural}_list", summary=f"List {plural}"
    )(list_records)
    router.post(
        base,
        response=created,
        tags=tag,
        operation_id=f"{plural}_create",
        summary=f"Create a {kind}",
    )(create_record)
    router.post(
        f"{base}/search",
        response=many,
        tags=tag,
        operation_id=f"{plural}_search",
        summary=f"Search {plural}",
    )(search_records)
    router.post(
        f"{base}/batch",
        response=batched,
        tags=tag,
        operation_id=f"{plural}_batch",
        summary=f"Create or update many {plural} (one write each, sent in provider-sized "
        "batch calls)",
    )(batch_records)
    router.get(
        f"{base}/{{record_id}}",
        response=one,
        tags=tag,
        operation_id=f"{plural}_get",
        summary=f"Get a {kind}",
    )(get_record)
    router.patch(
        f"{base}/{{record_id}}",
        response=updated,
        tags=tag,
        operation_id=f"{plural}_update",
        summary=f"Update a {kind}",
    )(update_record)
    router.delete(
        f"{base}/{{record_id}}",
        response=queued_responses(Envelope[ArchivedOut], 200),
        tags=tag,
        operation_id=f"{plural}_archive",
        summary=f"Archive a {kind}",
    )(archive_record)
    router.put(
        f"{base}/{{record_id}}/associations/{{to_plural}}/{{to_id}}",
        response=queued_responses(Envelope[Association], 200),
        tags=tag,
        operation_id=f"{plural}_associate",
        summary=f"Associate a {kind} with another record",
    )(associate_record)
    router.get(
        f"{base}/{{record_id}}/associations/{{to_plural}}",
        response=api_responses(Envelope[AssociationsOut], provider=True),
        tags=tag,
        operation_id=f"{plural}_associations",
        summary=f"Ids of records associated with a {kind}",
    )(list_associations)


def _to_type(plural: str) -> ObjectType:
    kind = BY_PLURAL.get(plural)
    if kind is None:
        raise ValidationFailed(
            f"Unknown object type {plural!r}.", details={"allowed": sorted(BY_PLURAL)}
        )
    return kind


for _kind in PLURALS:
    _register(_kind)
