"""The run console: every run with its status, and a run's page (summary, step timeline, the
approval it waits for) with the operator's buttons: cancel, retry, approve, reject.

Runs are read-only rows; operating them takes ``workflows.change_workflowrun`` (cancel, retry)
or ``workflows.change_approval`` (approve, reject). Every operation goes through the services,
so it is audited, and a refusal (a run that already ended, an approval already decided) comes
back as an error message, never as an error page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from accounts.admin_scope import OrganizationScopedAdmin
from core.admin_badges import badge
from core.errors import AppError

from ..models import (
    TERMINAL_RUN_STATUSES,
    Approval,
    ApprovalStatus,
    RunStatus,
    RunStep,
    WorkflowRun,
)
from ..services import run_cancel, run_retry
from .approvals import approval_views, decide
from .display import (
    LIVE_REFRESH_SECONDS,
    STEP_COLOURS,
    actor_of,
    duration_text,
    json_block,
    pretty_json,
    run_badge,
    run_link,
    run_url,
    short_id,
    tokens_text,
)

RETRYABLE = (RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class StepView:
    """A ``RunStep`` as the timeline shows it."""

    node: str
    status: SafeString
    started_at: Any
    duration: str
    error_code: str
    error_message: str
    input_json: str
    output_json: str


def _step_view(step: RunStep) -> StepView:
    finished = step.finished_at
    return StepView(
        node=step.node,
        status=badge(step.status, step.get_status_display(), STEP_COLOURS),
        started_at=step.started_at,
        duration=duration_text(finished - step.started_at) if finished else "-",
        error_code=step.error_code,
        error_message=step.error_message,
        input_json="" if step.input_summary is None else pretty_json(step.input_summary),
        output_json="" if step.output_summary is None else pretty_json(step.output_summary),
    )


@admin.register(WorkflowRun)
class WorkflowRunAdmin(OrganizationScopedAdmin[WorkflowRun]):
    """Runs list and run page; the list refreshes while a run on it is queued or running."""

    list_display = (
        "run_id",
        "status_badge",
        "workflow_name",
        "graph",
        "trigger",
        "attempt",
        "created_at",
        "duration_shown",
        "tokens",
        "organization",
    )
    list_display_links = ("run_id",)
    list_filter = ("status", "graph", "trigger", "created_at", "organization")
    search_fields = ("^id", "=thread_id", "workflow__key")
    search_help_text = "A run id (or its first characters, as listed), a thread id, a workflow key."
    list_select_related = ("workflow", "organization")
    ordering = ("-created_at",)
    actions = ("cancel_runs", "retry_runs")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "status_badge",
                    "workflow_link",
                    "graph",
                    "organization",
                    "connection_name",
                    "trigger",
                    "requested_by",
                    "attempt",
                    "retry_of_link",
                    "retries_links",
                    "cancel_requested",
                )
            },
        ),
        ("Timing", {"fields": ("created_at", "started_at", "finished_at", "duration_shown")}),
        ("Input and output", {"fields": ("input_shown", "output_shown")}),
        ("Error", {"fields": ("error_code", "error_message")}),
        ("Model", {"fields": ("llm_model_shown", "tokens")}),
        (
            "Worker",
            {
                "classes": ("collapse",),
                "fields": ("thread_id", "deliveries", "lease_owner", "heartbeat_at", "updated_at"),
            },
        ),
    )
    readonly_fields = tuple(str(name) for _, options in fieldsets for name in options["fields"])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs start from a workflow (its "Trigger run" action), the API or beat

    def has_change_permission(self, request: HttpRequest, obj: WorkflowRun | None = None) -> bool:
        return False  # a run is a record; its buttons operate it through the services

    def has_delete_permission(self, request: HttpRequest, obj: WorkflowRun | None = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Cancel and retry take the model's change right (rows stay read-only for all)."""
        return bool(request.user.has_perm("workflows.change_workflowrun"))

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("workflows.change_approval"))

    # Columns and fields

    @admin.display(description="run", ordering="created_at")
    def run_id(self, obj: WorkflowRun) -> str:
        return short_id(obj.pk)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: WorkflowRun) -> SafeString:
        return run_badge(obj.status)

    @admin.display(description="workflow", ordering="workflow__key")
    def workflow_name(self, obj: WorkflowRun) -> str:
        return obj.workflow.key

    @admin.display(description="workflow")
    def workflow_link(self, obj: WorkflowRun) -> SafeString:
        url = reverse("admin:workflows_workflow_change", args=[obj.workflow_id])
        return format_html('<a href="{}">{}</a>', url, obj.workflow)

    @admin.display(description="connection")
    def connection_name(self, obj: WorkflowRun) -> str:
        return str(obj.connection)  # provider and account name only, never its tokens

    @admin.display(description="duration")
    def duration_shown(self, obj: WorkflowRun) -> str:
        return duration_text(obj.duration)

    @admin.display(description="tokens")
    def tokens(self, obj: WorkflowRun) -> str:
        return tokens_text(obj.tokens_in, obj.tokens_out)

    @admin.display(description="retry of")
    def retry_of_link(self, obj: WorkflowRun) -> SafeString | str:
        return run_link(obj.retry_of) if obj.retry_of is not None else "-"

    @admin.display(description="retried as")
    def retries_links(self, obj: WorkflowRun) -> SafeString | str:
        retries = list(obj.retries.order_by("created_at"))
        if not retries:
            return "-"
        return format_html_join(", ", "{}", ((run_link(r),) for r in retries))

    @admin.display(description="LLM model")
    def llm_model_shown(self, obj: WorkflowRun) -> str:
        if obj.llm_model:
            return obj.llm_model
        return "-" if obj.started_at is None else "none (the graph's deterministic path)"

    @admin.display(description="input")
    def input_shown(self, obj: WorkflowRun) -> SafeString | str:
        return json_block(obj.input)

    @admin.display(description="output")
    def output_shown(self, obj: WorkflowRun) -> SafeString | str:
        return json_block(obj.output)

    # Pages

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowRun]:
        # The run page shows the connection by name: leave its encrypted tokens unloaded.
        return (
            super()
            .get_queryset(request)
            .select_related("workflow", "organization", "connection", "retry_of")
            .defer("connection__access_token", "connection__refresh_token")
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        live = (
            self.get_queryset(request)
            .filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING))
            .exists()
        )
        context = (extra_context or {}) | {"live_refresh": LIVE_REFRESH_SECONDS if live else None}
        return super().changelist_view(request, context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: WorkflowRun | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context |= self._console_context(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _console_context(self, request: HttpRequest, run: WorkflowRun) -> dict[str, Any]:
        steps = [_step_view(step) for step in run.steps.order_by("id")]
        approvals = list(run.approvals.order_by("created_at"))
        can_operate = self.has_operate_permission(request)
        has_retry = run.retries.exists()
        return {
            "steps": steps,
            "pending_approvals": approval_views(
                [a for a in approvals if a.status == ApprovalStatus.PENDING], run
            ),
            "decided_approvals": approval_views(
                [a for a in approvals if a.status != ApprovalStatus.PENDING], run
            ),
            "can_decide": self.has_decide_permission(request)
            and run.status == RunStatus.WAITING_APPROVAL,
            "can_cancel": can_operate and run.status not in TERMINAL_RUN_STATUSES,
            "can_retry": can_operate and run.status in RETRYABLE and not has_retry,
            "cancel_url": reverse("admin:workflows_workflowrun_cancel", args=[run.pk]),
            "retry_url": reverse("admin:workflows_workflowrun_retry", args=[run.pk]),
            "live_refresh": LIVE_REFRESH_SECONDS
            if run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
            else None,
        }

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/cancel/",
                wrap(require_POST(self.cancel_view)),
                name="workflows_workflowrun_cancel",
            ),
            path(
                "<path:object_id>/retry/",
                wrap(require_POST(self.retry_view)),
                name="workflows_workflowrun_retry",
            ),
            path(
                "<path:object_id>/approvals/<uuid:approval_id>/decide/",
                wrap(require_POST(self.decide_view)),
                name="workflows_workflowrun_decide",
            ),
            *super().get_urls(),
        ]

    def _run_or_redirect(self, request: HttpRequest, object_id: str) -> WorkflowRun | HttpResponse:
        run = self.get_object(request, object_id)
        if run is None:
            self.message_user(request, f"No run with id {object_id!r}.", messages.WARNING)
            return redirect("admin:workflows_workflowrun_changelist")
        return run

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_operate_permission(request):
            raise PermissionDenied
        run = self._run_or_redirect(request, object_id)
        if isinstance(run, HttpResponse):
            return run
        self._cancel(request, run)
        return HttpResponseRedirect(run_url(run.pk))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_operate_permission(request):
            raise PermissionDenied
        run = self._run_or_redirect(request, object_id)
        if isinstance(run, HttpResponse):
            return run
        retry = self._retry(request, run)
        return HttpResponseRedirect(run_url(retry.pk if retry is not None else run.pk))

    def decide_view(self, request: HttpRequest, object_id: str, approval_id: Any) -> HttpResponse:
        """The approval panel's Approve / Reject buttons (``decision``) with ``comment``."""
        if not self.has_decide_permission(request):
            raise PermissionDenied
        run = self._run_or_redirect(request, object_id)
        if isinstance(run, HttpResponse):
            return run
        approval = Approval.objects.filter(pk=approval_id, run=run).first()
        decision = request.POST.get("decision")
        if approval is None:
            self.message_user(request, "This run has no such approval.", messages.ERROR)
        elif decision not in ("approve", "reject"):
            self.message_user(request, "Choose Approve or Reject.", messages.ERROR)
        else:
            comment = request.POST.get("comment", "").strip()
            decide(self, request, approval, approved=decision == "approve", comment=comment)
        return HttpResponseRedirect(run_url(run.pk))

    # Operations shared by the buttons and the list's actions

    def _cancel(self, request: HttpRequest, run: WorkflowRun) -> None:
        try:
            cancelled = run_cancel(run=run, actor=actor_of(request))
        except AppError as exc:
            self.message_user(request, f"Run {short_id(run.pk)}: {exc.message}", messages.ERROR)
            return
        if cancelled.status == RunStatus.CANCELLED:
            self.message_user(request, f"Run {short_id(run.pk)} cancelled.", messages.SUCCESS)
        else:
            self.message_user(
                request,
                f"Run {short_id(run.pk)}: cancel requested; it stops after its current step.",
                messages.SUCCESS,
            )

    def _retry(self, request: HttpRequest, run: WorkflowRun) -> WorkflowRun | None:
        try:
            retry = run_retry(run=run, actor=actor_of(request))
        except AppError as exc:
            self.message_user(request, f"Run {short_id(run.pk)}: {exc.message}", messages.ERROR)
            return None
        self.message_user(
            request,
            format_html(
                'Run {} retried as <a href="{}">run {}</a> (attempt {}, queued).',
                short_id(run.pk),
                run_url(retry.pk),
                retry.pk,
                retry.attempt,
            ),
            messages.SUCCESS,
        )
        return retry

    @admin.action(description="Cancel selected runs", permissions=["operate"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        for run in queryset:
            self._cancel(request, run)

    @admin.action(
        description="Retry selected runs (failed or cancelled; continues from the last step)",
        permissions=["operate"],
    )
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        for run in queryset.select_related("workflow"):
            self._retry(request, run)
