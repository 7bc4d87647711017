"""Reads of workflows, runs, steps and approvals, scoped to an organisation: another
organisation's workflow, run or approval is ``NotFound`` (a 404 in the API), never a 403."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from django.db.models import Count, QuerySet

from core.errors import NotFound

from .models import (
    Approval,
    ApprovalStatus,
    RunStatus,
    RunStep,
    Workflow,
    WorkflowRun,
)


def _uuid(value: uuid.UUID | str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"No such {what}.", details={"id": str(value)}) from None


def workflow_list(*, organization_id: uuid.UUID) -> QuerySet[Workflow]:
    return Workflow.objects.for_organization(organization_id).order_by("key")


async def workflow_for(*, organization_id: uuid.UUID, key: str) -> Workflow:
    """The organisation's workflow with this key, or ``NotFound``."""
    workflow = await workflow_list(organization_id=organization_id).filter(key=key).afirst()
    if workflow is None:
        raise NotFound(f"No workflow {key!r}.", details={"key": key})
    return workflow


async def workflow_run_counts(
    *, organization_id: uuid.UUID, workflow_id: uuid.UUID | None = None
) -> dict[uuid.UUID, dict[str, int]]:
    """Runs per workflow and status (one grouped query): ``{workflow_id: {status: n}}``."""
    runs = WorkflowRun.objects.for_organization(organization_id)
    if workflow_id is not None:
        runs = runs.filter(workflow_id=workflow_id)
    grouped = runs.order_by().values("workflow_id", "status").annotate(n=Count("id"))
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    async for row in grouped:
        counts[row["workflow_id"]][row["status"]] = row["n"]
    return counts


def run_list(
    *,
    organization_id: uuid.UUID,
    status: RunStatus | None = None,
    workflow_key: str | None = None,
    graph: str | None = None,
    trigger: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[WorkflowRun]:
    """The organisation's runs (with their workflow), optionally filtered; ``created_after``
    and ``created_before`` are inclusive and exclusive bounds."""
    runs = WorkflowRun.objects.for_organization(organization_id).select_related("workflow")
    if status is not None:
        runs = runs.filter(status=status)
    if workflow_key is not None:
        runs = runs.filter(workflow__key=workflow_key)
    if graph is not None:
        runs = runs.filter(graph=graph)
    if trigger is not None:
        runs = runs.filter(trigger=trigger)
    if created_after is not None:
        runs = runs.filter(created_at__gte=created_after)
    if created_before is not None:
        runs = runs.filter(created_at__lt=created_before)
    return runs


async def run_for(*, organization_id: uuid.UUID, run_id: uuid.UUID | str) -> WorkflowRun:
    """The organisation's run (with its workflow), or ``NotFound`` (also for a malformed id)."""
    pk = _uuid(run_id, "run")
    run = await run_list(organization_id=organization_id).filter(pk=pk).afirst()
    if run is None:
        raise NotFound("No such run.", details={"id": str(run_id)})
    return run


async def run_with_workflow(*, run_id: uuid.UUID) -> WorkflowRun | None:
    """A run by id, unscoped (for callers that checked its organisation already)."""
    return await WorkflowRun.objects.select_related("workflow").filter(pk=run_id).afirst()


def run_step_list(*, run_id: uuid.UUID, from_step_id: int = 0) -> QuerySet[RunStep]:
    """A run's steps in the order they started (``from_step_id``: that step and later)."""
    return RunStep.objects.filter(run_id=run_id, pk__gte=from_step_id).order_by("pk")


def run_retry_ids(*, run_id: uuid.UUID) -> QuerySet[WorkflowRun, uuid.UUID]:
    return (
        WorkflowRun.objects.filter(retry_of_id=run_id)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )


def approval_list(
    *,
    organization_id: uuid.UUID,
    status: ApprovalStatus | None = None,
    run_id: uuid.UUID | None = None,
    workflow_key: str | None = None,
) -> QuerySet[Approval]:
    """The organisation's approvals (with their run and workflow), optionally filtered."""
    approvals = Approval.objects.filter(organization_id=organization_id).select_related(
        "run__workflow"
    )
    if status is not None:
        approvals = approvals.filter(status=status)
    if run_id is not None:
        approvals = approvals.filter(run_id=run_id)
    if workflow_key is not None:
        approvals = approvals.filter(run__workflow__key=workflow_key)
    return approvals


def run_approval_list(*, run_id: uuid.UUID) -> QuerySet[Approval]:
    """A run's approvals, oldest first."""
    return Approval.objects.filter(run_id=run_id).order_by("created_at", "pk")


async def approval_for(*, organization_id: uuid.UUID, approval_id: uuid.UUID | str) -> Approval:
    """The organisation's approval (with its run and workflow), or ``NotFound``."""
    pk = _uuid(approval_id, "approval")
    approval = await approval_list(organization_id=organization_id).filter(pk=pk).afirst()
    if approval is None:
        raise NotFound("No such approval.", details={"id": str(approval_id)})
    return approval
