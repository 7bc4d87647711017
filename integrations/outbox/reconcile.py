"""Uncertain creates: before a create whose earlier attempt got no answer is sent again, look
for the record it may have made, so that it is never created twice.

A record is this write's when it carries the write's id in the write-id property (every create
is stamped with it when the provider has one configured), or, failing that, when its natural key
matches (a contact's email, a company's domain) and it was created after the write was stored
(minus ``OUTBOX_RECONCILE_SKEW_SECONDS`` for clock skew), so an older record that merely shares
the key is not taken for ours. A write with neither cannot be checked: the caller dead-letters it
for a person instead of sending it blindly again. Notes and tasks have no natural key: only the
property finds them (a Salesforce note cannot carry it, see ``policy.NO_WRITE_ID``).

Searches go through the connection's ``CrmClient`` (and so its rate-limit budget): one ``in``
search per chunk of writes finds "none of these exist" in one call; when it finds some and the
provider did not return the property (HubSpot returns only the properties a search names), each
write of the chunk is looked up alone.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from django.conf import settings

from core.errors import AppError, ErrorCode

from ..models import CrmWrite
from ..providers.base import CrmClient
from ..providers.unified import (
    AnyRecord,
    AnyWritten,
    ObjectType,
    SearchFilter,
    SearchQuery,
    WritableType,
    is_activity,
)
from . import policy

IN_CHUNK: Final = 50  # values per ``in`` filter
SEARCH_LIMIT: Final = 100
MAX_PAGES: Final = 5  # per search; more matches than this means the key is not a key
# HubSpot's answer to a create whose unique value (a contact's email) exists already.
EXISTING_ID: Final = re.compile(r"Existing ID: ?([A-Za-z0-9]+)")


@dataclass(slots=True)
class Reconciled:
    """The writes looked up: found (with the record), missing (safe to send again),
    unverifiable (no way to look), or not looked up because a search failed (``error``)."""

    found: list[tuple[CrmWrite, AnyWritten]] = field(default_factory=list)
    missing: list[CrmWrite] = field(default_factory=list)
    unverifiable: list[CrmWrite] = field(default_factory=list)
    unchecked: list[CrmWrite] = field(default_factory=list)
    error: AppError | None = None


def natural_key(write: CrmWrite) -> tuple[str, str] | None:
    """``(unified field, value)`` a create can be found by, if its type and payload have one."""
    name = policy.NATURAL_KEYS.get(write.object_type)  # type: ignore[call-overload]
    value = write.payload.get(name) if name else None
    if name and isinstance(value, str) and value.strip():
        return name, value.strip()
    return None


def _created_for(record: AnyWritten, write: CrmWrite) -> bool:
    if record.created_at is None:
        return True
    skew = timedelta(seconds=settings.OUTBOX_RECONCILE_SKEW_SECONDS)
    return record.created_at >= write.created_at - skew


Keepalive = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


async def _search_page(
    client: CrmClient, object_type: WritableType, query: SearchQuery
) -> tuple[list[AnyWritten], str | None, AppError | None]:
    """One page: records (or activities) found, the next cursor, or the search's error."""
    if is_activity(object_type):
        activities = await client.search_activities(object_type, query)
        if activities.error is not None:
            return [], None, activities.error
        return list(activities.unwrap().results), activities.unwrap().next_cursor, None
    records = await client.search(object_type, query)
    if records.error is not None:
        return [], None, records.error
    return list(records.unwrap().results), records.unwrap().next_cursor, None


async def _search_all(
    client: CrmClient,
    object_type: WritableType,
    filters: list[SearchFilter],
    keepalive: Keepalive = _nothing,
) -> tuple[list[AnyWritten], AppError | None]:
    found: list[AnyWritten] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        await keepalive()
        query = SearchQuery(filter_groups=[filters], limit=SEARCH_LIMIT, cursor=cursor)
        results, cursor, error = await _search_page(client, object_type, query)
        if error is not None:
            return found, error
        found.extend(results)
        if not cursor:
            break
    return found, None


async def _by_write_id(
    client: CrmClient,
    object_type: WritableType,
    prop: str,
    writes: list[CrmWrite],
    result: Reconciled,
    taken: set[str],
    keepalive: Keepalive,
) -> list[CrmWrite]:
    """Look ``writes`` up by the write-id property; returns those not found."""
    left: list[CrmWrite] = []
    for start in range(0, len(writes), IN_CHUNK):
        chunk = writes[start : start + IN_CHUNK]
        ids = [str(w.pk) for w in chunk]
        records, error = await _search_all(
            client, object_type, [SearchFilter(field=prop, operator="in", value=ids)], keepalive
        )
        if error is not None:
            result.error = error
            result.unchecked.extend(chunk)
            continue
        by_id = {str(r.properties.get(prop) or ""): r for r in records}
        for write in chunk:
            record = by_id.get(str(write.pk))
            if record is None and records and "" in by_id:
                # Found some, but they do not say whose they are: ask for this one alone.
                alone, error = await _search_all(
                    client, object_type, [SearchFilter(field=prop, value=str(write.pk))], keepalive
                )
                if error is not None:
                    result.error = error
                    result.unchecked.append(write)
                    continue
                record = alone[0] if alone else None
            if record is not None and record.id not in taken:
                taken.add(record.id)
                result.found.append((write, record))
            else:
                left.append(write)
    return left


async def _by_natural_key(
    client: CrmClient,
    object_type: WritableType,
    writes: list[CrmWrite],
    result: Reconciled,
    taken: set[str],
    keepalive: Keepalive,
) -> list[CrmWrite]:
    """Look ``writes`` (each with a natural key) up by it; returns those not found."""
    left: list[CrmWrite] = []
    name = policy.NATURAL_KEYS[object_type]
    for start in range(0, len(writes), IN_CHUNK):
        chunk = writes[start : start + IN_CHUNK]
        values = sorted({key[1] for w in chunk if (key := natural_key(w))})
        records, error = await _search_all(
            client, object_type, [SearchFilter(field=name, operator="in", value=values)], keepalive
        )
        if error is not None:
            result.error = error
            result.unchecked.extend(chunk)
            continue
        candidates = sorted(
            records,
            key=lambda r: (r.created_at is None, r.created_at.timestamp() if r.created_at else 0.0),
        )
        for write in sorted(chunk, key=lambda w: w.created_at):
            key = natural_key(write)
            wanted = key[1].lower() if key else ""
            match = next(
                (
                    r
                    for r in candidates
                    if r.id not in taken
                    and str(getattr(r, name, "") or "").lower() == wanted
                    and _created_for(r, write)
                ),
                None,
            )
            if match is None:
                left.append(write)
            else:
                taken.add(match.id)
                result.found.append((write, match))
    return left


async def reconcile(
    client: CrmClient,
    *,
    provider: str,
    object_type: WritableType,
    writes: Sequence[CrmWrite],
    keepalive: Keepalive = _nothing,
) -> Reconciled:
    """Look up uncertain creates of one type on one connection (module docstring).
    ``keepalive`` runs before each search (the caller renews its lease there)."""
    result = Reconciled()
    taken: set[str] = set()
    prop = policy.write_id_property(provider, object_type)
    left = list(writes)
    if prop:
        left = await _by_write_id(client, object_type, prop, left, result, taken, keepalive)
    keyed = [w for w in left if natural_key(w) is not None]
    not_found = (
        await _by_natural_key(client, object_type, keyed, result, taken, keepalive) if keyed else []
    )
    keyed_ids = {w.pk for w in keyed}
    for write in left:
        if write.pk in keyed_ids:
            continue
        # Without a natural key only the property can tell; without it nothing can.
        (result.missing if prop else result.unverifiable).append(write)
    result.missing.extend(not_found)
    return result


async def adopt_conflict(
    client: CrmClient, object_type: ObjectType, write: CrmWrite, error: AppError
) -> AnyRecord | None:
    """After an uncertain create's resend was refused as a duplicate ("Contact already exists.
    Existing ID: 123"), the existing record when it is this write's own (made since the write
    was stored: the search did not see it yet)."""
    if error.code != ErrorCode.CONFLICT:
        return None
    match = EXISTING_ID.search(error.message)
    if match is None:
        return None
    got = await client.get(object_type, match.group(1))
    if got.error is not None:
        return None
    record = got.unwrap()
    return record if _created_for(record, write) else None
