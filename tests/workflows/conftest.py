"""Workflows against the HubSpot sandbox: a connection, a lead in the mirror, and ``drive``
(execute a run in this process the way the Celery task does)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import Organization
from integrations.models import Connection
from integrations.providers.unified import CompanyIn, ContactIn, DealIn, RecordIn
from integrations.services.calls import crm_client_for
from integrations.sync.mirror import mirror_upsert
from tests.integrations.test_tokens import make_connection
from tests.workers import drop_queues
from workflows.models import Workflow, WorkflowRun
from workflows.runner import run_execute
from workflows.services import workflow_ensure_defaults

WRITE_ID = "switchboard_write_id"


@pytest.fixture(scope="session")
def workflow_queue() -> Iterator[str]:
    """This test session's run queue: messages no worker consumes (runs started by tests that
    drive them in-process) are dropped with it instead of piling up in Redis."""
    name = f"test-workflows-{uuid.uuid4().hex[:12]}"
    yield name
    drop_queues(name)


@pytest.fixture(autouse=True)
def _session_workflow_queue(settings: Any, workflow_queue: str) -> None:
    settings.WORKFLOW_QUEUE = workflow_queue


@pytest.fixture
def wf_settings(sandbox_settings: Any, sandbox: Any) -> Any:
    """Sandbox settings, the sandbox's websites for enrichment, the write-id property, short
    waits."""
    s = sandbox_settings
    s.PROVIDERS = dict(s.PROVIDERS) | {
        "hubspot": dict(s.PROVIDERS["hubspot"]) | {"write_id_property": WRITE_ID}
    }
    s.ENRICH_URL_TEMPLATE = f"{sandbox.url}/sites/{{domain}}/"
    s.ENRICH_ALLOW_PRIVATE = True
    s.ENRICH_TIMEOUT_SECONDS = 2.0
    s.OUTBOX_BACKOFF_BASE_SECONDS = 0.01
    s.OUTBOX_BACKOFF_MAX_SECONDS = 0.05
    s.WORKFLOW_WRITE_WAIT_SECONDS = 10.0
    return s


@pytest.fixture
def hubspot(wf_settings: Any, sandbox: Any, org: Organization) -> Connection:
    return make_connection(sandbox, org)


@pytest.fixture
def workflows(hubspot: Connection, org: Organization) -> dict[str, Workflow]:
    return {w.key: w for w in workflow_ensure_defaults(org)}


def create(connection: Connection, object_type: str, data: RecordIn) -> Any:
    """Create a record at the provider and put it in the mirror (as a sync would)."""
    client = crm_client_for(connection)
    record = async_to_sync(client.create)(object_type, data).unwrap()  # type: ignore[arg-type]
    mirror_upsert(connection_id=connection.pk, object_type=object_type, records=[record])  # type: ignore[arg-type]
    return record


@dataclass(frozen=True)
class Lead:
    contact_id: str
    company_id: str


def make_lead(
    connection: Connection,
    *,
    domain: str = "initech-systems.example.com",
    title: str = "VP Sales",
    employees: int = 500,
    email: str | None = None,
) -> Lead:
    company = create(
        connection, "company", CompanyIn(name="Initech", domain=domain, employees=employees)
    )
    contact = create(
        connection,
        "contact",
        ContactIn(
            email=email or f"pat@{domain}",
            first_name="Pat",
            last_name="Lee",
            job_title=title,
            lifecycle_stage="lead",
            company_id=company.id,
        ),
    )
    return Lead(contact_id=contact.id, company_id=company.id)


def make_deal(connection: Connection, name: str = "Initech renewal") -> Any:
    return create(connection, "deal", DealIn(name=name, amount=Decimal(1000)))


def drive(run: WorkflowRun | uuid.UUID, **kwargs: Any) -> WorkflowRun:
    """Execute the run here, as ``run_task`` does in a worker, and reload it."""
    run_id = run.pk if isinstance(run, WorkflowRun) else run
    async_to_sync(run_execute)(run_id, owner=f"test:{uuid.uuid4().hex[:6]}", **kwargs)
    return WorkflowRun.objects.get(pk=run_id)


def output(run: WorkflowRun) -> dict[str, Any]:
    """A finished run's output (a dict; a run without output fails the test here)."""
    assert isinstance(run.output, dict), (run.status, run.error_code, run.error_message)
    return run.output
