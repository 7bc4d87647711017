"""How the workflow admin pages show things: status colours, durations, JSON, and an approval's
field-level diff as table rows. No queries here; the admin classes pass in what they loaded."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.audit import Actor
from core.admin_badges import Tone, badge

from ..models import ApprovalStatus, RunStatus, StepStatus, WorkflowRun

RUN_COLOURS: dict[RunStatus, Tone] = {
    RunStatus.QUEUED: "grey",
    RunStatus.RUNNING: "blue",
    RunStatus.WAITING_APPROVAL: "amber",
    RunStatus.SUCCEEDED: "green",
    RunStatus.FAILED: "red",
    RunStatus.CANCELLED: "orange",
}
STEP_COLOURS: dict[StepStatus, Tone] = {
    StepStatus.RUNNING: "blue",
    StepStatus.SUCCEEDED: "green",
    StepStatus.FAILED: "red",
    StepStatus.INTERRUPTED: "amber",
    StepStatus.CANCELLED: "orange",
}
APPROVAL_COLOURS: dict[ApprovalStatus, Tone] = {
    ApprovalStatus.PENDING: "amber",
    ApprovalStatus.APPROVED: "green",
    ApprovalStatus.REJECTED: "red",
    ApprovalStatus.CANCELLED: "grey",
}
LIVE_REFRESH_SECONDS = 5


def actor_of(request: HttpRequest) -> Actor:
    return Actor(label=f"user:{request.user}", user_id=request.user.pk)


def run_badge(status: str) -> SafeString:
    label = RunStatus(status).label if status in RunStatus.values else status
    return badge(status, label, RUN_COLOURS)


def short_id(value: object) -> str:
    return str(value)[:8]


def run_url(run_id: object) -> str:
    return reverse("admin:workflows_workflowrun_change", args=[run_id])


def run_link(run: WorkflowRun) -> SafeString:
    return format_html(
        '<a href="{}" title="{}">run {}</a>', run_url(run.pk), run.pk, short_id(run.pk)
    )


def duration_text(delta: timedelta | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``; ``-`` when there is none."""
    if delta is None:
        return "-"
    seconds = max(delta.total_seconds(), 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def every_text(seconds: int | None) -> str:
    if not seconds:
        return "-"
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"every {seconds // size} {unit}"
    return f"every {seconds} s"


def tokens_text(tokens_in: int, tokens_out: int) -> str:
    if not tokens_in and not tokens_out:
        return "-"
    return f"{tokens_in:,} in / {tokens_out:,} out"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def json_block(value: Any) -> SafeString | str:
    if value is None or value == {} or value == []:
        return "-"
    return format_html('<pre class="sb-text">{}</pre>', pretty_json(value))


def value_text(value: Any) -> str:
    """A field value in a diff cell: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One changed field of one proposed write. ``first`` marks a write's first row (it carries
    the write's label and reason); ``before``/``after`` are ``None`` where they do not apply
    (a create has no before, an archive no after)."""

    first: bool
    operation: str
    object_type: str
    record_id: str
    reason: str
    field: str
    before: str | None
    after: str | None


def diff_rows(diff: Any, proposal: Any) -> list[DiffRow]:
    """The approval's ``diff`` (a list of ``WriteDiff`` dicts, one per write) as table rows.

    The rows come from JSON the graph stored, so anything malformed is skipped rather than
    allowed to break the page."""
    reasons = {
        index: str(write.get("reason") or "")
        for index, write in enumerate(proposal if isinstance(proposal, list) else [])
        if isinstance(write, dict)
    }
    rows: list[DiffRow] = []
    for position, write in enumerate(diff if isinstance(diff, list) else []):
        if not isinstance(write, dict):
            continue
        operation = str(write.get("operation") or "")
        index = write.get("index", position)
        head = {
            "operation": operation,
            "object_type": str(write.get("object_type") or ""),
            "record_id": str(write.get("record_id") or ""),
            "reason": reasons.get(index if isinstance(index, int) else position, ""),
        }
        changes = [c for c in write.get("changes") or [] if isinstance(c, dict)]
        if not changes:
            rows.append(DiffRow(first=True, field="", before=None, after=None, **head))
        for n, change in enumerate(changes):
            rows.append(
                DiffRow(
                    first=n == 0,
                    field=str(change.get("field") or ""),
                    before=None if operation == "create" else value_text(change.get("before")),
                    after=None if operation == "archive" else value_text(change.get("after")),
                    **head,
                )
            )
    return rows
