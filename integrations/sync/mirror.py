"""The local mirror (``CrmRecord``): upserts of provider records and deletes, in bulk.

Every writer of the mirror comes through here: the sync engine (a page at a time, inside the
transaction that also saves the cursor), targeted fetches after a webhook, and the outbox after
a successful write. A record never goes back in time: an upsert whose ``updated_at`` is older
than the mirror's copy is skipped, so a slow full read cannot undo what a webhook fetched.

On PostgreSQL an upsert is one ``INSERT ... ON CONFLICT DO UPDATE`` per batch, its rows read from
a single JSON parameter (``jsonb_to_recordset``), with the same conditions as the other
databases' path: the ORM's ``bulk_update`` builds a ``CASE WHEN`` per row and field, its
``bulk_create`` binds each column as an array the driver quotes value by value, and the lookup of
the batch's rows went by the planner's statistics, which a fresh connection is not in yet (each
page then read all of the connection's rows); together they cost more than reading the page
from the provider.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from ..models import CrmRecord
from ..providers.unified import AnyRecord, ObjectType, Record

# Record attributes that are not unified fields (they have columns or live in ``raw``).
_NOT_FIELDS = frozenset({"id", "object_type", "created_at", "updated_at", "archived", "properties"})


@dataclass(frozen=True, slots=True)
class Deleted:
    """A record the provider reports deleted (archived / in the recycle bin)."""

    external_id: str
    deleted_at: datetime | None = None
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class MirrorCounts:
    seen: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0

    def add(self, other: MirrorCounts) -> None:
        self.seen += other.seen
        self.created += other.created
        self.updated += other.updated
        self.deleted += other.deleted
        self.unchanged += other.unchanged


# PostgreSQL: one statement per batch. The rows travel as one JSON parameter; the unique
# constraint finds each one's mirror row (an upsert), so no lookup depends on the planner's
# statistics (a fresh connection's rows are not in them yet, and a lookup by a list of ids then
# filtered the connection's every row, for every page); the conditions are the Python path's.
_UPSERT_SQL = """
INSERT INTO {table} AS r (connection_id, object_type, external_id, fields, raw,
    remote_created_at, remote_updated_at, deleted_at, created_at, synced_at)
SELECT %(connection)s, %(object_type)s, v.external_id, v.fields, v.raw,
    v.remote_created_at, v.remote_updated_at, CASE WHEN v.archived THEN %(now)s END,
    %(now)s, %(now)s
FROM jsonb_to_recordset(%(rows)s::jsonb) AS v(external_id text, fields jsonb, raw jsonb,
    remote_created_at timestamptz, remote_updated_at timestamptz, archived boolean)
ON CONFLICT (connection_id, object_type, external_id) DO UPDATE SET
    fields = excluded.fields,
    raw = excluded.raw,
    deleted_at = CASE WHEN excluded.deleted_at IS NOT NULL
        THEN COALESCE(r.deleted_at, excluded.deleted_at) END,
    remote_updated_at = COALESCE(excluded.remote_updated_at, r.remote_updated_at),
    remote_created_at = COALESCE(excluded.remote_created_at, r.remote_created_at),
    synced_at = excluded.synced_at
WHERE NOT COALESCE(excluded.remote_updated_at < r.remote_updated_at, false)
    AND NOT (
        r.fields = excluded.fields
        AND r.raw = excluded.raw
        AND r.deleted_at IS NOT DISTINCT FROM (CASE WHEN excluded.deleted_at IS NOT NULL
            THEN COALESCE(r.deleted_at, excluded.deleted_at) END)
        AND r.remote_updated_at IS NOT DISTINCT FROM excluded.remote_updated_at
    )
RETURNING (xmax = 0)
"""


def _in_one_statement() -> bool:
    return db.vendor == "postgresql"


def _upsert_postgresql(
    connection_id: uuid.UUID, object_type: ObjectType, records: Iterable[Record], now: datetime
) -> tuple[int, int]:
    """``mirror_upsert``'s writes in one statement: (created, updated)."""
    rows = [
        {
            "external_id": record.id,
            "fields": unified_fields(record),
            "raw": dict(record.properties),
            "remote_created_at": record.created_at,
            "remote_updated_at": record.updated_at,
            "archived": record.archived,
        }
        for record in records
    ]
    sql = _UPSERT_SQL.format(table=db.ops.quote_name(CrmRecord._meta.db_table))
    params = {
        "connection": connection_id,
        "object_type": object_type,
        "now": now,
        "rows": orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS).decode(),
    }
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        written = [bool(inserted) for (inserted,) in cursor.fetchall()]
    created = sum(written)
    return created, len(written) - created


def unified_fields(record: Record) -> dict[str, Any]:
    """The unified fields of a record as JSON-ready values (dates as ISO strings)."""
    return record.model_dump(mode="json", exclude=set(_NOT_FIELDS))


def _older(incoming: datetime | None, current: datetime | None) -> bool:
    return incoming is not None and current is not None and incoming < current


def mirror_upsert(
    *,
    connection_id: uuid.UUID,
    object_type: ObjectType,
    records: Sequence[Record],
    now: datetime | None = None,
) -> MirrorCounts:
    """Insert or update ``records`` (one object type) in the mirror; call inside or outside a
    transaction. A record seen again after a delete is live again (restored)."""
    counts = MirrorCounts(seen=len(records))
    if not records:
        return counts
    now = now or timezone.now()
    latest: dict[str, Record] = {}
    for record in records:  # the same id twice in one batch: keep the newest
        held = latest.get(record.id)
        if held is None or not _older(record.updated_at, held.updated_at):
            latest[record.id] = record
    if _in_one_statement():
        counts.created, counts.updated = _upsert_postgresql(
            connection_id, object_type, latest.values(), now
        )
        counts.unchanged = len(latest) - counts.created - counts.updated
        return counts
    with transaction.atomic():
        existing = {
            row.external_id: row
            for row in CrmRecord.objects.select_for_update().filter(
                connection_id=connection_id, object_type=object_type, external_id__in=list(latest)
            )
        }
        new_rows: list[CrmRecord] = []
        changed: list[CrmRecord] = []
        for external_id, record in latest.items():
            fields, raw = unified_fields(record), dict(record.properties)
            row = existing.get(external_id)
            if row is None:
                new_rows.append(
                    CrmRecord(
                        connection_id=connection_id,
                        object_type=object_type,
                        external_id=external_id,
                        fields=fields,
                        raw=raw,
                        remote_created_at=record.created_at,
                        remote_updated_at=record.updated_at,
                        deleted_at=now if record.archived else None,
                        created_at=now,
                        synced_at=now,
                    )
                )
                continue
            if _older(record.updated_at, row.remote_updated_at):
                counts.unchanged += 1
                continue
            deleted_at = (row.deleted_at or now) if record.archived else None
            if (
                row.fields == fields
                and row.raw == raw
                and row.deleted_at == deleted_at
                and row.remote_updated_at == record.updated_at
            ):
                counts.unchanged += 1
                continue
            row.fields, row.raw, row.deleted_at = fields, raw, deleted_at
            row.remote_updated_at = record.updated_at or row.remote_updated_at
            row.remote_created_at = record.created_at or row.remote_created_at
            row.synced_at = now
            changed.append(row)
        CrmRecord.objects.bulk_create(new_rows, batch_size=500)
        CrmRecord.objects.bulk_update(
            changed,
            ["fields", "raw", "deleted_at", "remote_updated_at", "remote_created_at", "synced_at"],
            batch_size=500,
        )
    counts.created, counts.updated = len(new_rows), len(changed)
    return counts


def mirror_mark_deleted(
    *,
    connection_id: uuid.UUID,
    object_type: ObjectType,
    deleted: Iterable[Deleted],
    now: datetime | None = None,
) -> MirrorCounts:
    """Mark records deleted (kept, with ``deleted_at``). A record the mirror never saw is
    stored as a deleted row when the provider sent its payload, so nothing it said is lost."""
    now = now or timezone.now()
    by_id = {d.external_id: d for d in deleted}
    counts = MirrorCounts(seen=len(by_id))
    if not by_id:
        return counts
    with transaction.atomic():
        rows = {
            row.external_id: row
            for row in CrmRecord.objects.select_for_update().filter(
                connection_id=connection_id, object_type=object_type, external_id__in=list(by_id)
            )
        }
        changed: list[CrmRecord] = []
        new_rows: list[CrmRecord] = []
        for external_id, gone in by_id.items():
            row = rows.get(external_id)
            if row is None:
                if gone.raw is not None:
                    new_rows.append(
                        CrmRecord(
                            connection_id=connection_id,
                            object_type=object_type,
                            external_id=external_id,
                            raw=gone.raw,
                            deleted_at=gone.deleted_at or now,
                            created_at=now,
                            synced_at=now,
                        )
                    )
                else:
                    counts.unchanged += 1
                continue
            if row.deleted_at is not None:
                counts.unchanged += 1
                continue
            row.deleted_at = gone.deleted_at or now
            row.synced_at = now
            changed.append(row)
        CrmRecord.objects.bulk_update(changed, ["deleted_at", "synced_at"], batch_size=500)
        CrmRecord.objects.bulk_create(new_rows, batch_size=500)
    counts.deleted = len(changed)
    return counts


async def amirror_upsert(
    *, connection_id: uuid.UUID, object_type: ObjectType, records: Sequence[AnyRecord]
) -> MirrorCounts:
    """``mirror_upsert`` from async code (the API, the outbox after a write)."""
    return await sync_to_async(mirror_upsert)(
        connection_id=connection_id, object_type=object_type, records=records
    )


async def amirror_mark_deleted(
    *, connection_id: uuid.UUID, object_type: ObjectType, deleted: Sequence[Deleted]
) -> MirrorCounts:
    return await sync_to_async(mirror_mark_deleted)(
        connection_id=connection_id, object_type=object_type, deleted=deleted
    )


def mirror_purge(
    *, connection_id: uuid.UUID, object_type: ObjectType, external_ids: Sequence[str]
) -> int:
    """Forget who a record was (a privacy deletion): keep the row and its deletion time, drop
    its fields and payload. Returns how many rows were purged."""
    return CrmRecord.objects.filter(
        connection_id=connection_id, object_type=object_type, external_id__in=list(external_ids)
    ).update(fields={}, raw={})
