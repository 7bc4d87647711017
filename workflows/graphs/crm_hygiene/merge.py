"""Turning decided groups and fixes into proposed writes.

A merge keeps one record (the primary), archives the others and gives the primary the
fields it lacks from them. The archives come before the primary's update: a contact's email
is unique at HubSpot, so the primary can take a duplicate's address only once the duplicate
is gone. A duplicate company's contacts and deals are pointed at the primary first, so
archiving it strands nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ...tools import ProposedWrite
from .keys import clean_domain, clean_email
from .state import DuplicateGroup, Fix, HygieneType, Member

# The unified fields a merge may fill in on the primary, in the order they are shown.
FILL_FIELDS: dict[HygieneType, tuple[str, ...]] = {
    "contact": (
        "email",
        "first_name",
        "last_name",
        "phone",
        "job_title",
        "lifecycle_stage",
        "company_id",
        "owner_id",
    ),
    "company": ("name", "domain", "industry", "employees"),
}
_FAR_FUTURE = "9999"


def _filled(value: Any) -> bool:
    return value is not None and (not isinstance(value, str) or bool(value.strip()))


def completeness(object_type: HygieneType, fields: dict[str, Any]) -> int:
    return sum(1 for name in FILL_FIELDS[object_type] if _filled(fields.get(name)))


def pick_primary(
    object_type: HygieneType, members: list[Member], how: Literal["oldest", "most_complete"]
) -> str:
    """The record a merge keeps. Unknown creation times count as newest; the id breaks ties
    so the choice is the same on every run."""

    def oldest(m: Member) -> str:
        return m.created_at or _FAR_FUTURE

    def key(m: Member) -> tuple[Any, ...]:
        full = -completeness(object_type, m.fields)
        return (oldest(m), full, m.id) if how == "oldest" else (full, oldest(m), m.id)

    return min(members, key=key).id


def _clean(name: str, value: Any) -> Any:
    if name == "email":
        return clean_email(value) or value
    if name == "domain":
        return clean_domain(value) or value
    return value


def fill_in(group: DuplicateGroup, primary_id: str) -> dict[str, Any]:
    """The fields the primary lacks, each from the first duplicate (group order) that has it."""
    primary = next(m for m in group.members if m.id == primary_id)
    others = [m for m in group.members if m.id != primary_id]
    payload: dict[str, Any] = {}
    for name in FILL_FIELDS[group.object_type]:
        if _filled(primary.fields.get(name)):
            continue
        for other in others:
            value = other.fields.get(name)
            if _filled(value) and not (name == "company_id" and value == primary_id):
                payload[name] = _clean(name, value)
                break
    return payload


def merge_writes(
    group: DuplicateGroup,
    primary_id: str,
    *,
    fixes: dict[tuple[str, str], dict[str, Any]],
    moved: list[tuple[str, str]],
    reason: str,
) -> list[ProposedWrite]:
    """The writes of one merge: re-point ``moved`` records ((object type, id) of contacts
    and deals on a duplicate company), archive the duplicates, update the primary."""
    writes = [
        ProposedWrite(
            operation="update",
            object_type=kind,  # type: ignore[arg-type]
            record_id=record_id,
            payload={"company_id": primary_id},
            reason=f"{group.id}: its company is merged into {primary_id}",
        )
        for kind, record_id in moved
    ]
    writes += [
        ProposedWrite(
            operation="archive",
            object_type=group.object_type,
            record_id=m.id,
            reason=f"{group.id}: duplicate of {primary_id} ({reason})"[:2000],
        )
        for m in group.members
        if m.id != primary_id
    ]
    payload = fill_in(group, primary_id) | fixes.get((group.object_type, primary_id), {})
    if payload:
        writes.append(
            ProposedWrite(
                operation="update",
                object_type=group.object_type,
                record_id=primary_id,
                payload=payload,
                reason=f"{group.id}: kept; takes what its duplicates knew",
            )
        )
    return writes


def fix_payloads(fixes: list[Fix]) -> dict[tuple[str, str], dict[str, Any]]:
    """Fixes by record: (object type, id) -> the fields to write."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for fix in fixes:
        found.setdefault((fix.object_type, fix.record_id), {})[fix.field] = fix.after
    return found


def fix_writes(
    fixes: dict[tuple[str, str], dict[str, Any]], done: set[tuple[str, str]]
) -> list[ProposedWrite]:
    """Updates for the fixed records no merge has already written or archived."""
    return [
        ProposedWrite(
            operation="update",
            object_type=kind,  # type: ignore[arg-type]
            record_id=record_id,
            payload=payload,
            reason="normalise " + ", ".join(sorted(payload)),
        )
        for (kind, record_id), payload in fixes.items()
        if (kind, record_id) not in done
    ]


def iso(moment: datetime | None) -> str | None:
    """A creation time as text that sorts as the time does (always with microseconds, UTC
    as the mirror stores it)."""
    return moment.isoformat(timespec="microseconds") if moment is not None else None
