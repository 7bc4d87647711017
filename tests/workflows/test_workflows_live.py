"""Workflows through real Celery workers on Redis and PostgreSQL, against the sandbox over HTTP:
approve -> the change is at the sandbox once; reject -> nothing written; a worker SIGKILLed in
the middle of the write step -> a new worker resumes the run from its checkpoint and the CRM
write happens exactly once.

Each test has a queue of its own (``WORKFLOW_QUEUE`` and ``OUTBOX_QUEUE``), so messages left in
Redis by another test are never consumed here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.audit import Actor
from config.celery import app
from integrations.models import Connection, CrmWrite, WriteStatus
from integrations.services.calls import crm_client_for
from tests.workers import Worker, celery_worker, live_queue
from workflows.models import (
    Approval,
    ApprovalStatus,
    RunStatus,
    RunStep,
    Workflow,
    WorkflowRun,
)
from workflows.services import approval_decide, run_start

from .conftest import WRITE_ID, Lead, make_lead, output

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
ACTOR = Actor(label="live-tester")


@pytest.fixture
def queue() -> Iterator[str]:
    with live_queue("test-workflows", "live workflow tests") as name:
        yield name


@pytest.fixture
def live(wf_settings: Any, sandbox: Any, queue: str) -> dict[str, str]:
    """This process's settings and the workers' environment, matching."""
    s = wf_settings
    s.WORKFLOW_QUEUE = s.OUTBOX_QUEUE = queue
    s.WORKFLOW_LEASE_SECONDS = 3.0
    s.OUTBOX_LEASE_SECONDS = 4.0
    return {
        "WORKFLOW_QUEUE": queue,
        "OUTBOX_QUEUE": queue,
        "HUBSPOT_WRITE_ID_PROPERTY": WRITE_ID,
        "ENRICH_URL_TEMPLATE": f"{sandbox.url}/sites/{{domain}}/",
        "ENRICH_ALLOW_PRIVATE": "true",
        "WORKFLOW_LEASE_SECONDS": "3",
        "WORKFLOW_WRITE_WAIT_SECONDS": "30",
        "OUTBOX_LEASE_SECONDS": "4",
        "OUTBOX_BACKOFF_BASE_SECONDS": "0.2",
        "OUTBOX_BACKOFF_MAX_SECONDS": "1",
        "PROVIDER_TIMEOUT_SECONDS": "10",
    }


def wait_for(
    condition: Callable[[], bool],
    what: str,
    workers: list[Worker],
    *,
    timeout: float = 30.0,
    tick: Callable[[], None] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for worker in workers:
            assert worker.alive(), f"the worker died{worker.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + "".join(
            w.tail() for w in workers
        )
        if tick is not None:
            tick()
        time.sleep(0.2)


def status_of(run: WorkflowRun) -> str:
    run.refresh_from_db()
    return run.status


def contact_stage(connection: Connection, contact_id: str) -> Any:
    record = async_to_sync(crm_client_for(connection).get)("contact", contact_id).unwrap()
    return record.lifecycle_stage  # type: ignore[union-attr]


def start(workflow: Workflow, lead: Lead) -> WorkflowRun:
    return run_start(
        workflow=workflow, actor=ACTOR, trigger="api", input={"contact_id": lead.contact_id}
    )


def notes_at_sandbox(sandbox: Any) -> dict[str, Any]:
    stats: dict[str, Any] = sandbox.hubspot_stats(object_type="notes")
    return stats


def test_approve_writes_once_and_reject_writes_nothing(
    hubspot: Connection,
    workflows: dict[str, Workflow],
    sandbox: Any,
    live: dict[str, str],
    tmp_path: Path,
) -> None:
    approved_lead = make_lead(hubspot)
    rejected_lead = make_lead(hubspot, domain="umbrella-labs.example.com")
    with celery_worker(tmp_path, queues=live["WORKFLOW_QUEUE"], env=live) as worker:
        approved = start(workflows["lead_qualification"], approved_lead)
        rejected = start(workflows["lead_qualification"], rejected_lead)
        for run in (approved, rejected):
            wait_for(
                lambda run=run: status_of(run) == RunStatus.WAITING_APPROVAL,  # type: ignore[misc]
                "waiting_approval",
                [worker],
            )
        assert not CrmWrite.objects.exists(), "nothing is written before a person decides"

        approval_decide(approval=Approval.objects.get(run=approved), approved=True, actor=ACTOR)
        approval_decide(approval=Approval.objects.get(run=rejected), approved=False, actor=ACTOR)
        for run in (approved, rejected):
            wait_for(
                lambda run=run: status_of(run) == RunStatus.SUCCEEDED,  # type: ignore[misc]
                "succeeded",
                [worker],
            )

    assert output(approved)["outcome"] == "written"
    assert output(rejected)["outcome"] == "rejected"
    writes = CrmWrite.objects.filter(source="agent")
    assert sorted(writes.values_list("object_type", "status")) == [
        ("contact", WriteStatus.SUCCEEDED),
        ("note", WriteStatus.SUCCEEDED),
    ]
    assert contact_stage(hubspot, approved_lead.contact_id) == output(approved)["stage"]
    assert contact_stage(hubspot, rejected_lead.contact_id) == "lead"
    notes = notes_at_sandbox(sandbox)
    assert notes["live"] == 1, notes
    assert not any(notes["duplicates"].values()), notes
    assert Approval.objects.get(run=rejected).status == ApprovalStatus.REJECTED


def test_a_worker_killed_in_the_write_step_resumes_from_the_checkpoint_and_writes_once(
    hubspot: Connection,
    workflows: dict[str, Workflow],
    sandbox: Any,
    live: dict[str, str],
    tmp_path: Path,
) -> None:
    lead = make_lead(hubspot)
    queue = live["WORKFLOW_QUEUE"]
    with celery_worker(tmp_path, queues=queue, env=live, name="first") as first:
        run = start(workflows["lead_qualification"], lead)
        wait_for(lambda: status_of(run) == RunStatus.WAITING_APPROVAL, "approval", [first])
        # Every CRM call now takes 3 s: the worker will be inside the write when it dies.
        sandbox.faults(latency_ms=3000)
        approval_decide(approval=Approval.objects.get(run=run), approved=True, actor=ACTOR)
        wait_for(
            lambda: CrmWrite.objects.filter(status=WriteStatus.SENDING).exists(),
            "a write in flight",
            [first],
        )
        first.kill()

    assert status_of(run) == RunStatus.RUNNING
    in_flight = RunStep.objects.get(run=run, node="apply_writes")
    assert in_flight.finished_at is None
    sandbox.faults()  # the provider is healthy again

    def beat() -> None:
        app.send_task("workflows.watchdog", queue=queue)
        app.send_task("integrations.outbox.sweep", queue=queue)

    with celery_worker(tmp_path, queues=queue, env=live, name="second") as second:
        wait_for(
            lambda: status_of(run) == RunStatus.SUCCEEDED,
            "the resumed run to succeed",
            [second],
            timeout=60,
            tick=beat,
        )

    run.refresh_from_db()
    assert run.deliveries >= 2, "a second worker took the run over"
    nodes = list(RunStep.objects.filter(run=run).values_list("node", flat=True))
    # Resumed from the checkpoint: the steps before the write ran once, the write step again.
    assert nodes.count("load") == 1
    assert nodes.count("score") == 1
    assert nodes.count("apply_writes") == 2
    writes = CrmWrite.objects.filter(source="agent")
    assert writes.count() == 2
    assert set(writes.values_list("status", flat=True)) == {WriteStatus.SUCCEEDED}
    assert contact_stage(hubspot, lead.contact_id) == output(run)["stage"]
    notes = notes_at_sandbox(sandbox)
    assert notes["live"] == 1, notes
    assert not any(notes["duplicates"].values()), notes
