"""Notes and tasks on Salesforce: the ``Task`` and classic ``Note`` sObjects. Pure functions,
no I/O.

A task is logged on one contact (``WhoId``) and one account or opportunity (``WhatId``, which
takes one record: the deal when given, else the company; Salesforce derives the task's
``AccountId`` from either). A note hangs off one record, ``ParentId``: the deal, else the
company, else the contact; its ``Title`` is the body's first line, cut to 80 characters. A
classic note's time is its ``CreatedDate`` (it cannot be set, so ``NoteIn.timestamp`` is not
sent), and no custom field can be added to ``Note`` (so notes carry no write-id field).
``Note.Body`` and ``Task.Description`` hold 32,000 characters: longer text is refused here,
before any call. Priorities: low, medium, high are Salesforce's Low, Normal, High.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from core.errors import ValidationFailed

from ..unified import ActivityIn, ActivityType, AnyActivity, Note, NoteIn, Task, TaskIn
from .mapping import json_value, parse_date, parse_datetime, text_or_none
from .soql import is_record_id

LONG_TEXT_MAX: Final = 32_000
TITLE_MAX: Final = 80
TASK_STATUSES: Final[dict[str, str]] = {"not_started": "Not Started", "completed": "Completed"}
TASK_PRIORITIES: Final[dict[str, str]] = {"low": "Low", "medium": "Normal", "high": "High"}
READ_PRIORITIES: Final[dict[str, str]] = {v: k for k, v in TASK_PRIORITIES.items()}
# Key prefixes of the record ids an activity links to.
PREFIXES: Final[dict[str, str]] = {"003": "contact_id", "001": "company_id", "006": "deal_id"}


def _refuse(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Salesforce cannot store this: {message}.", details={"fields": {field: message}}
    )


def _check_links(data: ActivityIn) -> None:
    for name in ("contact_id", "company_id", "deal_id"):
        value = getattr(data, name)
        if value is not None and not is_record_id(value):
            raise _refuse(name, "not a Salesforce record id")


def title_of(body: str) -> str:
    """A note's title: the body's first non-blank line, at most 80 characters."""
    first = next((line.strip() for line in body.splitlines() if line.strip()), "")
    return first[:TITLE_MAX] or "Note"


def activity_fields(data: NoteIn | TaskIn) -> dict[str, Any]:
    """The fields to create the ``Note`` or ``Task`` with (``data.properties`` as given, the
    unified fields over them). Raises ``ValidationFailed`` for what Salesforce would refuse."""
    _check_links(data)
    fields: dict[str, Any] = {k: json_value(v) for k, v in data.properties.items()}
    fields.pop("attributes", None)
    if data.owner_id is not None:
        fields["OwnerId"] = data.owner_id
    if isinstance(data, NoteIn):
        if len(data.body) > LONG_TEXT_MAX:
            raise _refuse("body", f"a note's body holds at most {LONG_TEXT_MAX:,} characters")
        fields |= {"Title": title_of(data.body), "Body": data.body}
        fields["ParentId"] = data.deal_id or data.company_id or data.contact_id
        return fields
    if data.body is not None and len(data.body) > LONG_TEXT_MAX:
        raise _refuse("body", f"a task's description holds at most {LONG_TEXT_MAX:,} characters")
    fields |= {"Subject": data.subject, "Status": TASK_STATUSES[data.status]}
    if data.body is not None:
        fields["Description"] = data.body
    if data.due_date is not None:
        fields["ActivityDate"] = data.due_date.isoformat()
    if data.priority is not None:
        fields["Priority"] = TASK_PRIORITIES[data.priority]
    if data.contact_id is not None:
        fields["WhoId"] = data.contact_id
    what = data.deal_id or data.company_id
    if what is not None:
        fields["WhatId"] = what
    return fields


def _by_prefix(*ids: Any) -> dict[str, str]:
    """Link fields named by record ids' key prefixes (the first id of each kind wins)."""
    found: dict[str, str] = {}
    for value in ids:
        text = text_or_none(value)
        name = PREFIXES.get(text[:3]) if text else None
        if text and name and name not in found:
            found[name] = text
    return found


def _status(value: Any) -> str | None:
    text = text_or_none(value)
    return text.strip().lower().replace(" ", "_") if text else None


def to_activity(activity_type: ActivityType, raw: Mapping[str, Any]) -> AnyActivity:
    """A ``Note`` or ``Task`` row (query row or sObject) as the unified activity."""
    common: dict[str, Any] = {
        "id": str(raw["Id"]),
        "created_at": parse_datetime(raw.get("CreatedDate")),
        "updated_at": parse_datetime(raw.get("LastModifiedDate")),
        "archived": raw.get("IsDeleted") is True,
        "properties": {k: v for k, v in raw.items() if k != "attributes"},
        "owner_id": text_or_none(raw.get("OwnerId")),
    }
    if activity_type == "note":
        common |= _by_prefix(raw.get("ParentId"))
        return Note(
            **common,
            body=text_or_none(raw.get("Body")),
            timestamp=parse_datetime(raw.get("CreatedDate")),
        )
    priority = text_or_none(raw.get("Priority"))
    common |= _by_prefix(raw.get("WhoId"), raw.get("WhatId"), raw.get("AccountId"))
    return Task(
        **common,
        subject=text_or_none(raw.get("Subject")),
        body=text_or_none(raw.get("Description")),
        due_date=parse_date(raw.get("ActivityDate")),
        status=_status(raw.get("Status")),
        priority=READ_PRIORITIES.get(priority, priority.lower()) if priority else None,
    )
