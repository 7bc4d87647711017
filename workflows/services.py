"""Workflow and run services: start, cancel, retry, decide approvals, and the beat jobs
(schedules, triggers on synced changes, the watchdog). Every change is audited; every run
that should execute is handed to Celery once its row is committed (``transaction.on_commit``).
"""

from __future__ import annotations

import copy
import logging
import uuid
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import Organization
from core.errors import Conflict, ValidationFailed
from integrations.models import Connection, ConnectionStatus, CrmRecord

from .models import (
    TERMINAL_RUN_STATUSES,
    Approval,
    ApprovalStatus,
    RunStatus,
    TriggerKind,
    Workflow,
    WorkflowRun,
)
from .registry import graph_spec, graph_specs
from .runner import stale_before

logger = logging.getLogger("switchboard.workflows")
SYSTEM = Actor.system("workflows")


class WorkflowDisabled(Conflict):
    default_message = "This workflow is disabled."


def _enqueue(run_id: uuid.UUID) -> None:
    from .tasks import run_task

    transaction.on_commit(
        lambda: run_task.apply_async((str(run_id),), queue=settings.WORKFLOW_QUEUE)
    )


def workflow_ensure_defaults(organization: Organization) -> list[Workflow]:
    """One workflow per registered graph (key = graph key) for an organisation that has none
    of that graph yet; returns the organisation's workflows."""
    existing = set(
        Workflow.objects.filter(organization=organization).values_list("graph", flat=True)
    )
    for spec in graph_specs():
        if spec.key not in existing:
            Workflow.objects.get_or_create(
                organization=organization,
                key=spec.key,
                defaults={
                    "graph": spec.key,
                    "name": spec.name,
                    "config": spec.validate_config({}).model_dump(mode="json"),
                },
            )
    return list(Workflow.objects.filter(organization=organization).order_by("key"))


def workflow_update(*, workflow: Workflow, actor: Actor, changes: dict[str, Any]) -> Workflow:
    """Change a workflow's name, enabled, config, connection, schedule or trigger (validated)."""
    changes = dict(changes)  # the caller's dict stays as it was
    allowed = {
        "name",
        "enabled",
        "config",
        "connection_id",
        "schedule_seconds",
        "trigger",
        "trigger_object_type",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationFailed(
            "These fields cannot be changed.", details={"fields": sorted(unknown)}
        )
    if "config" in changes:
        changes["config"] = (
            graph_spec(workflow.graph).validate_config(changes["config"]).model_dump(mode="json")
        )
    before = {k: getattr(workflow, k) for k in changes}
    candidate = copy.copy(workflow)
    for name, value in changes.items():
        setattr(candidate, name, value)
    workflow_check(candidate)  # raises before the caller's object is touched
    for name, value in changes.items():
        setattr(workflow, name, value)
    if "schedule_seconds" in changes:
        workflow.next_run_at = (
            timezone.now() + timedelta(seconds=workflow.schedule_seconds)
            if workflow.schedule_seconds
            else None
        )
    if "trigger" in changes and workflow.trigger and workflow.trigger_checked_at is None:
        workflow.trigger_checked_at = timezone.now()
    with transaction.atomic():
        workflow.save()
        audit_record(
            actor=actor,
            action="workflow.update",
            entity_type="workflow",
            entity_id=workflow.pk,
            organization_id=workflow.organization_id,
            changes={k: {"from": _plain(before[k]), "to": _plain(v)} for k, v in changes.items()},
        )
    return workflow


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def workflow_check(workflow: Workflow) -> None:
    """The rules a workflow must keep (the admin form runs these too)."""
    spec = graph_spec(workflow.graph)
    spec.validate_config(workflow.config)
    if workflow.schedule_seconds is not None and workflow.schedule_seconds < 60:
        raise ValidationFailed(
            "A schedule runs at most once a minute.",
            details={"fields": {"schedule_seconds": "at least 60"}},
        )
    if workflow.trigger and workflow.trigger_object_type not in spec.trigger_object_types:
        raise ValidationFailed(
            f"The {spec.key} graph cannot start on a synced "
            f"{workflow.trigger_object_type or '(no type)'}.",
            details={
                "fields": {"trigger_object_type": "not supported"},
                "allowed": list(spec.trigger_object_types),
            },
        )
    if workflow.connection_id is not None:
        owner = (
            Connection.objects.filter(pk=workflow.connection_id)
            .values_list("organization_id", flat=True)
            .first()
        )
        if owner != workflow.organization_id:
            raise ValidationFailed(
                "The connection is not this organisation's.",
                details={"fields": {"connection_id": "unknown connection"}},
            )


def _connection_for(workflow: Workflow, connection_id: uuid.UUID | None) -> uuid.UUID:
    """The id of the active connection a run of ``workflow`` uses (only ids are read: a
    connection's row holds encrypted tokens, decrypted whenever it is loaded)."""
    chosen = connection_id or workflow.connection_id
    usable = Connection.objects.filter(
        organization_id=workflow.organization_id, status=ConnectionStatus.ACTIVE
    ).values_list("pk", flat=True)
    if chosen is not None:
        found = usable.filter(pk=chosen).first()
        if found is None:
            raise ValidationFailed(
                "No active connection with this id in the organisation.",
                details={"fields": {"connection_id": "unknown or inactive connection"}},
            )
        return found
    candidates = list(usable[:2])
    if len(candidates) != 1:
        raise ValidationFailed(
            "Choose the connection to run on: the organisation has "
            f"{'no' if not candidates else 'more than one'} active connection.",
            details={"fields": {"connection_id": "required"}},
        )
    return candidates[0]


def run_start(
    *,
    workflow: Workflow,
    actor: Actor,
    trigger: str,
    input: dict[str, Any] | None = None,
    connection_id: uuid.UUID | None = None,
) -> WorkflowRun:
    """Create a queued run (input validated by the graph) and send it to a worker."""
    if not workflow.enabled:
        raise WorkflowDisabled(details={"workflow": workflow.key})
    spec = graph_spec(workflow.graph)
    clean_input = spec.validate_input(input).model_dump(mode="json")
    config = spec.validate_config(workflow.config).model_dump(mode="json")
    chosen_connection = _connection_for(workflow, connection_id)
    run_id = uuid.uuid4()
    with transaction.atomic():
        run = WorkflowRun.objects.create(
            id=run_id,
            organization_id=workflow.organization_id,
            workflow=workflow,
            connection_id=chosen_connection,
            graph=workflow.graph,
            thread_id=str(run_id),
            trigger=trigger,
            requested_by=actor.label[:200],
            input=clean_input,
            config=config,
        )
        audit_record(
            actor=actor,
            action="workflow_run.start",
            entity_type="workflow_run",
            entity_id=run.pk,
            organization_id=run.organization_id,
            changes={"workflow": workflow.key, "trigger": trigger},
        )
        _enqueue(run.pk)
    return run


async def arun_start(**kwargs: Any) -> WorkflowRun:
    return await sync_to_async(run_start)(**kwargs)


def run_cancel(*, run: WorkflowRun, actor: Actor) -> WorkflowRun:
    """Cancel a run: at once when no worker is on it, else between two of its steps."""
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        if run.status in TERMINAL_RUN_STATUSES:
            raise Conflict(
                f"The run has already ended ({run.status}).", details={"status": run.status}
            )
        run.cancel_requested = True
        fields = ["cancel_requested", "updated_at"]
        if run.status in (RunStatus.QUEUED, RunStatus.WAITING_APPROVAL):
            run.status = RunStatus.CANCELLED
            run.finished_at = timezone.now()
            fields += ["status", "finished_at"]
            run.approvals.filter(status=ApprovalStatus.PENDING).update(
                status=ApprovalStatus.CANCELLED, decided_at=timezone.now()
            )
        run.save(update_fields=fields)
        audit_record(
            actor=actor,
            action="workflow_run.cancel",
            entity_type="workflow_run",
            entity_id=run.pk,
            organization_id=run.organization_id,
        )
    return run


def run_retry(*, run: WorkflowRun, actor: Actor) -> WorkflowRun:
    """A new run that continues a failed or cancelled one from its last checkpoint (same
    thread, ``attempt`` + 1, ``retry_of``)."""
    with transaction.atomic():
        # Locked: two retries of one run at once would fork its thread.
        run = WorkflowRun.objects.select_for_update().get(pk=run.pk)
        if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise Conflict(
                "Only a failed or cancelled run can be retried.", details={"status": run.status}
            )
        workflow = Workflow.objects.get(pk=run.workflow_id)
        if not workflow.enabled:
            raise WorkflowDisabled(details={"workflow": workflow.key})
        config = graph_spec(run.graph).validate_config(workflow.config).model_dump(mode="json")
        if WorkflowRun.objects.filter(retry_of=run).exists():
            raise Conflict(
                "This run was already retried; retry the newest run of the chain.",
                details={"retries": [str(r) for r in run.retries.values_list("pk", flat=True)]},
            )
        retry = WorkflowRun.objects.create(
            organization_id=run.organization_id,
            workflow=workflow,
            connection_id=run.connection_id,
            graph=run.graph,
            thread_id=run.thread_id,
            trigger=run.trigger,
            requested_by=actor.label[:200],
            input=run.input,
            config=config,
            attempt=run.attempt + 1,
            retry_of=run,
        )
        audit_record(
            actor=actor,
            action="workflow_run.retry",
            entity_type="workflow_run",
            entity_id=retry.pk,
            organization_id=retry.organization_id,
            changes={"retry_of": str(run.pk), "attempt": retry.attempt},
        )
        _enqueue(retry.pk)
    return retry


def approval_decide(
    *, approval: Approval, approved: bool, actor: Actor, comment: str = ""
) -> Approval:
    """Approve or reject a pending approval; its run is queued to resume on that branch."""
    with transaction.atomic():
        approval = Approval.objects.select_for_update().select_related("run").get(pk=approval.pk)
        if approval.status != ApprovalStatus.PENDING:
            raise Conflict(
                f"This approval was already decided ({approval.status}).",
                details={"status": approval.status},
            )
        run = WorkflowRun.objects.select_for_update().get(pk=approval.run_id)
        if run.status != RunStatus.WAITING_APPROVAL:
            raise Conflict(
                f"The run is not waiting for approval ({run.status}).",
                details={"status": run.status},
            )
        approval.status = ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED
        approval.decided_by = actor.label[:200]
        approval.decided_at = timezone.now()
        approval.comment = comment[:5000]
        approval.save(update_fields=["status", "decided_by", "decided_at", "comment"])
        waiting = run.approvals.filter(status=ApprovalStatus.PENDING).exists()
        if not waiting:
            run.status = RunStatus.QUEUED
            run.save(update_fields=["status", "updated_at"])
            _enqueue(run.pk)
        audit_record(
            actor=actor,
            action="approval.approve" if approved else "approval.reject",
            entity_type="approval",
            entity_id=approval.pk,
            organization_id=approval.organization_id,
            changes={"run": str(run.pk), "comment": approval.comment},
        )
    return approval


def runs_watchdog() -> int:
    """Queue again the running runs whose worker went silent (it died), and send again the
    queued runs no worker took for a lease's length (a lost message); returns how many."""
    stale = list(
        WorkflowRun.objects.filter(
            status=RunStatus.RUNNING, heartbeat_at__lt=stale_before()
        ).values_list("pk", flat=True)[:500]
    )
    requeued = 0
    for run_id in stale:
        with transaction.atomic():
            taken = WorkflowRun.objects.filter(
                pk=run_id, status=RunStatus.RUNNING, heartbeat_at__lt=stale_before()
            ).update(status=RunStatus.QUEUED, lease_owner="", updated_at=timezone.now())
            if taken:
                requeued += 1
                _enqueue(run_id)
                logger.warning("workflow run %s lost its worker; queued again", run_id)
    # A second message for a run whose first one is still coming is harmless: one claim wins.
    forgotten = list(
        WorkflowRun.objects.filter(
            status=RunStatus.QUEUED, updated_at__lt=stale_before()
        ).values_list("pk", flat=True)[:500]
    )
    for run_id in forgotten:
        with transaction.atomic():
            WorkflowRun.objects.filter(pk=run_id).update(updated_at=timezone.now())
            _enqueue(run_id)
    return requeued + len(forgotten)


def workflows_schedule_due() -> int:
    """Start the scheduled workflows that are due; returns how many runs were started."""
    now = timezone.now()
    started = 0
    due = Workflow.objects.filter(
        enabled=True, schedule_seconds__isnull=False, next_run_at__lte=now
    )
    for workflow in due:
        with transaction.atomic():
            claimed = Workflow.objects.filter(
                pk=workflow.pk, next_run_at=workflow.next_run_at
            ).update(next_run_at=now + timedelta(seconds=workflow.schedule_seconds or 0))
            if not claimed:
                continue
            if WorkflowRun.objects.filter(workflow=workflow).active().exists():
                continue  # the previous scheduled run is still going: skip this tick
            try:
                run_start(workflow=workflow, actor=SYSTEM, trigger="schedule")
                started += 1
            except (ValidationFailed, Conflict) as exc:
                logger.warning("scheduled workflow %s not started: %s", workflow.pk, exc.message)
    return started


def workflow_triggers_scan() -> int:
    """Start runs for mirror records created or changed since each triggered workflow last
    looked (at most ``WORKFLOW_TRIGGER_MAX_RUNS`` per workflow per scan)."""
    started = 0
    for workflow in Workflow.objects.filter(enabled=True).exclude(trigger=TriggerKind.NONE):
        spec = graph_spec(workflow.graph)
        if spec.trigger_input is None:
            continue
        since = workflow.trigger_checked_at or workflow.updated_at
        records = CrmRecord.objects.live().filter(
            connection__organization_id=workflow.organization_id,
            object_type=workflow.trigger_object_type,
        )
        if workflow.connection_id:
            records = records.filter(connection_id=workflow.connection_id)
        stamp = "created_at" if workflow.trigger == TriggerKind.CREATED else "synced_at"
        changed = records.filter(**{f"{stamp}__gt": since})
        latest = changed.order_by(f"-{stamp}").values_list(stamp, flat=True).first()
        if latest is None:
            continue
        cap = settings.WORKFLOW_TRIGGER_MAX_RUNS
        batch = list(changed.order_by(stamp, "id")[: cap + 1])
        if len(batch) > cap:
            # A burst (a bulk import) would start a run per record: start the first ``cap``
            # and say so, rather than flood the queue.
            logger.warning(
                "workflow %s: more than %d %s records changed at once; the rest start no run",
                workflow.pk,
                cap,
                workflow.trigger_object_type,
            )
            batch = batch[:cap]
        for record in batch:
            try:
                run_start(
                    workflow=workflow,
                    actor=SYSTEM,
                    trigger="sync",
                    input=spec.trigger_input(record),
                    connection_id=record.connection_id,
                )
                started += 1
            except (ValidationFailed, Conflict) as exc:
                logger.warning("triggered workflow %s not started: %s", workflow.pk, exc.message)
        Workflow.objects.filter(pk=workflow.pk).update(trigger_checked_at=latest)
    return started
