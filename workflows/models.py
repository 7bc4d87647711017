"""Agent workflows: what an organisation switched on (``Workflow``), each execution
(``WorkflowRun``), its timeline (``RunStep``) and the human decisions it waits for (``Approval``).

A run's graph state lives in the LangGraph checkpointer under ``thread_id`` (the run's own id,
or for a retry the id of the run it continues); these rows are the operator's view of it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from accounts.models import Organization
from integrations.models import Connection


class TriggerKind(models.TextChoices):
    NONE = "", "No trigger"
    CREATED = "created", "A record of the type was created"
    CHANGED = "changed", "A record of the type was created or changed"


class WorkflowQuerySet(models.QuerySet["Workflow"]):
    def for_organization(self, organization_id: uuid.UUID) -> WorkflowQuerySet:
        return self.filter(organization_id=organization_id)


class Workflow(models.Model):
    """A graph from the registry, configured for one organisation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="workflows"
    )
    key = models.SlugField(
        max_length=64, help_text="Names the workflow in URLs: /api/v1/workflows/{key}/runs."
    )
    graph = models.CharField(max_length=64, help_text="The registered graph this runs.")
    name = models.CharField(max_length=200)
    config = models.JSONField(
        default=dict, blank=True, help_text="Validated by the graph's own config schema."
    )
    connection = models.ForeignKey(
        Connection,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The CRM it works on; empty: the organisation's only active connection.",
    )
    enabled = models.BooleanField(default=True)
    schedule_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Run every this many seconds (empty: no schedule)."
    )
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    trigger = models.CharField(
        max_length=16, choices=TriggerKind.choices, blank=True, default=TriggerKind.NONE
    )
    trigger_object_type = models.CharField(
        max_length=16, blank=True, help_text="contact, company or deal (with a trigger)."
    )
    trigger_checked_at = models.DateTimeField(
        null=True, blank=True, help_text="Mirror changes after this time start runs."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WorkflowQuerySet.as_manager()

    class Meta:
        ordering = ("organization", "key")
        constraints = [
            models.UniqueConstraint(fields=("organization", "key"), name="workflow_key_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_APPROVAL = "waiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class WorkflowRunQuerySet(models.QuerySet["WorkflowRun"]):
    def for_organization(self, organization_id: uuid.UUID) -> WorkflowRunQuerySet:
        return self.filter(organization_id=organization_id)

    def active(self) -> WorkflowRunQuerySet:
        return self.exclude(status__in=TERMINAL_RUN_STATUSES)


class WorkflowRun(models.Model):
    """One execution of a workflow. ``attempt`` counts the retries in a chain (1 = first);
    a retry is a new run (``retry_of``) that continues the same checkpoint thread."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="runs")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    graph = models.CharField(max_length=64)
    thread_id = models.CharField(max_length=64, help_text="The checkpointer's thread.")
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True
    )
    trigger = models.CharField(max_length=16, help_text="api, admin, schedule or sync")
    requested_by = models.CharField(max_length=200, blank=True)
    input = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="The workflow's config then.")
    output = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    cancel_requested = models.BooleanField(default=False)
    deliveries = models.PositiveSmallIntegerField(
        default=0, help_text="Times a worker took the run (more than one: it was resumed)."
    )
    lease_owner = models.CharField(max_length=100, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    llm_model = models.CharField(max_length=100, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = WorkflowRunQuerySet.as_manager()

    class Meta:
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=("organization", "-created_at"), name="run_org_created"),
            models.Index(fields=("status", "heartbeat_at"), name="run_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"{self.graph} run {self.pk} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def duration(self) -> timedelta | None:
        return run_duration(self.started_at, self.finished_at)


def run_duration(started_at: datetime | None, finished_at: datetime | None) -> timedelta | None:
    """From start to finish, or to now while it runs; None before a worker took it."""
    if started_at is None:
        return None
    return (finished_at or timezone.now()) - started_at


class StepStatus(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted", "Waiting for a person"
    CANCELLED = "cancelled"


class RunStep(models.Model):
    """One node execution. A node that ran again (a retry, a resume after a crash or an
    approval) has a row per execution."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="steps")
    task_id = models.CharField(max_length=64, help_text="LangGraph's task id (stable on resume).")
    node = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    input_summary = models.JSONField(null=True, blank=True)
    output_summary = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("run", "id")

    def __str__(self) -> str:
        return f"{self.node} ({self.status})"

    @property
    def duration_ms(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled", "Cancelled with the run"


class Approval(models.Model):
    """A CRM write an agent proposed and a person must decide on. ``proposal`` is the list of
    writes (operation, object type, record, payload) and ``diff`` the field-level change of
    each against the mirror when it was proposed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="approvals")
    interrupt_id = models.CharField(max_length=64)
    summary = models.TextField(blank=True, help_text="What the agent wants to do, in words.")
    proposal = models.JSONField(default=list)
    diff = models.JSONField(default=list)
    status = models.CharField(
        max_length=16, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING
    )
    decided_by = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=("run", "interrupt_id"), name="approval_per_interrupt")
        ]

    def __str__(self) -> str:
        return f"Approval {self.pk} ({self.status})"
