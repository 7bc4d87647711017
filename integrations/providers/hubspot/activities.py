"""Notes and tasks on HubSpot: the ``notes`` and ``tasks`` engagement objects (CRM v3). Pure
functions, no I/O.

A create sends the properties and the records to log the activity on in one call (the v3
create body's ``associations``, with the HUBSPOT_DEFINED type ids below), so an activity is
never left unattached. HubSpot requires ``hs_timestamp`` on both: a note's place on the
timeline, a task's due time. A task's due date is sent as noon UTC of that day (the same
calendar day from UTC-11 to UTC+11, so HubSpot shows the date given); a task without one is
due when it is created. Reads name the first associated contact, company and deal.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, Final

from hubspot.crm.objects import AssociationSpec, PublicAssociationsForObject, PublicObjectId

from ..unified import (
    ActivityIn,
    ActivityType,
    AnyActivity,
    Note,
    NoteIn,
    Task,
    TaskIn,
)
from .mapping import parse_moment, text_or_none
from .wire import HubSpotObject

# HUBSPOT_DEFINED association type ids, activity -> record (Associations v4, type ids).
ASSOCIATION_TYPES: Final[dict[ActivityType, dict[str, int]]] = {
    "note": {"contact_id": 202, "company_id": 190, "deal_id": 214},
    "task": {"contact_id": 204, "company_id": 192, "deal_id": 216},
}
# Unified link field -> the association key of a read (``associations=contacts,...``).
LINKS: Final[dict[str, str]] = {
    "contact_id": "contacts",
    "company_id": "companies",
    "deal_id": "deals",
}
TASK_STATUSES: Final[dict[str, str]] = {"not_started": "NOT_STARTED", "completed": "COMPLETED"}
TASK_PRIORITIES: Final[dict[str, str]] = {"low": "LOW", "medium": "MEDIUM", "high": "HIGH"}
DUE_TIME: Final = time(12, 0, tzinfo=UTC)


def hubspot_time(moment: datetime) -> str:
    """A datetime as HubSpot writes them: UTC, milliseconds, ``Z`` (naive means UTC)."""
    utc = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def due_time(due: date | None, *, now: datetime) -> str:
    return hubspot_time(datetime.combine(due, DUE_TIME) if due is not None else now)


def activity_properties(data: NoteIn | TaskIn, *, now: datetime) -> dict[str, Any]:
    """The properties to create the activity with: ``data.properties`` as given, the unified
    fields over them (``now``: the timestamp of a note or task that names none)."""
    properties: dict[str, Any] = dict(data.properties)
    if isinstance(data, NoteIn):
        properties["hs_note_body"] = data.body
        properties["hs_timestamp"] = hubspot_time(data.timestamp or now)
    else:
        properties["hs_task_subject"] = data.subject
        properties["hs_task_status"] = TASK_STATUSES[data.status]
        properties["hs_timestamp"] = due_time(data.due_date, now=now)
        if data.body is not None:
            properties["hs_task_body"] = data.body
        if data.priority is not None:
            properties["hs_task_priority"] = TASK_PRIORITIES[data.priority]
    if data.owner_id is not None:
        properties["hubspot_owner_id"] = data.owner_id
    return properties


def linked_ids(data: ActivityIn) -> dict[str, str]:
    """The records the input logs the activity on: unified link field -> id."""
    found = {"contact_id": data.contact_id, "company_id": data.company_id, "deal_id": data.deal_id}
    return {name: value for name, value in found.items() if value}


def activity_associations(activity_type: ActivityType, data: ActivityIn) -> list[Any]:
    """The create body's ``associations``: one default association per linked record."""
    types = ASSOCIATION_TYPES[activity_type]
    return [
        PublicAssociationsForObject(
            to=PublicObjectId(id=record_id),
            types=[
                AssociationSpec(
                    association_category="HUBSPOT_DEFINED", association_type_id=types[name]
                )
            ],
        )
        for name, record_id in linked_ids(data).items()
    ]


def _first_linked(obj: HubSpotObject, key: str) -> str | None:
    linked = obj.associations.get(key)
    return linked.results[0].id if linked is not None and linked.results else None


def _snake(value: str | None) -> str | None:
    text = text_or_none(value)
    return text.lower() if text is not None and text.upper() != "NONE" else None


def to_activity(activity_type: ActivityType, obj: HubSpotObject) -> AnyActivity:
    """A HubSpot note or task as the unified activity; ``properties`` is HubSpot's."""
    props = obj.properties
    common: dict[str, Any] = {
        "id": obj.id,
        "created_at": obj.created_at,
        "updated_at": obj.updated_at,
        "archived": obj.archived,
        "properties": dict(props),
        "owner_id": text_or_none(props.get("hubspot_owner_id")),
        **{name: _first_linked(obj, key) for name, key in LINKS.items()},
    }
    if activity_type == "note":
        return Note(
            **common,
            body=text_or_none(props.get("hs_note_body")),
            timestamp=parse_moment(props.get("hs_timestamp")),
        )
    due = parse_moment(props.get("hs_timestamp"))
    return Task(
        **common,
        subject=text_or_none(props.get("hs_task_subject")),
        body=text_or_none(props.get("hs_task_body")),
        due_date=due.astimezone(UTC).date() if due is not None else None,
        status=_snake(props.get("hs_task_status")),
        priority=_snake(props.get("hs_task_priority")),
    )


def with_links(activity: AnyActivity, data: ActivityIn) -> AnyActivity:
    """The created activity naming the records it was logged on (HubSpot's create answer
    carries no associations)."""
    missing = {k: v for k, v in linked_ids(data).items() if getattr(activity, k) is None}
    return activity.model_copy(update=missing) if missing else activity
