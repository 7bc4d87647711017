"""Approvals: the CRM writes agents proposed, pending first, with bulk approve / reject.

A decision goes through ``approval_decide`` (audited; the run is queued to resume once none of
its approvals is pending) and takes ``workflows.change_approval``. The run page shows the same
approvals with their field-level diff and the buttons for one decision with a comment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from accounts.admin_scope import OrganizationScopedAdmin
from core.admin_badges import badge
from core.errors import AppError

from ..models import Approval, ApprovalStatus, WorkflowRun
from ..services import approval_decide
from .display import APPROVAL_COLOURS, DiffRow, actor_of, diff_rows, json_block, run_link


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """An approval as the run page shows it."""

    approval: Approval
    status: SafeString
    rows: list[DiffRow]
    decide_url: str


def approval_views(approvals: list[Approval], run: WorkflowRun) -> list[ApprovalView]:
    return [
        ApprovalView(
            approval=a,
            status=badge(a.status, a.get_status_display(), APPROVAL_COLOURS),
            rows=diff_rows(a.diff, a.proposal),
            decide_url=reverse("admin:workflows_workflowrun_decide", args=[run.pk, a.pk]),
        )
        for a in approvals
    ]


def decide(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    approval: Approval,
    *,
    approved: bool,
    comment: str = "",
) -> bool:
    """Decide one approval; the outcome (or the service's refusal) becomes a message."""
    what = f"Approval for run {str(approval.run_id)[:8]}"
    try:
        approval_decide(
            approval=approval, approved=approved, actor=actor_of(request), comment=comment
        )
    except AppError as exc:
        model_admin.message_user(request, f"{what}: {exc.message}", messages.ERROR)
        return False
    verb = "approved" if approved else "rejected"
    waiting = Approval.objects.filter(run_id=approval.run_id, status=ApprovalStatus.PENDING)
    then = (
        "it still waits for its other approvals"
        if waiting.exists()
        else "the run is queued to continue"
    )
    model_admin.message_user(request, f"{what} {verb}; {then}.", messages.SUCCESS)
    return True


@admin.register(Approval)
class ApprovalAdmin(OrganizationScopedAdmin[Approval]):
    list_display = (
        "created_at",
        "status_badge",
        "run_shown",
        "workflow_key",
        "summary_short",
        "decided_by",
        "decided_at",
        "organization",
    )
    list_display_links = ("created_at",)
    list_filter = ("status", "created_at", "organization")
    search_fields = ("^id", "^run__id", "summary", "decided_by")
    search_help_text = (
        "An approval or run id (or its first characters), words of the summary, who decided."
    )
    list_select_related = ("run", "run__workflow", "organization")
    actions = ("approve_selected", "reject_selected")
    fields = (
        "id",
        "status_badge",
        "run_shown",
        "organization",
        "summary",
        "diff_table",
        "proposal_shown",
        "decided_by",
        "decided_at",
        "comment",
        "created_at",
        "interrupt_id",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a run's interrupt creates them

    def has_change_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return False  # decided through the actions or the run page, never edited

    def has_delete_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("workflows.change_approval"))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Approval]:
        pending_first = Case(
            When(status=ApprovalStatus.PENDING, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
        # Annotated before the ordering applies (the default get_queryset orders first).
        annotated = Approval.objects.annotate(pending_rank=pending_first)
        return self.scope_queryset(request, annotated.order_by(*self.get_ordering(request)))

    def get_ordering(self, request: HttpRequest) -> tuple[str, ...]:
        return ("pending_rank", "-created_at")

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Approval) -> SafeString:
        return badge(obj.status, obj.get_status_display(), APPROVAL_COLOURS)

    @admin.display(description="run")
    def run_shown(self, obj: Approval) -> SafeString:
        if obj.status == ApprovalStatus.PENDING:
            return format_html("{} (approve or reject there)", run_link(obj.run))
        return run_link(obj.run)

    @admin.display(description="workflow", ordering="run__workflow__key")
    def workflow_key(self, obj: Approval) -> str:
        return obj.run.workflow.key

    @admin.display(description="summary")
    def summary_short(self, obj: Approval) -> str:
        return Truncator(obj.summary).chars(120) or "-"

    @admin.display(description="changes")
    def diff_table(self, obj: Approval) -> SafeString:
        return render_to_string(
            "admin/workflows/approval_diff.html", {"rows": diff_rows(obj.diff, obj.proposal)}
        )

    @admin.display(description="proposed writes")
    def proposal_shown(self, obj: Approval) -> SafeString | str:
        return json_block(obj.proposal)

    def _decide_all(
        self, request: HttpRequest, queryset: QuerySet[Approval], approved: bool
    ) -> None:
        chosen = list(queryset)
        done = sum(decide(self, request, a, approved=approved) for a in chosen)
        if done < len(chosen):
            self.message_user(
                request, f"{len(chosen) - done} of {len(chosen)} not decided.", messages.WARNING
            )

    @admin.action(
        description="Approve selected (the runs write to the CRM)", permissions=["decide"]
    )
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        self._decide_all(request, queryset, approved=True)

    @admin.action(description="Reject selected (nothing is written)", permissions=["decide"])
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Approval]) -> None:
        self._decide_all(request, queryset, approved=False)
