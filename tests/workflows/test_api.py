"""The workflows API through Django's full stack: workflows (list, get, patch), runs (start,
list, get, cancel, retry) and approvals (list, get, approve, reject), run by ``drive`` against
the HubSpot sandbox, scoped to the caller's organisation."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest
import redis
from django.conf import settings
from django.test import Client
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent, Organization, Role
from integrations.models import Connection, CrmWrite
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok, new_key
from tests.factories import make_membership
from tests.integrations.test_tokens import make_connection
from workflows.models import (
    Approval,
    ApprovalStatus,
    RunStatus,
    Workflow,
    WorkflowRun,
)
from workflows.registry import graph_specs
from workflows.services import run_start, workflow_ensure_defaults

from .conftest import drive, make_lead

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="tester")
LEAD = "lead_qualification"


def patch(api: Api, path: str, body: Any) -> Any:
    return api.client.patch(
        path,
        orjson.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.key}"},
    )


def start(api: Api, body: dict[str, Any], key: str = LEAD) -> Any:
    return api.post(f"/api/v1/workflows/{key}/runs", body)


def no_note(workflow: Workflow) -> None:
    """Only the lifecycle stage is written (the note write type is not there yet)."""
    workflow.config = {**workflow.config, "add_note": False}
    workflow.save(update_fields=["config"])


@pytest.fixture
def other_api(other_org: Organization) -> Api:
    return Api(key=new_key(other_org))


@pytest.fixture
def waiting(
    api: Api, hubspot: Connection, workflows: dict[str, Workflow]
) -> tuple[WorkflowRun, Approval]:
    """A lead_qualification run started through the API and waiting for approval."""
    no_note(workflows[LEAD])
    lead = make_lead(hubspot)
    data = assert_envelope_ok(start(api, {"input": {"contact_id": lead.contact_id}}), 202)
    run = drive(uuid.UUID(data["id"]))
    assert run.status == RunStatus.WAITING_APPROVAL, (run.error_code, run.error_message)
    return run, Approval.objects.get(run=run)


# --- workflows --------------------------------------------------------------------------------


def test_workflows_list_shows_every_registered_graph_with_its_schemas(
    api: Api, org: Organization
) -> None:
    assert not Workflow.objects.filter(organization=org).exists()
    data = assert_envelope_ok(api.get("/api/v1/workflows"))
    keys = [w["key"] for w in data]
    assert keys == sorted(spec.key for spec in graph_specs())
    assert LEAD in keys
    assert Workflow.objects.filter(organization=org).count() == len(keys)
    lead = next(w for w in data if w["key"] == LEAD)
    assert lead["graph"] == LEAD
    assert lead["enabled"] is True
    assert lead["description"]
    assert lead["name"] == "Lead qualification"
    assert lead["config"]["add_note"] is True
    assert lead["config"]["require_approval"] is True
    assert {"add_note", "mql_score", "require_approval"} <= set(lead["config_schema"]["properties"])
    assert lead["input_schema"]["required"] == ["contact_id"]
    assert lead["trigger"] == ""
    assert lead["trigger_object_types"] == ["contact"]
    assert lead["connection_id"] is None
    assert lead["schedule_seconds"] is None
    assert lead["runs"] == {}
    assert lead["runs_url"] == f"/api/v1/workflows/{LEAD}/runs"
    # Listing again makes nothing new.
    assert len(assert_envelope_ok(api.get("/api/v1/workflows"))) == len(keys)
    assert Workflow.objects.filter(organization=org).count() == len(keys)


def test_workflow_counts_runs_by_status(
    api: Api, hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    for _ in range(2):
        assert_envelope_ok(start(api, {"input": {"contact_id": "1"}}), 202)
    WorkflowRun.objects.filter(pk=WorkflowRun.objects.values_list("pk", flat=True)[:1]).update(
        status=RunStatus.FAILED
    )
    data = assert_envelope_ok(api.get(f"/api/v1/workflows/{LEAD}"))
    assert data["runs"] == {"queued": 1, "failed": 1}
    listed = assert_envelope_ok(api.get("/api/v1/workflows"))
    assert next(w for w in listed if w["key"] == LEAD)["runs"] == {"queued": 1, "failed": 1}


def test_a_workflow_by_key_and_an_unknown_or_foreign_key_is_404(
    api: Api, org: Organization, other_org: Organization
) -> None:
    data = assert_envelope_ok(api.get(f"/api/v1/workflows/{LEAD}"))  # made on first use
    assert data["key"] == LEAD
    assert Workflow.objects.filter(organization=org, key=LEAD).exists()
    assert_envelope_error(api.get("/api/v1/workflows/no-such-thing"), 404, "not_found")
    Workflow.objects.create(organization=other_org, key="theirs", graph=LEAD, name="Theirs")
    assert_envelope_error(api.get("/api/v1/workflows/theirs"), 404, "not_found")
    body = {"enabled": False}
    assert_envelope_error(patch(api, "/api/v1/workflows/theirs", body), 404, "not_found")
    assert_envelope_error(start(api, {"input": {}}, key="theirs"), 404, "not_found")
    assert Workflow.objects.get(organization=other_org, key="theirs").enabled is True


def test_patch_changes_a_workflow_merging_its_config_and_audits(
    api: Api, org: Organization, hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    body = {
        "name": "Inbound leads",
        "config": {"add_note": False, "mql_score": 30},
        "schedule_seconds": 300,
        "trigger": "created",
        "trigger_object_type": "contact",
        "connection_id": str(hubspot.pk),
    }
    before = timezone.now()
    data = assert_envelope_ok(patch(api, f"/api/v1/workflows/{LEAD}", body))
    assert data["name"] == "Inbound leads"
    assert data["config"]["add_note"] is False
    assert data["config"]["mql_score"] == 30
    assert data["config"]["sql_score"] == 70  # untouched keys keep their values
    assert data["schedule_seconds"] == 300
    assert data["trigger"] == "created"
    assert data["connection_id"] == str(hubspot.pk)
    row = Workflow.objects.get(organization=org, key=LEAD)
    assert row.config["mql_score"] == 30
    assert row.name == "Inbound leads"
    assert row.next_run_at is not None
    assert row.next_run_at >= before + timedelta(seconds=299)
    event = AuditEvent.objects.get(action="workflow.update", entity_id=str(row.pk))
    assert event.organization_id == org.pk
    assert event.actor_label.startswith("api_key:")
    assert event.changes["name"] == {"from": "Lead qualification", "to": "Inbound leads"}
    # A config key set to null goes back to its default; null clears the schedule.
    data = assert_envelope_ok(
        patch(
            api,
            f"/api/v1/workflows/{LEAD}",
            {"config": {"mql_score": None}, "schedule_seconds": None},
        )
    )
    assert data["config"]["mql_score"] == 40
    assert data["config"]["add_note"] is False
    assert data["schedule_seconds"] is None
    assert Workflow.objects.get(pk=row.pk).next_run_at is None
    # An empty PATCH changes and audits nothing.
    audits = AuditEvent.objects.filter(action="workflow.update").count()
    assert (
        assert_envelope_ok(patch(api, f"/api/v1/workflows/{LEAD}", {}))["name"] == "Inbound leads"
    )
    assert AuditEvent.objects.filter(action="workflow.update").count() == audits


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"config": {"mql_score": 500}}, "config.mql_score"),
        ({"schedule_seconds": 30}, "schedule_seconds"),
        ({"trigger": "created", "trigger_object_type": "deal"}, "trigger_object_type"),
        ({"connection_id": str(uuid.uuid4())}, "connection_id"),
    ],
)
def test_patch_refuses_what_the_workflow_cannot_keep(
    api: Api, org: Organization, workflows: dict[str, Workflow], body: dict[str, Any], field: str
) -> None:
    response = patch(api, f"/api/v1/workflows/{LEAD}", body)
    error = assert_envelope_error(response, 422, "validation_failed")["error"]
    assert field in error["details"]["fields"], error
    row = Workflow.objects.get(organization=org, key=LEAD)
    assert row.config == workflows[LEAD].config
    assert row.schedule_seconds is None
    assert not AuditEvent.objects.filter(action="workflow.update").exists()


@pytest.mark.parametrize(
    "body",
    [{"enabled": None}, {"name": "  "}, {"graph": "other"}, {"trigger": "sometimes"}],
)
def test_patch_with_a_malformed_body_is_422(
    api: Api, workflows: dict[str, Workflow], body: dict[str, Any]
) -> None:
    response = patch(api, f"/api/v1/workflows/{LEAD}", body)
    assert_envelope_error(response, 422, "validation_failed")


def test_members_read_and_start_but_only_managers_patch(
    org: Organization, hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    member = Client()
    member.force_login(make_membership(organization=org, role=Role.MEMBER).user)
    assert_envelope_ok(member.get(f"/api/v1/workflows/{LEAD}"))
    denied = member.patch(
        f"/api/v1/workflows/{LEAD}", b'{"enabled": false}', content_type="application/json"
    )
    assert_envelope_error(denied, 403, "permission_denied")
    assert Workflow.objects.get(pk=workflows[LEAD].pk).enabled is True
    started = member.post(
        f"/api/v1/workflows/{LEAD}/runs",
        b'{"input": {"contact_id": "42"}}',
        content_type="application/json",
    )
    data = assert_envelope_ok(started, 202)
    assert data["requested_by"].startswith("user:")
    admin = Client()
    admin.force_login(make_membership(organization=org, role=Role.ADMIN).user)
    allowed = admin.patch(
        f"/api/v1/workflows/{LEAD}", b'{"enabled": false}', content_type="application/json"
    )
    assert assert_envelope_ok(allowed)["enabled"] is False


# --- starting runs ----------------------------------------------------------------------------


def _queued_messages(run_id: str) -> int:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        queue = getattr(settings, "WORKFLOW_QUEUE", "workflows")
        messages: list[bytes] = client.lrange(queue, 0, -1)  # type: ignore[assignment]
        return sum(run_id.encode() in m for m in messages)
    finally:
        client.close()


def test_starting_a_run_answers_202_with_location_and_queues_it(
    api: Api, org: Organization, hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    response = start(api, {"input": {"contact_id": "501"}})
    data = assert_envelope_ok(response, 202)
    assert response["Location"] == f"/api/v1/runs/{data['id']}" == data["url"]
    assert data["events_url"] == f"/api/v1/runs/{data['id']}/events"
    assert data["status"] == "queued"
    assert data["workflow"] == LEAD
    assert data["graph"] == LEAD
    assert data["input"] == {"contact_id": "501"}
    assert data["trigger"] == "api"
    assert data["connection_id"] == str(hubspot.pk)
    assert data["attempt"] == 1
    assert data["retry_of"] is None
    assert data["retries"] == []
    assert data["steps"] == []
    assert data["approvals"] == []
    assert data["pending_approval"] is None
    assert data["started_at"] is None
    assert data["duration_ms"] is None
    run = WorkflowRun.objects.get(pk=data["id"])
    assert run.organization_id == org.pk
    assert run.status == RunStatus.QUEUED
    assert run.requested_by == data["requested_by"]
    assert run.requested_by.startswith("api_key:")
    assert AuditEvent.objects.filter(action="workflow_run.start", entity_id=str(run.pk)).exists()
    if os.environ.get("REDIS_URL"):  # handed to Celery once committed
        assert _queued_messages(str(run.pk)) == 1
    # The location answers with the same run.
    assert assert_envelope_ok(api.get(response["Location"]))["id"] == data["id"]


def test_a_run_input_is_validated_by_the_graphs_schema(
    api: Api, hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    error = assert_envelope_error(start(api, {"input": {}}), 422, "validation_failed")["error"]
    assert "input.contact_id" in error["details"]["fields"]
    no_body = api.post(f"/api/v1/workflows/{LEAD}/runs", raw=b"")
    error = assert_envelope_error(no_body, 422, "validation_failed")["error"]
    assert error["details"]["fields"] == {"input.contact_id": "Field required"}
    long_id = {"input": {"contact_id": "x" * 65}}
    error = assert_envelope_error(start(api, long_id), 422, "validation_failed")["error"]
    assert "input.contact_id" in error["details"]["fields"]
    error = assert_envelope_error(start(api, {"input": 5}), 422, "validation_failed")["error"]
    assert error["details"]["errors"][0]["loc"] == ["body", "input"]
    assert_envelope_error(start(api, {"inputs": {}}), 422, "validation_failed")
    assert not WorkflowRun.objects.exists()


def test_starting_a_disabled_unknown_or_unconnected_workflow_fails_coded(
    api: Api, sandbox: Any, other_org: Organization, workflows: dict[str, Workflow]
) -> None:
    body = {"input": {"contact_id": "1"}}
    assert_envelope_error(start(api, body, key="no-such-workflow"), 404, "not_found")
    foreign = make_connection(sandbox, other_org)
    response = start(api, body | {"connection_id": str(foreign.pk)})
    error = assert_envelope_error(response, 422, "validation_failed")["error"]
    assert "connection_id" in error["details"]["fields"]
    Workflow.objects.filter(pk=workflows[LEAD].pk).update(enabled=False)
    body_ = assert_envelope_error(start(api, body), 409, "conflict")
    assert body_["error"]["details"] == {"workflow": LEAD}
    assert not WorkflowRun.objects.exists()


# --- a run's life: approval, steps, decisions ---------------------------------------------------


def test_a_run_shows_its_steps_timings_and_the_pending_approval_with_its_diff(
    api: Api, waiting: tuple[WorkflowRun, Approval]
) -> None:
    run, approval = waiting
    data = assert_envelope_ok(api.get(f"/api/v1/runs/{run.pk}"))
    assert data["status"] == "waiting_approval"
    steps = [(s["node"], s["status"]) for s in data["steps"]]
    assert steps == [
        ("load", "succeeded"),
        ("enrich", "succeeded"),
        ("score", "succeeded"),
        ("propose", "succeeded"),
        ("approval", "interrupted"),
    ]
    ids = [s["id"] for s in data["steps"]]
    assert ids == sorted(ids)
    load = data["steps"][0]
    assert load["finished_at"]
    assert load["duration_ms"] is not None
    assert load["duration_ms"] >= 0
    assert load["input_summary"]["contact_id"] == run.input["contact_id"]
    assert load["output_summary"]["contact"]["id"] == run.input["contact_id"]
    assert load["error"] is None
    assert data["started_at"]
    assert data["finished_at"] is None
    assert data["duration_ms"] > 0
    assert data["deliveries"] == 1
    assert data["config"]["add_note"] is False
    pending = data["pending_approval"]
    assert pending["id"] == str(approval.pk)
    assert pending["status"] == "pending"
    assert pending["approve_url"] == f"/api/v1/approvals/{approval.pk}/approve"
    assert pending["proposal"][0]["object_type"] == "contact"
    change = pending["diff"][0]["changes"][0]
    assert change["field"] == "lifecycle_stage"
    assert change["before"] == "lead"
    assert change["after"] in ("marketingqualifiedlead", "salesqualifiedlead")
    assert data["approvals"] == [pending]
    # The approval on its own, and in the pending list.
    assert assert_envelope_ok(api.get(pending["url"])) == pending
    listed = api.get("/api/v1/approvals", {"status": "pending"})
    assert [a["id"] for a in assert_envelope_ok(listed)] == [str(approval.pk)]


def test_approving_queues_the_run_which_then_writes(
    api: Api, waiting: tuple[WorkflowRun, Approval]
) -> None:
    run, approval = waiting
    response = api.post(f"/api/v1/approvals/{approval.pk}/approve", {"comment": "Go ahead"})
    data = assert_envelope_ok(response)
    assert data["approval"]["status"] == "approved"
    assert data["approval"]["comment"] == "Go ahead"
    assert data["approval"]["decided_by"].startswith("api_key:")
    assert data["approval"]["approve_url"] is None
    assert data["run"]["id"] == str(run.pk)
    assert data["run"]["status"] == "queued"
    row = Approval.objects.get(pk=approval.pk)
    assert row.status == ApprovalStatus.APPROVED
    assert row.decided_at is not None
    assert AuditEvent.objects.filter(action="approval.approve", entity_id=str(row.pk)).exists()
    again = api.post(f"/api/v1/approvals/{approval.pk}/reject", {})
    assert_envelope_error(again, 409, "conflict")
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.APPROVED

    done = drive(run)
    assert done.status == RunStatus.SUCCEEDED, (done.error_code, done.error_message)
    data = assert_envelope_ok(api.get(f"/api/v1/runs/{run.pk}"))
    assert data["status"] == "succeeded"
    assert data["pending_approval"] is None
    assert data["output"]["outcome"] == "written"
    assert data["finished_at"]
    assert [s["node"] for s in data["steps"]][-2:] == ["apply_writes", "finish"]
    assert CrmWrite.objects.filter(source="agent").count() == 1
    assert assert_envelope_ok(api.get("/api/v1/approvals", {"status": "pending"})) == []


def test_rejecting_ends_the_run_without_a_write(
    api: Api, waiting: tuple[WorkflowRun, Approval]
) -> None:
    run, approval = waiting
    data = assert_envelope_ok(api.post(f"/api/v1/approvals/{approval.pk}/reject", {}))
    assert data["approval"]["status"] == "rejected"
    assert data["approval"]["comment"] == ""
    done = drive(run)
    assert done.status == RunStatus.SUCCEEDED
    assert (done.output or {})["outcome"] == "rejected"
    assert not CrmWrite.objects.exists()


def test_a_decision_comment_is_limited(api: Api, waiting: tuple[WorkflowRun, Approval]) -> None:
    _, approval = waiting
    response = api.post(f"/api/v1/approvals/{approval.pk}/approve", {"comment": "x" * 5001})
    assert_envelope_error(response, 422, "validation_failed")
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING


def test_another_organisations_runs_and_approvals_are_404(
    other_api: Api, waiting: tuple[WorkflowRun, Approval]
) -> None:
    run, approval = waiting
    for path in (
        f"/api/v1/runs/{run.pk}",
        f"/api/v1/runs/{run.pk}/events",
        approval_path(approval),
    ):
        assert_envelope_error(other_api.get(path), 404, "not_found")
    for path in (
        f"/api/v1/runs/{run.pk}/cancel",
        f"/api/v1/runs/{run.pk}/retry",
        f"{approval_path(approval)}/approve",
        f"{approval_path(approval)}/reject",
    ):
        assert_envelope_error(other_api.post(path, {}), 404, "not_found")
    assert assert_envelope_ok(other_api.get("/api/v1/runs")) == []
    assert assert_envelope_ok(other_api.get("/api/v1/approvals")) == []
    assert WorkflowRun.objects.get(pk=run.pk).status == RunStatus.WAITING_APPROVAL
    assert Approval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING
    for path in ("/api/v1/runs/not-a-uuid", "/api/v1/approvals/42"):
        assert_envelope_error(other_api.get(path), 404, "not_found")


def approval_path(approval: Approval) -> str:
    return f"/api/v1/approvals/{approval.pk}"


# --- cancel and retry ---------------------------------------------------------------------------


def test_cancelling_a_queued_run_is_immediate_and_an_ended_run_is_409(
    api: Api, hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    data = assert_envelope_ok(start(api, {"input": {"contact_id": "9"}}), 202)
    response = api.post(f"/api/v1/runs/{data['id']}/cancel", {})
    cancelled = assert_envelope_ok(response, 200)
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancel_requested"] is True
    assert cancelled["finished_at"] is not None
    assert WorkflowRun.objects.get(pk=data["id"]).status == RunStatus.CANCELLED
    assert AuditEvent.objects.filter(action="workflow_run.cancel", entity_id=data["id"]).exists()
    again = assert_envelope_error(
        api.post(f"/api/v1/runs/{data['id']}/cancel", {}), 409, "conflict"
    )
    assert again["error"]["details"] == {"status": "cancelled"}


def test_cancelling_a_running_run_is_202_until_it_stops(
    api: Api, hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    data = assert_envelope_ok(start(api, {"input": {"contact_id": "9"}}), 202)
    # A worker holds it (as the runner's claim leaves it).
    WorkflowRun.objects.filter(pk=data["id"]).update(
        status=RunStatus.RUNNING, lease_owner="w1", started_at=timezone.now()
    )
    answer = assert_envelope_ok(api.post(f"/api/v1/runs/{data['id']}/cancel", {}), 202)
    assert answer["status"] == "running"
    assert answer["cancel_requested"] is True
    assert WorkflowRun.objects.get(pk=data["id"]).cancel_requested is True


def test_cancelling_a_run_waiting_for_approval_cancels_the_approval(
    api: Api, waiting: tuple[WorkflowRun, Approval]
) -> None:
    run, approval = waiting
    data = assert_envelope_ok(api.post(f"/api/v1/runs/{run.pk}/cancel", {}))
    assert data["status"] == "cancelled"
    assert data["pending_approval"] is None
    assert data["approvals"][0]["status"] == "cancelled"
    decided = api.post(f"/api/v1/approvals/{approval.pk}/approve", {})
    assert_envelope_error(decided, 409, "conflict")


def test_retrying_a_failed_run_makes_a_new_run_once(
    api: Api, hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    data = assert_envelope_ok(start(api, {"input": {"contact_id": "999999"}}), 202)
    failed = drive(uuid.UUID(data["id"]))
    assert failed.status == RunStatus.FAILED
    assert failed.error_code == "not_found"
    shown = assert_envelope_ok(api.get(f"/api/v1/runs/{failed.pk}"))
    assert shown["error"] == {"code": "not_found", "message": failed.error_message}
    assert shown["steps"][0]["status"] == "failed"
    assert shown["steps"][0]["error"]["code"] == "not_found"

    response = api.post(f"/api/v1/runs/{failed.pk}/retry", {})
    retry = assert_envelope_ok(response, 202)
    assert response["Location"] == f"/api/v1/runs/{retry['id']}"
    assert retry["id"] != str(failed.pk)
    assert retry["status"] == "queued"
    assert retry["attempt"] == 2
    assert retry["retry_of"] == str(failed.pk)
    assert retry["input"] == failed.input
    row = WorkflowRun.objects.get(pk=retry["id"])
    assert row.thread_id == failed.thread_id
    assert row.retry_of_id == failed.pk
    assert assert_envelope_ok(api.get(f"/api/v1/runs/{failed.pk}"))["retries"] == [retry["id"]]
    # The chain is retried from its newest run only; a queued run cannot be retried.
    assert_envelope_error(api.post(f"/api/v1/runs/{failed.pk}/retry", {}), 409, "conflict")
    queued = assert_envelope_error(
        api.post(f"/api/v1/runs/{retry['id']}/retry", {}), 409, "conflict"
    )
    assert queued["error"]["details"] == {"status": "queued"}
    assert WorkflowRun.objects.count() == 2


# --- listing runs -------------------------------------------------------------------------------


@pytest.fixture
def runs(
    org: Organization, hubspot: Connection, workflows: dict[str, Workflow]
) -> list[WorkflowRun]:
    """Five runs an hour apart (oldest first): the second failed, the third succeeded, the
    others queued; the last two of a second workflow."""
    second = Workflow.objects.create(
        organization=org, key="inbound-leads", graph=LEAD, name="Inbound", config={}
    )
    made = []
    base = timezone.now() - timedelta(hours=10)
    for index, workflow in enumerate([workflows[LEAD]] * 3 + [second] * 2):
        run = run_start(
            workflow=workflow, actor=ACTOR, trigger="api", input={"contact_id": str(index)}
        )
        WorkflowRun.objects.filter(pk=run.pk).update(created_at=base + timedelta(hours=index))
        made.append(WorkflowRun.objects.get(pk=run.pk))
    WorkflowRun.objects.filter(pk=made[1].pk).update(status=RunStatus.FAILED)
    WorkflowRun.objects.filter(pk=made[2].pk).update(status=RunStatus.SUCCEEDED)
    return made


def ids(response: Any) -> list[str]:
    return [r["id"] for r in assert_envelope_ok(response)]


def test_runs_list_newest_first_with_filters(
    api: Api, other_org: Organization, runs: list[WorkflowRun]
) -> None:
    newest_first = [str(r.pk) for r in reversed(runs)]
    assert ids(api.get("/api/v1/runs")) == newest_first
    assert ids(api.get("/api/v1/runs", {"status": "failed"})) == [str(runs[1].pk)]
    assert ids(api.get("/api/v1/runs", {"workflow": LEAD})) == newest_first[2:]
    assert ids(api.get("/api/v1/runs", {"workflow": "inbound-leads"})) == newest_first[:2]
    queued = [newest_first[0], newest_first[1], newest_first[4]]
    assert ids(api.get("/api/v1/runs", {"graph": LEAD, "status": "queued"})) == queued
    assert ids(api.get("/api/v1/runs", {"graph": "no_such_graph"})) == []
    after = (runs[1].created_at).isoformat()
    before = (runs[3].created_at).isoformat()
    window = {"created_after": after, "created_before": before}
    assert ids(api.get("/api/v1/runs", window)) == [str(runs[2].pk), str(runs[1].pk)]
    naive = runs[3].created_at.replace(tzinfo=None).isoformat()  # UTC without an offset
    assert ids(api.get("/api/v1/runs", {"created_after": naive})) == newest_first[:2]
    assert ids(api.get("/api/v1/runs", {"trigger": "schedule"})) == []
    # Each row carries its workflow key and links.
    row = assert_envelope_ok(api.get("/api/v1/runs", {"limit": 1}))[0]
    assert row["workflow"] == "inbound-leads"
    assert row["url"] == f"/api/v1/runs/{runs[4].pk}"
    assert "steps" not in row
    # Nothing of this organisation's shows to another.
    other = Api(key=new_key(other_org))
    assert ids(other.get("/api/v1/runs")) == []


@pytest.mark.parametrize(
    "params",
    [
        {"status": "sleeping"},
        {"created_after": "yesterday"},
        {"created_after": "2030-01-02T00:00:00Z", "created_before": "2030-01-01T00:00:00Z"},
        {"limit": 0},
        {"cursor": "x", "offset": 1},
    ],
)
def test_bad_run_filters_are_422(api: Api, params: dict[str, Any]) -> None:
    assert_envelope_error(api.get("/api/v1/runs", params), 422, "validation_failed")


def test_runs_paginate_by_cursor_and_offset(api: Api, runs: list[WorkflowRun]) -> None:
    first = api.get("/api/v1/runs", {"limit": 2})
    body = orjson.loads(first.content)
    page = body["meta"]["pagination"]
    assert page["has_more"] is True
    assert page["limit"] == 2
    assert page["next_cursor"]
    seen = [r["id"] for r in body["data"]]
    cursor = page["next_cursor"]
    while cursor:
        body = orjson.loads(api.get("/api/v1/runs", {"limit": 2, "cursor": cursor}).content)
        seen += [r["id"] for r in body["data"]]
        cursor = body["meta"]["pagination"]["next_cursor"]
    assert seen == [str(r.pk) for r in reversed(runs)]
    body = orjson.loads(api.get("/api/v1/runs", {"limit": 2, "offset": 4}).content)
    assert body["meta"]["pagination"]["total"] == 5
    assert [r["id"] for r in body["data"]] == [str(runs[0].pk)]
    assert body["meta"]["pagination"]["has_more"] is False


def test_approvals_list_filters_and_paginates(
    api: Api, org: Organization, waiting: tuple[WorkflowRun, Approval]
) -> None:
    run, approval = waiting
    older = Approval.objects.create(
        organization=org,
        run=run,
        interrupt_id="older",
        status=ApprovalStatus.REJECTED,
        created_at=approval.created_at - timedelta(minutes=5),
    )
    assert ids(api.get("/api/v1/approvals")) == [str(approval.pk), str(older.pk)]
    assert ids(api.get("/api/v1/approvals", {"status": "rejected"})) == [str(older.pk)]
    assert ids(api.get("/api/v1/approvals", {"run_id": str(run.pk), "status": "pending"})) == [
        str(approval.pk)
    ]
    assert ids(api.get("/api/v1/approvals", {"workflow": "nope"})) == []
    body = orjson.loads(api.get("/api/v1/approvals", {"limit": 1}).content)
    assert body["meta"]["pagination"]["has_more"] is True
    assert body["data"][0]["workflow"] == LEAD
    assert body["data"][0]["run_id"] == str(run.pk)
    assert_envelope_error(
        api.get("/api/v1/approvals", {"status": "maybe"}), 422, "validation_failed"
    )


# --- the document -------------------------------------------------------------------------------


def test_openapi_documents_the_workflow_routes(anon: Api) -> None:
    doc = orjson.loads(anon.client.get("/api/v1/openapi.json").content)
    paths = doc["paths"]
    expected = {
        "/api/v1/workflows": {"get"},
        "/api/v1/workflows/{key}": {"get", "patch"},
        "/api/v1/workflows/{key}/runs": {"post"},
        "/api/v1/runs": {"get"},
        "/api/v1/runs/{run_id}": {"get"},
        "/api/v1/runs/{run_id}/events": {"get"},
        "/api/v1/runs/{run_id}/cancel": {"post"},
        "/api/v1/runs/{run_id}/retry": {"post"},
        "/api/v1/approvals": {"get"},
        "/api/v1/approvals/{approval_id}": {"get"},
        "/api/v1/approvals/{approval_id}/approve": {"post"},
        "/api/v1/approvals/{approval_id}/reject": {"post"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) == methods, path
        for method in methods:
            assert paths[path][method]["summary"], (path, method)
    start_op = paths["/api/v1/workflows/{key}/runs"]["post"]["responses"]
    assert "202" in start_op
    assert "409" in start_op
    assert "422" in start_op
    events = paths["/api/v1/runs/{run_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert events["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorEnvelope"
    )
    assert "Last-Event-ID" in {p["name"] for p in events["parameters"]}


def test_ensure_defaults_leaves_a_renamed_workflow_alone(org: Organization, api: Api) -> None:
    workflow_ensure_defaults(org)
    Workflow.objects.filter(organization=org, key=LEAD).update(name="Mine")
    data = assert_envelope_ok(api.get(f"/api/v1/workflows/{LEAD}"))
    assert data["name"] == "Mine"


def test_a_decision_needs_no_body(api: Api, waiting: tuple[WorkflowRun, Approval]) -> None:
    _, approval = waiting
    response = api.post(f"/api/v1/approvals/{approval.pk}/reject", raw=b"")  # as curl -X POST
    assert assert_envelope_ok(response)["approval"]["status"] == "rejected"
