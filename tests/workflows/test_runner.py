"""The runner against the sandbox: a lead_qualification run waits for approval, resumes on the
decision, writes once through the outbox; cancel, retry, steps, failures."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from accounts.audit import Actor
from core.errors import Conflict, ServiceUnavailable
from integrations.models import Connection, CrmRecord, CrmWrite
from integrations.services.calls import crm_client_for
from workflows.models import (
    Approval,
    ApprovalStatus,
    RunStatus,
    RunStep,
    StepStatus,
    Workflow,
    WorkflowRun,
)
from workflows.services import (
    approval_decide,
    run_cancel,
    run_retry,
    run_start,
    runs_watchdog,
)
from workflows.tools import write_key

from .conftest import drive, make_lead, output

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="tester")


def test_lead_qualification_waits_for_approval_then_writes_once(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    lead = make_lead(hubspot)
    run = run_start(
        workflow=workflows["lead_qualification"],
        actor=ACTOR,
        trigger="api",
        input={"contact_id": lead.contact_id},
    )
    run = drive(run)
    assert run.status == RunStatus.WAITING_APPROVAL, (run.error_code, run.error_message)
    nodes = list(RunStep.objects.filter(run=run).values_list("node", "status"))
    assert nodes[:4] == [
        ("load", StepStatus.SUCCEEDED),
        ("enrich", StepStatus.SUCCEEDED),
        ("score", StepStatus.SUCCEEDED),
        ("propose", StepStatus.SUCCEEDED),
    ]
    assert nodes[4] == ("approval", StepStatus.INTERRUPTED)
    approval = Approval.objects.get(run=run)
    assert approval.status == ApprovalStatus.PENDING
    stage = approval.proposal[0]
    assert stage["object_type"] == "contact"
    assert stage["payload"]["lifecycle_stage"] in (
        "marketingqualifiedlead",
        "salesqualifiedlead",
    )
    change = approval.diff[0]["changes"][0]
    assert change["field"] == "lifecycle_stage"
    assert change["before"] == "lead"
    assert not CrmWrite.objects.exists()

    approval_decide(approval=approval, approved=True, actor=ACTOR, comment="ok")
    run = drive(run)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert output(run)["outcome"] == "written"
    writes = list(CrmWrite.objects.order_by("object_type"))
    assert [(w.object_type, w.status) for w in writes] == [
        ("contact", "succeeded"),
        ("note", "succeeded"),
    ]
    assert {w.source for w in writes} == {"agent"}
    assert {w.idempotency_key for w in writes} == {
        write_key(run.thread_id, "apply_writes", 0),
        write_key(run.thread_id, "apply_writes", 1),
    }
    contact = async_to_sync(crm_client_for(hubspot).get)("contact", lead.contact_id).unwrap()
    assert contact.lifecycle_stage == output(run)["stage"]  # type: ignore[union-attr]
    # The step that paused ran again on resume; the ones before it did not.
    timeline = list(RunStep.objects.filter(run=run).values_list("node", flat=True))
    assert timeline == [
        "load",
        "enrich",
        "score",
        "propose",
        "approval",
        "approval",
        "apply_writes",
        "finish",
    ]

    # Executing the finished run again does nothing (a redelivered task).
    assert drive(run).status == RunStatus.SUCCEEDED
    assert CrmWrite.objects.count() == 2


def start(workflows: dict[str, Workflow], contact_id: str, **config: Any) -> WorkflowRun:
    workflow = workflows["lead_qualification"]
    if config:
        workflow.config = workflow.config | config
        workflow.save()
    return run_start(
        workflow=workflow, actor=ACTOR, trigger="api", input={"contact_id": contact_id}
    )


def test_rejected_proposal_writes_nothing(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    lead = make_lead(hubspot)
    run = drive(start(workflows, lead.contact_id))
    approval_decide(approval=run.approvals.get(), approved=False, actor=ACTOR, comment="no")
    run = drive(run)
    assert run.status == RunStatus.SUCCEEDED
    assert output(run)["outcome"] == "rejected"
    assert output(run)["comment"] == "no"
    assert not CrmWrite.objects.exists()
    contact = async_to_sync(crm_client_for(hubspot).get)("contact", lead.contact_id).unwrap()
    assert contact.lifecycle_stage == "lead"  # type: ignore[union-attr]


def test_without_approval_required_the_run_writes_directly(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    lead = make_lead(hubspot)
    run = drive(start(workflows, lead.contact_id, require_approval=False))
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert not Approval.objects.exists()
    assert CrmWrite.objects.filter(status="succeeded").count() == 2


def test_an_unknown_contact_fails_the_run_with_its_code(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    run = drive(start(workflows, "999999999"))
    assert run.status == RunStatus.FAILED
    assert run.error_code == "not_found", run.error_message
    step = RunStep.objects.get(run=run)
    assert (step.node, step.status, step.error_code) == ("load", StepStatus.FAILED, "not_found")


def test_a_provider_outage_is_retried_by_the_node_retry_policy(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any, settings: Any
) -> None:
    lead = make_lead(hubspot)
    # Not in the mirror: the tool reads the provider, which fails twice with 503.
    CrmRecord.objects.filter(object_type="contact").delete()
    settings.PROVIDER_TIMEOUT_SECONDS = 2.0
    sandbox.faults(fail_next=2, fail_status=503)
    run = drive(start(workflows, lead.contact_id))
    assert run.status == RunStatus.WAITING_APPROVAL, (run.error_code, run.error_message)


def test_cancel_stops_the_run_between_steps(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    lead = make_lead(hubspot)
    run = start(workflows, lead.contact_id)

    async def cancel_after_load(payload: dict[str, Any]) -> None:
        if payload.get("name") == "load" and "result" in payload:
            await sync_to_async(run_cancel)(
                run=await WorkflowRun.objects.aget(pk=run.pk), actor=ACTOR
            )

    run = drive(run, on_event=cancel_after_load)
    assert run.status == RunStatus.CANCELLED
    assert list(RunStep.objects.filter(run=run).values_list("node", "status")) == [
        ("load", StepStatus.SUCCEEDED)
    ]
    with pytest.raises(Conflict):
        run_cancel(run=run, actor=ACTOR)


def test_cancel_while_waiting_for_approval_ends_the_run_and_its_approval(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    lead = make_lead(hubspot)
    run = drive(start(workflows, lead.contact_id))
    run = run_cancel(run=run, actor=ACTOR)
    assert run.status == RunStatus.CANCELLED
    assert run.approvals.get().status == ApprovalStatus.CANCELLED
    with pytest.raises(Conflict):
        approval_decide(approval=run.approvals.get(), approved=True, actor=ACTOR)


def test_retry_continues_a_failed_run_from_its_last_checkpoint(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    lead = make_lead(hubspot)
    run = start(workflows, lead.contact_id)

    async def fail_after_enrich(payload: dict[str, Any]) -> None:
        if payload.get("name") == "enrich" and "result" in payload:
            raise ServiceUnavailable("the model host is down", retryable=False)

    run = drive(run, on_event=fail_after_enrich)
    assert run.status == RunStatus.FAILED
    assert run.error_code == "service_unavailable"

    retry = run_retry(run=run, actor=ACTOR)
    assert (retry.attempt, retry.retry_of_id, retry.thread_id) == (2, run.pk, run.thread_id)
    retry = drive(retry)
    assert retry.status == RunStatus.WAITING_APPROVAL, retry.error_message
    # Continued after the checkpoint: load and enrich did not run again.
    assert list(RunStep.objects.filter(run=retry).values_list("node", flat=True)) == [
        "score",
        "propose",
        "approval",
    ]
    with pytest.raises(Conflict):
        run_retry(run=run, actor=ACTOR)  # a chain is retried from its newest run
    with pytest.raises(Conflict):
        run_retry(run=retry, actor=ACTOR)  # not failed


def test_the_watchdog_queues_a_run_whose_worker_went_silent(
    hubspot: Connection, workflows: dict[str, Workflow], settings: Any
) -> None:
    lead = make_lead(hubspot)
    run = start(workflows, lead.contact_id)
    WorkflowRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING,
        lease_owner="dead-worker",
        heartbeat_at=timezone.now() - timedelta(seconds=settings.WORKFLOW_LEASE_SECONDS + 1),
    )
    fresh = start(workflows, lead.contact_id)
    WorkflowRun.objects.filter(pk=fresh.pk).update(
        status=RunStatus.RUNNING, lease_owner="live-worker", heartbeat_at=timezone.now()
    )
    queued_long_ago = start(workflows, lead.contact_id)
    WorkflowRun.objects.filter(pk=queued_long_ago.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.WORKFLOW_LEASE_SECONDS + 1)
    )
    assert runs_watchdog() == 2, "the silent run and the forgotten queued one"
    queued_long_ago.refresh_from_db()
    assert queued_long_ago.updated_at > timezone.now() - timedelta(seconds=5)
    assert runs_watchdog() == 0
    run.refresh_from_db()
    assert (run.status, run.lease_owner) == (RunStatus.QUEUED, "")
    assert drive(run).status == RunStatus.WAITING_APPROVAL
    assert drive(fresh).status == RunStatus.RUNNING  # held by its live worker: not taken
