"""Tasks as Salesforce keeps them: the fields it derives, and the activity they log.

A task's ``IsClosed``, ``IsHighPriority``, ``AccountId`` (from ``WhatId``, else ``WhoId``'s
account) and ``CompletedDateTime`` are derived on every write. Writing a closed task sets
``LastActivityDate`` on the records it names (who, what, and the derived account) when its date
is later: the task's due date, else today. Salesforce counts events and closed tasks only, so an
open task or a note moves nothing. That change is a system one: ``SystemModstamp`` moves (so an
incremental ``queryAll`` sees it), ``LastModifiedDate`` does not.
"""

from __future__ import annotations

from typing import Any

from .schema import CLOSED_TASK_STATUSES, now
from .state import OrgData, Record


def derive_task(data: OrgData, task: Record, stamp: str) -> None:
    """``IsClosed``, ``IsHighPriority``, ``AccountId`` and ``CompletedDateTime`` (``stamp``:
    the write's time)."""
    values = task.values
    closed = values.get("Status") in CLOSED_TASK_STATUSES
    if closed and not values.get("IsClosed"):
        values["CompletedDateTime"] = stamp
    elif not closed:
        values["CompletedDateTime"] = None
    values["IsClosed"] = closed
    values["IsHighPriority"] = values.get("Priority") == "High"
    values["AccountId"] = _account(data, values.get("WhatId"), values.get("WhoId"))


def _account(data: OrgData, what_id: Any, who_id: Any) -> str | None:
    for linked in (what_id, who_id):
        record = data.find(str(linked)) if linked else None
        if record is None:
            continue
        if record.sobject == "Account":
            return record.id
        if record.values.get("AccountId"):
            return str(record.values["AccountId"])
    return None


def log_activity(data: OrgData, record: Record) -> None:
    """After a write: a closed task's date becomes the ``LastActivityDate`` of the records it
    names, when later (a system change: ``SystemModstamp`` only). Other writes log nothing."""
    values = record.values
    if record.sobject != "Task" or not values.get("IsClosed"):
        return
    day = str(values.get("ActivityDate") or now().date().isoformat())
    for linked in dict.fromkeys(
        (values.get("WhoId"), values.get("WhatId"), values.get("AccountId"))
    ):
        target = data.find(str(linked)) if linked else None
        if target is None or target.deleted or "LastActivityDate" not in target.values:
            continue
        current = target.values.get("LastActivityDate")
        if current is not None and str(current) >= day:
            continue
        target.values["LastActivityDate"] = day
        target.values["SystemModstamp"] = data.restamp(target)
