"""deal_followup against the HubSpot sandbox, deterministic path: which deals count as idle
(open stage, no activity for idle_days: the last logged activity, else the last change), the
approval's diff, the tasks or notes an approval logs (read back from the sandbox), a rejection
that logs none; config and input checks; Salesforce's stage names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import Organization
from core.errors import ErrorCode, ValidationFailed
from integrations.models import Connection, CrmRecord, CrmWrite
from integrations.providers.unified import CompanyIn, DealIn
from integrations.services.calls import crm_client_for
from tests.integrations.test_salesforce_connections import make_sf_connection
from workflows.models import Approval, RunStatus, Workflow, WorkflowRun
from workflows.services import (
    approval_decide,
    run_start,
    workflow_ensure_defaults,
    workflow_update,
)

from .conftest import create, drive

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="tester")
OWNER = "7001"


def age(connection: Connection, deal_id: str, *, changed: int, activity: int | None = None) -> None:
    """Make the mirror say the deal last changed ``changed`` days ago and (``activity``) had
    its last activity logged then, as a sync of an older deal would."""
    now = timezone.now()
    row = CrmRecord.objects.get(connection=connection, object_type="deal", external_id=deal_id)
    row.remote_updated_at = now - timedelta(days=changed)
    if activity is not None:
        row.fields = {
            **row.fields,
            "last_activity_at": (now - timedelta(days=activity)).isoformat(),
        }
    row.save(update_fields=["remote_updated_at", "fields"])


@dataclass(frozen=True)
class Pipeline:
    company: str
    quiet: str  # changed 30 days ago, owned, on a company
    quiet_longer: str  # changed yesterday, but no activity for 40 days: idle
    busy: str  # activity 3 days ago
    won: str  # closed, quiet
    unowned: str  # quiet 20 days, no owner
    in_contract: str  # quiet 25 days, contractsent


def make_pipeline(connection: Connection) -> Pipeline:
    company = create(connection, "company", CompanyIn(name="Initech", domain="initech.test")).id

    def deal(name: str, stage: str = "appointmentscheduled", **more: Any) -> str:
        return str(
            create(
                connection, "deal", DealIn(name=name, stage=stage, amount=Decimal(5000), **more)
            ).id
        )

    p = Pipeline(
        company=company,
        quiet=deal("Initech renewal", owner_id=OWNER, company_id=company),
        quiet_longer=deal("Initech upsell", owner_id=OWNER, close_date=date(2027, 3, 31)),
        busy=deal("Hooli pilot", owner_id=OWNER),
        won=deal("Globex", stage="closedwon", owner_id=OWNER),
        unowned=deal("Umbrella"),
        in_contract=deal("Vandelay", stage="contractsent", owner_id="7002"),
    )
    age(connection, p.quiet, changed=30)
    age(connection, p.quiet_longer, changed=1, activity=40)
    age(connection, p.busy, changed=30, activity=3)
    age(connection, p.won, changed=90)
    age(connection, p.unowned, changed=20)
    age(connection, p.in_contract, changed=25)
    return p


def start(workflow: Workflow, **input: Any) -> WorkflowRun:
    return run_start(workflow=workflow, actor=ACTOR, trigger="api", input=input)


def out(run: WorkflowRun) -> dict[str, Any]:
    assert run.output is not None, (run.status, run.error_code, run.error_message)
    output: dict[str, Any] = run.output
    return output


def pending_approval(run: WorkflowRun) -> Approval:
    run = drive(run)
    assert run.status == RunStatus.WAITING_APPROVAL, (run.error_code, run.error_message)
    return Approval.objects.get(run=run)


def activity(connection: Connection, kind: str, record_id: str) -> Any:
    client = crm_client_for(connection)
    return async_to_sync(client.get_activity)(kind, record_id).unwrap()  # type: ignore[arg-type]


def posts(sandbox: Any, plural: str) -> int:
    return int(sandbox.counters()["requests"].get(f"POST /crm/v3/objects/{plural}", 0))


def test_idle_open_deals_get_a_task_for_their_owner_once_approved(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    p = make_pipeline(hubspot)
    approval = pending_approval(start(workflows["deal_followup"]))
    tasks = approval.proposal
    # Idlest first (by last activity, else last change); busy and closed deals are left.
    assert [t["payload"]["deal_id"] for t in tasks] == [
        p.quiet_longer,
        p.quiet,
        p.in_contract,
        p.unowned,
    ]
    assert {(t["operation"], t["object_type"]) for t in tasks} == {("create", "task")}
    due = (timezone.now().date() + timedelta(days=2)).isoformat()
    quiet = tasks[1]["payload"]
    assert quiet == {
        "subject": "Follow up: Initech renewal",
        "body": quiet["body"],
        "due_date": due,
        "priority": "medium",
        "deal_id": p.quiet,
        "owner_id": OWNER,
        "company_id": p.company,
    }
    assert "No activity for 30 days" in quiet["body"]
    assert "stage appointmentscheduled" in quiet["body"]
    assert "No activity for 40 days" in tasks[0]["payload"]["body"]
    assert "expected close 2027-03-31" in tasks[0]["payload"]["body"]
    assert "owner_id" not in tasks[3]["payload"]  # the unowned deal's task is unassigned
    diff = {c["field"]: c for c in approval.diff[1]["changes"]}
    assert diff["subject"] == {"field": "subject", "before": None, "after": quiet["subject"]}
    assert diff["due_date"]["after"] == due
    assert "4 idle deal(s)" in approval.summary
    assert "1 without an owner" in approval.summary
    assert not CrmWrite.objects.exists()
    assert posts(sandbox, "tasks") == 0

    approval_decide(approval=approval, approved=True, actor=ACTOR)
    run = drive(approval.run)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    output = out(run)
    assert output["outcome"] == "written"
    assert output["followups"] == 4
    assert output["unassigned"] == 1
    assert (output["open"], output["closed"], output["active"], output["idle"]) == (5, 1, 1, 4)
    assert output["drafted_by"] == "rules"
    assert posts(sandbox, "tasks") == 4  # once each
    written = {w["record_id"]: w for w in output["writes"]}
    assert len(written) == 4
    assert {w["status"] for w in output["writes"]} == {"succeeded"}
    assert CrmWrite.objects.filter(object_type="task", status="succeeded").count() == 4


def test_approved_tasks_read_back_from_the_sandbox(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    p = make_pipeline(hubspot)
    approval = pending_approval(start(workflows["deal_followup"], deal_ids=[p.quiet]))
    approval_decide(approval=approval, approved=True, actor=ACTOR)
    run = drive(approval.run)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    [write] = out(run)["writes"]
    task = activity(hubspot, "task", write["record_id"])
    assert task.subject == "Follow up: Initech renewal"
    assert (task.deal_id, task.company_id, task.owner_id) == (p.quiet, p.company, OWNER)
    assert task.due_date == timezone.now().date() + timedelta(days=2)
    assert (task.priority, task.status) == ("medium", "not_started")
    assert "No activity for 30 days" in (task.body or "")

    # The mirror hears of the task only at the next sync: a rerun does not repeat it.
    again = drive(start(workflows["deal_followup"], deal_ids=[p.quiet]))
    assert again.status == RunStatus.SUCCEEDED
    assert out(again)["outcome"] == "nothing_to_do"
    assert out(again)["not_followed_up"] == {p.quiet: "followed_up_recently"}
    assert posts(sandbox, "tasks") == 1


def test_deal_ids_restrict_and_say_why_the_others_were_left(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    p = make_pipeline(hubspot)
    approval = pending_approval(
        start(workflows["deal_followup"], deal_ids=[p.quiet, p.busy, p.won, "404404"])
    )
    assert [t["payload"]["deal_id"] for t in approval.proposal] == [p.quiet]
    approval_decide(approval=approval, approved=False, actor=ACTOR)
    output = out(drive(approval.run))
    assert output["not_followed_up"] == {p.busy: "active", p.won: "closed", "404404": "not_found"}


def test_a_rejection_logs_nothing(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    make_pipeline(hubspot)
    approval = pending_approval(start(workflows["deal_followup"]))
    approval_decide(approval=approval, approved=False, actor=ACTOR, comment="too pushy")
    run = drive(approval.run)
    assert run.status == RunStatus.SUCCEEDED
    assert out(run)["outcome"] == "rejected"
    assert out(run)["followups"] == 4
    assert not CrmWrite.objects.exists()
    assert posts(sandbox, "tasks") == 0
    assert posts(sandbox, "notes") == 0


def test_config_notes_closed_stages_limits_and_no_approval(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    p = make_pipeline(hubspot)
    workflow = workflow_update(
        workflow=workflows["deal_followup"],
        actor=ACTOR,
        changes={
            "config": {
                "activity": "note",
                "idle_days": 21,
                "max_deals": 1,
                "closed_stages": ["closedwon", "closedlost", "ContractSent"],
                "include_unowned": False,
                "require_approval": False,
            }
        },
    )
    run = drive(start(workflow))
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert not Approval.objects.filter(run=run).exists()
    output = out(run)
    # Idle 21+ days: quiet_longer (40) and quiet (30); in_contract is closed by config,
    # unowned (20 days) is not idle enough anyway; max_deals leaves one for later.
    assert (output["idle"], output["truncated"], output["closed"]) == (2, 1, 2)
    assert output["deals"] == [p.quiet_longer]
    [write] = output["writes"]
    note = activity(hubspot, "note", write["record_id"])
    assert note.deal_id == p.quiet_longer
    assert note.owner_id == OWNER
    assert (note.body or "").startswith("Follow up: Initech upsell")
    assert posts(sandbox, "notes") == 1
    assert posts(sandbox, "tasks") == 0


def test_nothing_idle_is_nothing_to_do(
    hubspot: Connection, workflows: dict[str, Workflow], sandbox: Any
) -> None:
    create(hubspot, "deal", DealIn(name="Fresh", stage="qualifiedtobuy"))
    run = drive(start(workflows["deal_followup"]))
    assert run.status == RunStatus.SUCCEEDED
    assert out(run)["outcome"] == "nothing_to_do"
    assert (out(run)["open"], out(run)["active"]) == (1, 1)
    assert not Approval.objects.filter(run=run).exists()


def test_bad_config_and_input_are_coded(workflows: dict[str, Workflow]) -> None:
    workflow = workflows["deal_followup"]
    with pytest.raises(ValidationFailed) as bad:
        workflow_update(
            workflow=workflow,
            actor=ACTOR,
            changes={
                "config": {
                    "idle_days": 0,
                    "activity": "email",
                    "closed_stages": ["closedwon", " "],
                    "priority": "urgent",
                }
            },
        )
    assert bad.value.code == ErrorCode.VALIDATION_FAILED
    assert set(bad.value.details["fields"]) == {
        "config.idle_days",
        "config.activity",
        "config.closed_stages",
        "config.priority",
    }
    for wrong, field in (
        ({"deal_ids": []}, "input.deal_ids"),
        ({"deal_ids": [""]}, "input.deal_ids"),
        ({"deal_ids": "123"}, "input.deal_ids"),
    ):
        with pytest.raises(ValidationFailed) as bad_input:
            start(workflow, **wrong)
        assert field in bad_input.value.details["fields"], wrong
    assert not WorkflowRun.objects.exists()


def test_salesforce_stages_and_tasks(wf_settings: Any, sandbox: Any, org: Organization) -> None:
    """Salesforce names its closed stages "Closed Won" / "Closed Lost" (and flags IsClosed);
    the follow-up is a Task on the Opportunity, assigned to its owner."""
    salesforce = make_sf_connection(sandbox, org)
    workflow = {w.key: w for w in workflow_ensure_defaults(org)}["deal_followup"]

    def opportunity(name: str, stage: str) -> Any:
        data = DealIn(name=name, stage=stage, close_date=date(2027, 6, 30), amount=Decimal(900))
        return create(salesforce, "deal", data)

    open_deal = opportunity("Acme platform", "Needs Analysis")
    won = opportunity("Acme pilot", "Closed Won")
    for deal in (open_deal, won):
        age(salesforce, deal.id, changed=30)
    approval = pending_approval(start(workflow))
    [task] = approval.proposal
    assert task["payload"]["deal_id"] == open_deal.id
    assert task["payload"]["owner_id"] == open_deal.owner_id
    approval_decide(approval=approval, approved=True, actor=ACTOR)
    run = drive(approval.run)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert (out(run)["closed"], out(run)["followups"]) == (1, 1)
    [write] = out(run)["writes"]
    written = activity(salesforce, "task", write["record_id"])
    assert (written.deal_id, written.subject) == (open_deal.id, "Follow up: Acme platform")
    assert written.owner_id == open_deal.owner_id
