"""The admin as the run console: the runs list, a run's page (timeline, pending diff, approve /
reject), cancel and retry, approvals, the workflow form and "Trigger run"."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from langgraph.graph import StateGraph
from pydantic import BaseModel

from accounts.audit import Actor
from accounts.models import AuditEvent, Organization, User
from integrations.models import Connection, CrmWrite
from tests.factories import make_user
from tests.integrations.test_tokens import make_connection
from workflows import registry
from workflows.graphs.common import WorkflowConfig
from workflows.models import Approval, ApprovalStatus, RunStatus, Workflow, WorkflowRun
from workflows.services import run_start, workflow_update

from .conftest import drive, make_lead

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="tester")
RUNS = "/admin/workflows/workflowrun/"
APPROVALS = "/admin/workflows/approval/"
WORKFLOWS = "/admin/workflows/workflow/"


# Helpers


def login(user: User | None = None, **client_options: Any) -> tuple[Client, User]:
    user = user or make_user(is_staff=True, is_superuser=True)
    client = Client(**client_options)
    client.force_login(user)
    return client, user


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def act(client: Client, page: str, action: str, objects: list[Any], follow: bool = True) -> Any:
    return client.post(
        page, {"action": action, "_selected_action": [str(o.pk) for o in objects]}, follow=follow
    )


def make_run(workflow: Workflow, connection: Connection, **fields: Any) -> WorkflowRun:
    run_id = uuid.uuid4()
    defaults: dict[str, Any] = {
        "organization_id": workflow.organization_id,
        "graph": workflow.graph,
        "thread_id": str(run_id),
        "trigger": "api",
        "input": {"contact_id": "1"},
    }
    return WorkflowRun.objects.create(
        id=run_id, workflow=workflow, connection=connection, **(defaults | fields)
    )


def make_approval(run: WorkflowRun, **fields: Any) -> Approval:
    defaults: dict[str, Any] = {
        "organization_id": run.organization_id,
        "interrupt_id": uuid.uuid4().hex,
        "summary": "Move the contact on.",
        "proposal": [{"operation": "update", "object_type": "contact", "record_id": "7"}],
        "diff": [
            {
                "index": 0,
                "operation": "update",
                "object_type": "contact",
                "record_id": "7",
                "changes": [{"field": "lifecycle_stage", "before": "lead", "after": "customer"}],
            }
        ],
    }
    return Approval.objects.create(run=run, **(defaults | fields))


def run_url(run: WorkflowRun) -> str:
    return f"{RUNS}{run.pk}/change/"


def decide_url(approval: Approval) -> str:
    return f"{RUNS}{approval.run_id}/approvals/{approval.pk}/decide/"


@pytest.fixture
def lead_workflow(workflows: dict[str, Workflow]) -> Workflow:
    """lead_qualification without its note (the note write type is not in the outbox yet)."""
    return workflow_update(
        workflow=workflows["lead_qualification"],
        actor=ACTOR,
        changes={"config": {"add_note": False}},
    )


@pytest.fixture
def waiting(hubspot: Connection, lead_workflow: Workflow) -> WorkflowRun:
    """A lead_qualification run executed up to its approval."""
    lead = make_lead(hubspot)
    run = run_start(
        workflow=lead_workflow, actor=ACTOR, trigger="api", input={"contact_id": lead.contact_id}
    )
    run = drive(run)
    assert run.status == RunStatus.WAITING_APPROVAL, (run.error_code, run.error_message)
    return run


# The runs list


def test_runs_list_shows_badges_filters_and_no_n_plus_one(
    hubspot: Connection,
    workflows: dict[str, Workflow],
    other_org: Organization,  # the organisation filter shows from two organisations on
    django_assert_max_num_queries: Any,
) -> None:
    workflow = workflows["lead_qualification"]
    now = timezone.now()
    runs = {status: make_run(workflow, hubspot, status=status) for status in RunStatus}
    WorkflowRun.objects.filter(pk=runs[RunStatus.SUCCEEDED].pk).update(
        started_at=now - timedelta(seconds=2.5), finished_at=now, tokens_in=1200, tokens_out=34
    )
    client, _ = login()
    client.get(RUNS)  # warm up (session, content types)
    with CaptureQueriesContext(db) as few:
        response = client.get(RUNS)
    assert response.status_code == 200
    body = response.content.decode()
    for status in RunStatus:
        assert f">{status.label}</span>" in body, status
    assert 'class="sb-badge sb-amber"' in body
    assert 'class="sb-badge sb-red"' in body
    assert "2.5 s" in body
    assert "1,200 in / 34 out" in body
    assert body.count('class="field-status_badge"') == len(RunStatus)
    for query in ("?status__exact=failed", "?graph=lead_qualification", "?trigger=api"):
        assert query in body, query
    assert f"?organization__id__exact={workflow.organization_id}" in body
    assert "created_at__gte=" in body  # the date filter

    for _ in range(12):
        make_run(workflow, hubspot, status=RunStatus.FAILED)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(RUNS)
    assert response.content.decode().count('class="field-status_badge"') == len(RunStatus) + 12

    failed = client.get(RUNS, {"status__exact": "failed"}).content.decode()
    assert failed.count('class="field-status_badge"') == 13
    queued = runs[RunStatus.QUEUED]
    for term in (str(queued.pk), str(queued.pk)[:8]):  # the full id, the short one listed
        found = client.get(RUNS, {"q": term}).content.decode()
        assert found.count('class="field-status_badge"') == 1, term
        assert f">{str(queued.pk)[:8]}</a>" in found, term
    by_key = client.get(RUNS, {"q": "lead_qualification"}).content.decode()
    assert by_key.count('class="field-status_badge"') == len(RunStatus) + 12


# The run page and its approval


def test_run_page_shows_the_timeline_and_the_pending_diff(
    waiting: WorkflowRun, hubspot: Connection
) -> None:
    client, _ = login()
    body = client.get(run_url(waiting)).content.decode()
    for node in ("load", "enrich", "score", "propose", "approval"):
        assert f"<code>{node}</code>" in body, node
    assert "Waiting for a person" in body  # the interrupted step's badge
    assert "<summary>input</summary>" in body
    assert "<summary>output</summary>" in body
    approval = Approval.objects.get(run=waiting)
    stage = approval.proposal[0]["payload"]["lifecycle_stage"]
    assert "Waiting for approval" in body
    assert "<code>lifecycle_stage</code>" in body
    assert '<td class="wf-before">lead</td>' in body
    assert f'<td class="wf-after">{stage}</td>' in body
    assert f'action="{decide_url(approval)}"' in body
    assert 'name="decision" value="approve"' in body
    assert 'name="decision" value="reject"' in body
    assert "csrfmiddlewaretoken" in body
    assert "Cancel run" in body
    assert "Retry run" not in body
    assert hubspot.access_token not in body


def test_approving_on_the_run_page_resumes_the_run_and_writes(waiting: WorkflowRun) -> None:
    client, user = login()
    approval = Approval.objects.get(run=waiting)
    response = client.post(
        decide_url(approval), {"decision": "approve", "comment": "looks right"}, follow=True
    )
    assert response.redirect_chain[-1][0] == run_url(waiting)
    assert (
        "success",
        f"Approval for run {str(waiting.pk)[:8]} approved; the run is queued to continue.",
    ) in messages_of(response)
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert approval.decided_by == f"user:{user.email}"
    assert approval.comment == "looks right"
    assert WorkflowRun.objects.get(pk=waiting.pk).status == RunStatus.QUEUED

    run = drive(waiting)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert run.output is not None
    assert run.output["outcome"] == "written"
    writes = list(CrmWrite.objects.all())
    assert [(w.object_type, w.status) for w in writes] == [("contact", "succeeded")]

    body = client.get(run_url(run)).content.decode()
    assert "Decided approvals" in body
    assert "looks right" in body
    assert user.email in body
    assert "Waiting for approval" not in body
    assert "<code>apply_writes</code>" in body

    again = client.post(decide_url(approval), {"decision": "reject"}, follow=True)
    assert again.status_code == 200
    assert messages_of(again) == [
        (
            "error",
            f"Approval for run {str(run.pk)[:8]}: This approval was already decided (approved).",
        )
    ]


def test_rejecting_ends_the_run_without_writing(waiting: WorkflowRun) -> None:
    client, _ = login()
    approval = Approval.objects.get(run=waiting)
    response = client.post(decide_url(approval), {"decision": "reject", "comment": ""}, follow=True)
    assert (
        "success",
        f"Approval for run {str(waiting.pk)[:8]} rejected; the run is queued to continue.",
    ) in messages_of(response)
    run = drive(waiting)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert run.output is not None
    assert run.output["outcome"] == "rejected"
    assert not CrmWrite.objects.exists()


def test_deciding_takes_the_permission_a_csrf_token_and_a_decision(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    run = make_run(workflows["lead_qualification"], hubspot, status=RunStatus.WAITING_APPROVAL)
    approval = make_approval(run)
    viewer, _ = login(make_user(is_staff=True))
    assert viewer.post(decide_url(approval), {"decision": "approve"}).status_code == 403
    no_token, _ = login(enforce_csrf_checks=True)
    assert no_token.post(decide_url(approval), {"decision": "approve"}).status_code == 403
    client, _ = login()
    assert client.get(decide_url(approval)).status_code == 405
    response = client.post(decide_url(approval), {"decision": "maybe"}, follow=True)
    assert messages_of(response) == [("error", "Choose Approve or Reject.")]
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING
    assert not AuditEvent.objects.filter(action__startswith="approval.").exists()


# Cancel and retry


def test_cancel_and_retry_actions_report_outcomes_and_refusals(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    workflow = workflows["lead_qualification"]
    run = make_run(workflow, hubspot, status=RunStatus.WAITING_APPROVAL)
    approval = make_approval(run)
    client, _ = login()
    short = str(run.pk)[:8]

    response = act(client, RUNS, "cancel_runs", [run])
    assert messages_of(response) == [("success", f"Run {short} cancelled.")]
    run.refresh_from_db()
    approval.refresh_from_db()
    assert (run.status, approval.status) == (RunStatus.CANCELLED, ApprovalStatus.CANCELLED)
    response = act(client, RUNS, "cancel_runs", [run])
    assert messages_of(response) == [
        ("error", f"Run {short}: The run has already ended (cancelled).")
    ]

    response = act(client, RUNS, "retry_runs", [run])
    retry = WorkflowRun.objects.get(retry_of=run)
    assert (retry.attempt, retry.status, retry.thread_id) == (2, RunStatus.QUEUED, run.thread_id)
    [(level, text)] = messages_of(response)
    assert level == "success"
    assert "retried as" in text
    assert str(retry.pk) in text
    response = act(client, RUNS, "retry_runs", [run, retry])
    assert set(messages_of(response)) == {
        ("error", f"Run {short}: This run was already retried; retry the newest run of the chain."),
        ("error", f"Run {str(retry.pk)[:8]}: Only a failed or cancelled run can be retried."),
    }
    assert WorkflowRun.objects.count() == 2

    # The retry's page links back to the run it continues, and the run to its retry.
    assert run_url(run) in client.get(run_url(retry)).content.decode()
    assert run_url(retry) in client.get(run_url(run)).content.decode()


def test_run_page_buttons_cancel_and_retry(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    workflow = workflows["lead_qualification"]
    running = make_run(workflow, hubspot, status=RunStatus.RUNNING, started_at=timezone.now())
    failed = make_run(workflow, hubspot, status=RunStatus.FAILED, error_code="provider_error")
    client, _ = login()

    response = client.post(f"{RUNS}{running.pk}/cancel/", follow=True)
    assert response.redirect_chain[-1][0] == run_url(running)
    assert messages_of(response) == [
        (
            "success",
            f"Run {str(running.pk)[:8]}: cancel requested; it stops after its current step.",
        )
    ]
    running.refresh_from_db()
    assert running.cancel_requested
    assert running.status == RunStatus.RUNNING

    page = client.get(run_url(failed)).content.decode()
    assert "Retry run" in page
    assert "Cancel run" not in page
    assert "provider_error" in page
    response = client.post(f"{RUNS}{failed.pk}/retry/", follow=True)
    retry = WorkflowRun.objects.get(retry_of=failed)
    assert response.redirect_chain[-1][0] == run_url(retry)
    assert "Retry run" not in client.get(run_url(failed)).content.decode()

    # A refusal from the service is a message on the same page, not an error page.
    Workflow.objects.filter(pk=workflow.pk).update(enabled=False)
    cancelled = make_run(workflow, hubspot, status=RunStatus.CANCELLED)
    response = client.post(f"{RUNS}{cancelled.pk}/retry/", follow=True)
    assert response.redirect_chain[-1][0] == run_url(cancelled)
    assert messages_of(response) == [
        ("error", f"Run {str(cancelled.pk)[:8]}: This workflow is disabled.")
    ]

    viewer, _ = login(make_user(is_staff=True))
    assert viewer.post(f"{RUNS}{failed.pk}/cancel/").status_code == 403
    missing = client.post(f"{RUNS}{uuid.uuid4()}/cancel/", follow=True)
    assert missing.redirect_chain[-1][0] == RUNS


# Approvals


def test_approvals_list_pending_first_with_bulk_decisions(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    workflow = workflows["lead_qualification"]
    earlier = timezone.now() - timedelta(hours=1)
    first = make_approval(
        make_run(workflow, hubspot, status=RunStatus.WAITING_APPROVAL),
        summary="first pending",
        created_at=earlier,
    )
    decided = make_approval(
        make_run(workflow, hubspot, status=RunStatus.SUCCEEDED),
        summary="already decided",
        status=ApprovalStatus.APPROVED,
        decided_by="user:someone@example.com",
    )
    second = make_approval(
        make_run(workflow, hubspot, status=RunStatus.WAITING_APPROVAL),
        summary="second pending",
        created_at=earlier - timedelta(minutes=5),
    )
    client, _ = login()
    body = client.get(APPROVALS).content.decode()
    order = [body.index(s) for s in ("first pending", "second pending", "already decided")]
    assert order == sorted(order), "pending approvals come first, newest first"
    assert "someone@example.com" in body
    assert f"run {str(first.run_id)[:8]}" in body

    response = act(client, APPROVALS, "approve_selected", [first, decided])
    assert messages_of(response) == [
        (
            "success",
            f"Approval for run {str(first.run_id)[:8]} approved; the run is queued to continue.",
        ),
        (
            "error",
            f"Approval for run {str(decided.run_id)[:8]}: This approval was already decided (approved).",
        ),
        ("warning", "1 of 2 not decided."),
    ]
    act(client, APPROVALS, "reject_selected", [second])
    statuses = dict(Approval.objects.values_list("summary", "status"))
    assert statuses == {
        "first pending": "approved",
        "second pending": "rejected",
        "already decided": "approved",
    }
    assert WorkflowRun.objects.filter(status=RunStatus.QUEUED).count() == 2

    page = client.get(f"{APPROVALS}{second.pk}/change/").content.decode()
    assert "<code>lifecycle_stage</code>" in page
    assert '<td class="wf-after">customer</td>' in page


def test_a_run_with_two_approvals_continues_after_the_last_decision(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    run = make_run(workflows["lead_qualification"], hubspot, status=RunStatus.WAITING_APPROVAL)
    one, two = make_approval(run), make_approval(run)
    client, _ = login()
    short = str(run.pk)[:8]
    response = client.post(decide_url(one), {"decision": "approve"}, follow=True)
    assert messages_of(response) == [
        ("success", f"Approval for run {short} approved; it still waits for its other approvals.")
    ]
    assert WorkflowRun.objects.get(pk=run.pk).status == RunStatus.WAITING_APPROVAL
    page = client.get(run_url(run)).content.decode()
    assert page.count("Waiting for approval</h2>") == 1
    assert "Decided approvals" in page
    response = client.post(decide_url(two), {"decision": "reject"}, follow=True)
    assert messages_of(response) == [
        ("success", f"Approval for run {short} rejected; the run is queued to continue.")
    ]
    assert WorkflowRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


# Workflows


def form_data(workflow: Workflow, **changes: Any) -> dict[str, Any]:
    data = {
        "name": workflow.name,
        "enabled": "on",
        "config": '{"add_note": false}',
        "connection": str(workflow.connection_id or ""),
        "schedule_seconds": "",
        "trigger": "",
        "trigger_object_type": "",
        "_save": "Save",
    }
    return data | changes


def test_workflow_form_refuses_bad_values_and_saves_nothing(
    hubspot: Connection, workflows: dict[str, Workflow], other_org: Organization, sandbox: Any
) -> None:
    workflow = workflows["lead_qualification"]
    before = Workflow.objects.get(pk=workflow.pk)
    url = f"{WORKFLOWS}{workflow.pk}/change/"
    client, _ = login()
    page = client.get(url).content.decode()
    assert "Reads a contact and its company" in page  # the graph's description
    assert "mql_score" in page
    assert "Trigger run" in page
    assert hubspot.access_token not in page

    cases = {
        '{"mql_score": 500, "sql_score": "high"}': [
            "mql_score: Input should be less than or equal to 100",
            "sql_score: Input should be a valid integer",
        ],
        '{"mql_score": ': ["Enter a valid JSON."],
        "[1, 2]": ["Enter a JSON object"],
        '{"mql_scor": 50}': ["mql_scor: Extra inputs are not permitted"],
    }
    for config, errors in cases.items():
        response = client.post(url, form_data(workflow, config=config))
        assert response.status_code == 200, config
        body = response.content.decode()
        for error in errors:
            assert error in body, (config, error)
    other = make_connection(sandbox, other_org)
    refusals = {
        "A schedule runs at most once a minute.": {"schedule_seconds": "10"},
        "The lead_qualification graph cannot start on a synced deal.": {
            "trigger": "changed",
            "trigger_object_type": "deal",
        },
        "Select a valid choice.": {"connection": str(other.pk)},
    }
    for error, changes in refusals.items():
        response = client.post(url, form_data(workflow, **changes))
        assert response.status_code == 200, error
        assert error in response.content.decode(), error
    workflow.refresh_from_db()
    assert (workflow.config, workflow.schedule_seconds, workflow.trigger, workflow.updated_at) == (
        before.config,
        None,
        "",
        before.updated_at,
    )
    assert not AuditEvent.objects.filter(action="workflow.update").exists()


def test_workflow_form_saves_through_the_service(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    workflow = workflows["lead_qualification"]
    client, _ = login()
    response = client.post(
        f"{WORKFLOWS}{workflow.pk}/change/",
        form_data(
            workflow,
            name="Qualify leads",
            config='{"mql_score": 30}',
            connection=str(hubspot.pk),
            schedule_seconds="3600",
            trigger="changed",
            trigger_object_type="contact",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    workflow.refresh_from_db()
    assert workflow.name == "Qualify leads"
    assert workflow.connection_id == hubspot.pk
    assert workflow.config["mql_score"] == 30
    assert workflow.config["sql_score"] == 70
    assert workflow.next_run_at is not None
    assert workflow.trigger_checked_at is not None
    event = AuditEvent.objects.get(action="workflow.update")
    assert event.changes["schedule_seconds"] == {"from": None, "to": 3600}
    assert event.changes["connection_id"] == {"from": None, "to": str(hubspot.pk)}
    assert event.actor_label.startswith("user:")


def test_workflows_list_shows_the_last_run_without_n_plus_one(
    hubspot: Connection, workflows: dict[str, Workflow], org: Organization
) -> None:
    workflow = workflows["lead_qualification"]
    make_run(workflow, hubspot, status=RunStatus.SUCCEEDED)
    make_run(workflow, hubspot, status=RunStatus.FAILED)  # the newest
    client, _ = login()
    client.get(WORKFLOWS)
    with CaptureQueriesContext(db) as few:
        body = client.get(WORKFLOWS).content.decode()
    assert ">Failed</span>" in body
    assert ">Succeeded</span>" not in body
    for n in range(6):
        extra = Workflow.objects.create(
            organization=org,
            key=f"extra-{n}",
            graph=workflow.graph,
            name=f"Extra {n}",
            connection=hubspot,
            schedule_seconds=900,
        )
        make_run(extra, hubspot, status=RunStatus.QUEUED)
    with CaptureQueriesContext(db) as many:
        body = client.get(WORKFLOWS).content.decode()
    assert len(many.captured_queries) == len(few.captured_queries)
    assert body.count(">Queued</span>") == 6
    assert "every 15 min" in body

    # The workflow page lists its recent runs and links to all of them.
    page = client.get(f"{WORKFLOWS}{workflow.pk}/change/").content.decode()
    assert page.count('href="/admin/workflows/workflowrun/') >= 2
    link = f"{RUNS}?workflow__id__exact={workflow.pk}"
    assert link in page
    assert client.get(link).content.decode().count('class="field-status_badge"') == 2


# Trigger run


def test_trigger_run_validates_the_input_then_starts_a_queued_run(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    workflow = workflows["lead_qualification"]
    trigger = f"{WORKFLOWS}{workflow.pk}/trigger/"
    client, user = login()

    response = act(client, WORKFLOWS, "trigger_run", [workflow], follow=False)
    assert response.status_code == 302
    assert response["Location"] == trigger
    page = client.get(trigger).content.decode()
    assert "&quot;contact_id&quot;: &quot;&quot;" in page  # the required field, to fill in

    for raw, error in (
        ("{}", "contact_id: Field required"),
        ('{"contact_id": ""}', "contact_id: String should have at least 1 character"),
        ('{"contact_id": ', "Enter a valid JSON."),
    ):
        response = client.post(trigger, {"input": raw, "connection": ""})
        assert response.status_code == 200, raw
        assert error in response.content.decode(), raw
    assert not WorkflowRun.objects.exists()

    response = client.post(trigger, {"input": '{"contact_id": "901"}', "connection": ""})
    run = WorkflowRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == run_url(run)
    assert (run.status, run.trigger, run.input) == (
        RunStatus.QUEUED,
        "admin",
        {"contact_id": "901"},
    )
    assert run.requested_by == f"user:{user.email}"
    assert run.connection_id == hubspot.pk

    Workflow.objects.filter(pk=workflow.pk).update(enabled=False)
    response = client.post(trigger, {"input": '{"contact_id": "902"}', "connection": ""})
    assert response.status_code == 200
    assert "This workflow is disabled." in response.content.decode()
    assert WorkflowRun.objects.count() == 1

    viewer, _ = login(make_user(is_staff=True))
    assert viewer.get(trigger).status_code == 403


class NoInput(BaseModel):
    pass


def test_trigger_action_starts_graphs_that_need_no_input(
    hubspot: Connection, workflows: dict[str, Workflow], org: Organization, monkeypatch: Any
) -> None:
    spec = registry.GraphSpec(
        key="ping",
        name="Ping",
        description="Needs no input.",
        build=lambda: StateGraph(dict),
        config_schema=WorkflowConfig,
        input_schema=NoInput,
    )
    monkeypatch.setitem(registry._GRAPHS, "ping", spec)
    ping = Workflow.objects.create(organization=org, key="ping", graph="ping", name="Ping")
    client, _ = login()

    response = act(client, WORKFLOWS, "trigger_run", [ping])
    run = WorkflowRun.objects.get(workflow=ping)
    assert response.redirect_chain[-1][0] == run_url(run)
    assert run.status == RunStatus.QUEUED
    assert run.trigger == "admin"

    lead = workflows["lead_qualification"]
    response = act(client, WORKFLOWS, "trigger_run", [ping, lead])
    levels = sorted(level for level, _ in messages_of(response))
    assert levels == ["success", "warning"]
    assert WorkflowRun.objects.filter(workflow=ping).count() == 2
    assert not WorkflowRun.objects.filter(workflow=lead).exists()
