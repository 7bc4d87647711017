"""Workflow services: schedules, triggers on synced changes, config and schedule validation,
and the chat model setting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent
from core.errors import ValidationFailed
from integrations.models import Connection
from integrations.providers.unified import ContactIn
from workflows.models import RunStatus, Workflow, WorkflowRun
from workflows.services import (
    WorkflowDisabled,
    run_start,
    workflow_triggers_scan,
    workflow_update,
    workflows_schedule_due,
)

from .conftest import create, drive

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="tester")


def test_a_scheduled_workflow_starts_when_due_and_not_while_its_last_run_is_active(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    hygiene = workflow_update(
        workflow=workflows["crm_hygiene"], actor=ACTOR, changes={"schedule_seconds": 3600}
    )
    assert hygiene.next_run_at is not None
    assert workflows_schedule_due() == 0  # not due yet
    Workflow.objects.filter(pk=hygiene.pk).update(next_run_at=timezone.now())
    assert workflows_schedule_due() == 1
    run = WorkflowRun.objects.get(workflow=hygiene)
    assert (run.trigger, run.status) == ("schedule", RunStatus.QUEUED)
    hygiene.refresh_from_db()
    assert hygiene.next_run_at is not None
    assert hygiene.next_run_at > timezone.now() + timedelta(minutes=59)
    Workflow.objects.filter(pk=hygiene.pk).update(next_run_at=timezone.now())
    assert workflows_schedule_due() == 0, "the previous run is still queued"
    assert WorkflowRun.objects.filter(workflow=hygiene).count() == 1


def test_a_trigger_starts_a_run_per_new_synced_contact(
    hubspot: Connection, workflows: dict[str, Workflow], settings: Any
) -> None:
    create(hubspot, "contact", ContactIn(email="before@example.com"))
    lead = workflow_update(
        workflow=workflows["lead_qualification"],
        actor=ACTOR,
        changes={"trigger": "created", "trigger_object_type": "contact"},
    )
    assert workflow_triggers_scan() == 0, "records synced before the trigger start nothing"
    new = [create(hubspot, "contact", ContactIn(email=f"new{i}@example.com")) for i in range(3)]
    assert workflow_triggers_scan() == 3
    runs = WorkflowRun.objects.filter(workflow=lead, trigger="sync")
    assert sorted(r.input["contact_id"] for r in runs) == sorted(c.id for c in new)
    assert workflow_triggers_scan() == 0, "each change starts one run"

    settings.WORKFLOW_TRIGGER_MAX_RUNS = 2
    for i in range(3):
        create(hubspot, "contact", ContactIn(email=f"burst{i}@example.com"))
    assert workflow_triggers_scan() == 2, "a burst is capped"
    assert workflow_triggers_scan() == 0


def test_workflow_changes_are_validated_and_audited(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    lead = workflows["lead_qualification"]
    with pytest.raises(ValidationFailed) as bad_config:
        workflow_update(workflow=lead, actor=ACTOR, changes={"config": {"mql_score": 500}})
    assert "config.mql_score" in bad_config.value.details["fields"]
    with pytest.raises(ValidationFailed):
        workflow_update(workflow=lead, actor=ACTOR, changes={"schedule_seconds": 5})
    with pytest.raises(ValidationFailed):
        workflow_update(
            workflow=lead,
            actor=ACTOR,
            changes={"trigger": "created", "trigger_object_type": "deal"},
        )
    with pytest.raises(ValidationFailed):
        workflow_update(workflow=lead, actor=ACTOR, changes={"graph": "crm_hygiene"})
    lead.refresh_from_db()
    assert lead.config["mql_score"] == 40
    assert lead.schedule_seconds is None

    workflow_update(workflow=lead, actor=ACTOR, changes={"enabled": False})
    assert AuditEvent.objects.filter(action="workflow.update", entity_id=str(lead.pk)).exists()
    with pytest.raises(WorkflowDisabled):
        run_start(workflow=lead, actor=ACTOR, trigger="api", input={"contact_id": "1"})


def test_run_input_is_validated_by_the_graph(
    hubspot: Connection, workflows: dict[str, Workflow]
) -> None:
    with pytest.raises(ValidationFailed) as missing:
        run_start(workflow=workflows["lead_qualification"], actor=ACTOR, trigger="api", input={})
    assert "input.contact_id" in missing.value.details["fields"]
    assert not WorkflowRun.objects.exists()


def test_a_chat_model_that_cannot_load_fails_the_run_with_a_code(
    hubspot: Connection, workflows: dict[str, Workflow], settings: Any
) -> None:
    settings.LLM_MODEL = "no_such_provider:some-model"
    run = run_start(
        workflow=workflows["lead_qualification"],
        actor=ACTOR,
        trigger="api",
        input={"contact_id": "1"},
    )
    run = drive(run)
    assert run.status == RunStatus.FAILED
    assert run.error_code == "service_unavailable"
    assert "no_such_provider:some-model" in run.error_message
