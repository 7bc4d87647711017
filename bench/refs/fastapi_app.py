"""The reference: a bare FastAPI + SQLAlchemy (async) app serving Switchboard's two list
endpoints from the same PostgreSQL tables, with the same JSON.

It does what a lean hand-written service would do for the same answer: look the Bearer key up
by its prefix (with its organisation) and compare its hash, run the same page query, validate
the rows with Pydantic models and answer the envelope. No throttling, no request log, no
sessions: that is what "bare" means, and what Switchboard's figures are compared with.

    DATABASE_URL=postgres://... uvicorn bench.refs.fastapi_app:app --workers 2

``BENCH_REF_DRIVER`` picks SQLAlchemy's driver: ``psycopg`` (Switchboard's own, the default)
or ``asyncpg``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import JSON, ForeignKey, String, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

API = "/api/v1"
_driver = os.environ.get("BENCH_REF_DRIVER", "psycopg")
_url = os.environ["DATABASE_URL"].replace("postgres://", f"postgresql+{_driver}://", 1)
engine = create_async_engine(_url, pool_size=10, max_overflow=0)
Session = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB().with_variant(JSON(), "sqlite")}


class Organization(Base):
    __tablename__ = "accounts_organization"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))


class ApiKey(Base):
    __tablename__ = "accounts_apikey"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts_organization.id"))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None]
    organization: Mapped[Organization] = relationship(lazy="joined")


class Workflow(Base):
    __tablename__ = "workflows_workflow"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64))


class WorkflowRun(Base):
    __tablename__ = "workflows_workflowrun"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID]
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows_workflow.id"))
    workflow: Mapped[Workflow] = relationship(lazy="joined")
    graph: Mapped[str]
    status: Mapped[str]
    trigger: Mapped[str]
    requested_by: Mapped[str]
    connection_id: Mapped[uuid.UUID]
    input: Mapped[dict[str, Any]]
    output: Mapped[dict[str, Any] | None]
    error_code: Mapped[str]
    error_message: Mapped[str]
    attempt: Mapped[int]
    retry_of_id: Mapped[uuid.UUID | None]
    cancel_requested: Mapped[bool]
    llm_model: Mapped[str]
    tokens_in: Mapped[int]
    tokens_out: Mapped[int]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Connection(Base):
    __tablename__ = "integrations_connection"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    organization_id: Mapped[uuid.UUID]


class CrmRecord(Base):
    __tablename__ = "integrations_crmrecord"
    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[uuid.UUID]
    object_type: Mapped[str]
    external_id: Mapped[str]
    fields: Mapped[dict[str, Any]]
    raw: Mapped[dict[str, Any]]
    remote_created_at: Mapped[datetime | None]
    remote_updated_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    synced_at: Mapped[datetime]


class ErrorOut(BaseModel):
    code: str
    message: str


class RunOut(BaseModel):
    id: uuid.UUID
    workflow: str
    graph: str
    status: str
    trigger: str
    requested_by: str
    connection_id: uuid.UUID
    input: dict[str, Any]
    output: Any
    error: ErrorOut | None
    attempt: int
    retry_of: uuid.UUID | None
    cancel_requested: bool
    llm_model: str
    tokens_in: int
    tokens_out: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    url: str
    events_url: str


class RecordOut(BaseModel):
    id: str
    object_type: str
    fields: dict[str, Any]
    properties: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    deleted_at: datetime | None
    synced_at: datetime


class Pagination(BaseModel):
    limit: int
    offset: int | None = None
    next_cursor: str | None = None
    has_more: bool
    total: int | None = None


class Meta(BaseModel):
    request_id: str | None
    pagination: Pagination | None


class RunPage(BaseModel):
    success: bool
    data: list[RunOut]
    error: None
    meta: Meta


class RecordPage(BaseModel):
    success: bool
    data: list[RecordOut]
    error: None
    meta: Meta


# FastAPI serialises a declared response_model straight to JSON bytes with Pydantic.
app = FastAPI()


async def session() -> Any:
    async with Session() as s:
        yield s


DB = Annotated[AsyncSession, Depends(session)]


async def organization_id(db: DB, authorization: Annotated[str, Header()] = "") -> uuid.UUID:
    scheme, _, key = authorization.partition(" ")
    parts = key.split("_")
    if scheme.lower() != "bearer" or len(parts) < 3:
        raise HTTPException(401)
    found = await db.scalar(
        select(ApiKey).where(ApiKey.prefix == f"{parts[0]}_{parts[1]}", ApiKey.revoked_at.is_(None))
    )
    digest = hashlib.sha256(key.encode()).hexdigest()
    if found is None or not hmac.compare_digest(digest, found.key_hash):
        raise HTTPException(401)
    return found.organization.id


Org = Annotated[uuid.UUID, Depends(organization_id)]


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@app.get(f"{API}/runs", response_model=RunPage)
async def runs(db: DB, org: Org, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    query = (
        select(WorkflowRun)
        .where(WorkflowRun.organization_id == org)
        .order_by(WorkflowRun.created_at.desc(), WorkflowRun.id.desc())
        .limit(limit + 1)
    )
    rows = list(await db.scalars(query))
    has_more = len(rows) > limit
    rows = rows[:limit]
    data = []
    for r in rows:
        duration = None
        if r.started_at is not None and r.finished_at is not None:
            duration = round((r.finished_at - r.started_at).total_seconds() * 1000, 1)
        url = f"{API}/runs/{r.id}"
        data.append(
            RunOut(
                id=r.id,
                workflow=r.workflow.key,
                graph=r.graph,
                status=r.status,
                trigger=r.trigger,
                requested_by=r.requested_by,
                connection_id=r.connection_id,
                input=r.input,
                output=r.output,
                error=ErrorOut(code=r.error_code, message=r.error_message)
                if r.error_code
                else None,
                attempt=r.attempt,
                retry_of=r.retry_of_id,
                cancel_requested=r.cancel_requested,
                llm_model=r.llm_model,
                tokens_in=r.tokens_in,
                tokens_out=r.tokens_out,
                created_at=r.created_at,
                started_at=r.started_at,
                finished_at=r.finished_at,
                duration_ms=duration,
                url=url,
                events_url=f"{url}/events",
            )
        )
    next_cursor = None
    if has_more and rows:
        last = rows[-1]
        next_cursor = _cursor(f'["{last.created_at.isoformat()}","{last.id}"]'.encode())
    return {
        "success": True,
        "data": data,
        "error": None,
        "meta": {
            "request_id": uuid.uuid4().hex,
            "pagination": {"limit": limit, "next_cursor": next_cursor, "has_more": has_more},
        },
    }


@app.get(f"{API}/connections/{{connection_id}}/records", response_model=RecordPage)
async def records(
    db: DB,
    org: Org,
    connection_id: uuid.UUID,
    object: str,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    found = await db.scalar(
        select(Connection.id).where(
            Connection.id == connection_id, Connection.organization_id == org
        )
    )
    if found is None:
        raise HTTPException(404)
    query = select(CrmRecord).where(
        CrmRecord.connection_id == connection_id,
        CrmRecord.object_type == object,
        CrmRecord.deleted_at.is_(None),
    )
    if cursor:
        after = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        query = query.where(CrmRecord.id > after)
    rows = list(await db.scalars(query.order_by(CrmRecord.id).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    data = [
        RecordOut(
            id=r.external_id,
            object_type=r.object_type,
            fields=r.fields,
            properties=r.raw,
            created_at=r.remote_created_at,
            updated_at=r.remote_updated_at,
            deleted_at=r.deleted_at,
            synced_at=r.synced_at,
        )
        for r in rows
    ]
    next_cursor = _cursor(str(rows[-1].id).encode()) if has_more and rows else None
    return {
        "success": True,
        "data": data,
        "error": None,
        "meta": {
            "request_id": uuid.uuid4().hex,
            "pagination": {"limit": limit, "next_cursor": next_cursor, "has_more": has_more},
        },
    }
