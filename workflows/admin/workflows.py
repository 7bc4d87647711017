"""Workflows: what each organisation switched on, how it is configured, and "Trigger run".

The form checks what ``workflow_update`` would (the graph's config schema, ``workflow_check``)
and shows each problem on its field; saving then goes through ``workflow_update``, so every
change is audited. A graph whose input has required fields (lead_qualification: a contact id)
is triggered through a small form that validates the input against the graph's schema.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.admin_scope import OrganizationScopedAdmin
from core.errors import AppError, ValidationFailed

from ..models import Workflow, WorkflowRun
from ..registry import GraphSpec
from ..services import run_start, workflow_update
from .display import actor_of, every_text, json_block, run_badge, run_url
from .workflow_forms import EDITABLE, TriggerRunForm, WorkflowForm, spec_or_none


def needs_input(spec: GraphSpec) -> bool:
    return any(f.is_required() for f in spec.input_schema.model_fields.values())


def trigger_url(workflow: Workflow) -> str:
    return reverse("admin:workflows_workflow_trigger", args=[workflow.pk])


@admin.register(Workflow)
class WorkflowAdmin(OrganizationScopedAdmin[Workflow]):
    form = WorkflowForm
    list_display = (
        "key",
        "name",
        "graph",
        "enabled",
        "schedule",
        "trigger_shown",
        "connection_name",
        "last_run",
        "organization",
    )
    list_filter = ("enabled", "graph", "trigger", "organization")
    search_fields = ("key", "name", "organization__name")
    list_select_related = ("organization", "connection")
    actions = ("trigger_run",)
    fieldsets = (
        (None, {"fields": ("id", "organization", "key", "graph", "name", "enabled", "connection")}),
        ("Config", {"fields": ("config", "graph_description", "config_schema")}),
        (
            "Schedule and trigger",
            {
                "fields": (
                    "schedule_seconds",
                    "next_run_at",
                    "trigger",
                    "trigger_object_type",
                    "trigger_checked_at",
                )
            },
        ),
        ("Run input", {"classes": ("collapse",), "fields": ("input_schema",)}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = (
        "id",
        "organization",
        "key",
        "graph",
        "graph_description",
        "config_schema",
        "input_schema",
        "next_run_at",
        "trigger_checked_at",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # one per registered graph, made for each organisation by the service

    def has_delete_permission(self, request: HttpRequest, obj: Workflow | None = None) -> bool:
        return False  # it holds the run history; switch it off with "enabled" instead

    def has_trigger_permission(self, request: HttpRequest) -> bool:
        """Starting a run is adding one."""
        return bool(request.user.has_perm("workflows.add_workflowrun"))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        newest = WorkflowRun.objects.filter(workflow=OuterRef("pk")).order_by("-created_at")
        return (
            super()
            .get_queryset(request)
            .select_related("organization", "connection")
            .defer("connection__access_token", "connection__refresh_token")
            .annotate(
                last_run_status=Subquery(newest.values("status")[:1]),
                last_run_id=Subquery(newest.values("pk")[:1]),
            )
        )

    # Columns and fields

    @admin.display(description="schedule", ordering="schedule_seconds")
    def schedule(self, obj: Workflow) -> str:
        return every_text(obj.schedule_seconds)

    @admin.display(description="trigger", ordering="trigger")
    def trigger_shown(self, obj: Workflow) -> str:
        return f"{obj.trigger} {obj.trigger_object_type}" if obj.trigger else "-"

    @admin.display(description="connection")
    def connection_name(self, obj: Workflow) -> str:
        return str(obj.connection) if obj.connection is not None else "(the only one)"

    @admin.display(description="last run", ordering="last_run_status")
    def last_run(self, obj: Workflow) -> SafeString | str:
        status = getattr(obj, "last_run_status", None)
        if status is None:
            return "-"
        return format_html('<a href="{}">{}</a>', run_url(obj.last_run_id), run_badge(status))  # type: ignore[attr-defined]

    @admin.display(description="what the graph does")
    def graph_description(self, obj: Workflow) -> str:
        spec = spec_or_none(obj.graph)
        return spec.description if spec else f"Unknown graph {obj.graph!r}."

    @admin.display(description="config schema")
    def config_schema(self, obj: Workflow) -> SafeString | str:
        spec = spec_or_none(obj.graph)
        if spec is None:
            return "-"
        schema = json_block(spec.config_schema.model_json_schema())
        return format_html("<details><summary>JSON schema</summary>{}</details>", schema)

    @admin.display(description="input schema")
    def input_schema(self, obj: Workflow) -> SafeString | str:
        spec = spec_or_none(obj.graph)
        return json_block(spec.input_schema.model_json_schema()) if spec else "-"

    # Saving

    def save_model(
        self, request: HttpRequest, obj: Workflow, form: WorkflowForm, change: bool
    ) -> None:
        """Through ``workflow_update`` (audited), from the row as stored so that the audit
        event records what each field was before."""
        changes: dict[str, Any] = {}
        for name in form.changed_data:
            if name == "connection":
                changes["connection_id"] = obj.connection_id
            elif name in EDITABLE:
                changes[name] = getattr(obj, name)
        if not changes:
            return
        try:
            saved = workflow_update(
                workflow=Workflow.objects.get(pk=obj.pk), actor=actor_of(request), changes=changes
            )
        except AppError as exc:  # the form checked the same rules; this is a race
            self.message_user(request, f"Not saved: {exc.message}", messages.ERROR)
            return
        obj.config, obj.next_run_at = saved.config, saved.next_run_at
        obj.trigger_checked_at = saved.trigger_checked_at

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Workflow | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context |= {
                "trigger_url": trigger_url(obj) if self.has_trigger_permission(request) else None,
                "recent_runs": [
                    (run, run_badge(run.status))
                    for run in WorkflowRun.objects.filter(workflow=obj).order_by("-created_at")[:10]
                ],
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    # Trigger run

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/trigger/",
                self.admin_site.admin_view(self.trigger_view),
                name="workflows_workflow_trigger",
            ),
            *super().get_urls(),
        ]

    def _start(
        self,
        request: HttpRequest,
        workflow: Workflow,
        run_input: dict[str, Any] | None = None,
        connection_id: Any = None,
    ) -> WorkflowRun:
        run = run_start(
            workflow=workflow,
            actor=actor_of(request),
            trigger="admin",
            input=run_input,
            connection_id=connection_id,
        )
        self.message_user(
            request,
            format_html(
                '{}: <a href="{}">run {}</a> started (queued).',
                workflow.key,
                run_url(run.pk),
                run.pk,
            ),
            messages.SUCCESS,
        )
        return run

    def trigger_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: the input form; POST: validate it with the graph's input schema, start the run
        and go to its page."""
        if not self.has_trigger_permission(request):
            raise PermissionDenied
        workflow = self.get_object(request, object_id)
        if workflow is None:
            self.message_user(request, f"No workflow with id {object_id!r}.", messages.WARNING)
            return redirect("admin:workflows_workflow_changelist")
        spec = spec_or_none(workflow.graph)
        form = TriggerRunForm(request.POST or None, workflow=workflow, spec=spec)
        if request.method == "POST" and form.is_valid():
            try:
                run = self._start(
                    request,
                    workflow,
                    form.cleaned_data["input"],
                    form.cleaned_data["connection"].pk if form.cleaned_data["connection"] else None,
                )
            except ValidationFailed as exc:
                form.add_service_error(exc)
            except AppError as exc:
                form.add_error(None, exc.message)
            else:
                return HttpResponseRedirect(run_url(run.pk))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Trigger a run of {workflow.name}",
            "workflow": workflow,
            "spec": spec,
            "input_schema": self.input_schema(workflow),
            "form": form,
        }
        return TemplateResponse(request, "admin/workflows/workflow/trigger_run.html", context)

    @admin.action(description="Trigger a run now", permissions=["trigger"])
    def trigger_run(
        self, request: HttpRequest, queryset: QuerySet[Workflow]
    ) -> HttpResponse | None:
        """Starts a run of each selected workflow whose graph needs no input; a workflow that
        needs input (and is the only one selected) goes to the input form."""
        chosen = list(queryset)
        started: list[WorkflowRun] = []
        for workflow in chosen:
            spec = spec_or_none(workflow.graph)
            if spec is not None and needs_input(spec):
                if len(chosen) == 1:
                    return HttpResponseRedirect(trigger_url(workflow))
                self.message_user(
                    request,
                    format_html(
                        '{}: this graph needs input; <a href="{}">trigger it with its form</a>.',
                        workflow.key,
                        trigger_url(workflow),
                    ),
                    messages.WARNING,
                )
                continue
            try:
                started.append(self._start(request, workflow))
            except AppError as exc:
                self.message_user(request, f"{workflow.key}: {exc.message}", messages.ERROR)
        if len(chosen) == 1 and started:
            return HttpResponseRedirect(run_url(started[0].pk))
        return None
