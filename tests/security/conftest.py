"""Two organisations, each with a row of every kind an organisation owns, and a snapshot of
what one organisation's activity must never change (``outside_of``).

``alpha`` is the organisation under attack; ``bravo`` holds the credentials (API keys, signed-in
members, staff). Every name, email and summary of a tenant carries its label, so a page or an
answer that shows another tenant's data is caught by ``Tenant.names`` / ``Tenant.ids``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.apps import apps
from django.db import models
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import ApiKey, AuditEvent, Organization, Role, User
from accounts.services import api_key_revoke
from integrations.models import (
    Connection,
    CrmRecord,
    CrmWrite,
    OAuthAttempt,
    ProviderCallLog,
    SyncRun,
    SyncState,
    WebhookEvent,
    WebhookStatus,
    WriteStatus,
)
from tests.conftest import new_key
from tests.factories import make_membership, make_organization
from tests.integrations.test_tokens import make_connection
from workflows.models import Approval, RunStatus, RunStep, StepStatus, Workflow, WorkflowRun

ACTOR = Actor(label="security-test")
HUBS = {"alpha": 62515, "bravo": 62516}  # the sandbox's two seeded HubSpot portals
OBJECTS = {"contact": "contacts", "company": "companies", "deal": "deals"}


@dataclass
class Tenant:
    label: str
    org: Organization
    owner: User
    member: User
    key: str
    api_key: ApiKey
    revoked_key: str
    revoked_api_key: ApiKey
    connection: Connection
    records: dict[str, CrmRecord]
    sync_state: SyncState
    sync_run: SyncRun
    call_log: ProviderCallLog
    oauth_attempt: OAuthAttempt
    write: CrmWrite
    event: WebhookEvent
    workflow: Workflow
    run: WorkflowRun
    step: RunStep
    approval: Approval
    audit: AuditEvent
    extra_ids: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Strings only this tenant's data contains (names, emails, summaries, prefixes)."""
        return [
            self.org.name,
            self.org.slug,
            self.owner.email,
            self.member.email,
            self.connection.display_name,
            self.workflow.name,
            self.workflow.key,
            self.approval.summary,
            self.api_key.prefix,
            self.revoked_api_key.prefix,
            f"{self.label}-secret-",  # records' emails and payload values
        ]

    @property
    def ids(self) -> list[str]:
        """The UUIDs of this tenant's rows (integer ids could collide with anyone's)."""
        rows: list[models.Model] = [
            self.org,
            self.api_key,
            self.revoked_api_key,
            self.connection,
            self.sync_run,
            self.oauth_attempt,
            self.write,
            self.workflow,
            self.run,
            self.approval,
        ]
        return [str(row.pk) for row in rows] + self.extra_ids

    def leaks(self, body: str, *, with_ids: bool = True) -> list[str]:
        """The strings of this tenant's data that ``body`` contains."""
        return [m for m in self.names + (self.ids if with_ids else []) if m in body]

    def rows(self) -> dict[type[models.Model], models.Model]:
        """One row of every model the tenant owns, by model."""
        return {
            Organization: self.org,
            User: self.owner,
            ApiKey: self.api_key,
            AuditEvent: self.audit,
            Connection: self.connection,
            OAuthAttempt: self.oauth_attempt,
            ProviderCallLog: self.call_log,
            SyncState: self.sync_state,
            SyncRun: self.sync_run,
            CrmRecord: self.records["contact"],
            CrmWrite: self.write,
            WebhookEvent: self.event,
            Workflow: self.workflow,
            WorkflowRun: self.run,
            RunStep: self.step,
            Approval: self.approval,
        }


def make_tenant(sandbox: Any, label: str) -> Tenant:
    """An organisation with a HubSpot connection to its own sandbox portal (records seeded
    there and mirrored here) and a row of everything an organisation owns."""
    org = make_organization(name=f"Tenant {label} Confidential", slug=f"tenant-{label}-secret")
    # No passwords: hashing them is most of the setup's time, and sessions use force_login.
    owner = User.objects.create_user(f"owner@{label}-secret-people.test", None)
    member = User.objects.create_user(f"member@{label}-secret-people.test", None)
    make_membership(organization=org, user=owner, role=Role.OWNER)
    make_membership(organization=org, user=member, role=Role.MEMBER)
    key = new_key(org, f"{label} key")
    revoked_key = new_key(org, f"{label} old key")
    api_key, revoked_api_key = ApiKey.objects.filter(organization=org).order_by("created_at")
    api_key_revoke(organization_id=org.pk, api_key_id=revoked_api_key.pk, actor=ACTOR)
    revoked_api_key.refresh_from_db()

    hub = HUBS[label]
    connection = make_connection(
        sandbox,
        org,
        hub_id=hub,
        display_name=f"{label}-secret-portal.hubspot.test",
        connected_by_id=owner.pk,
    )
    records: dict[str, CrmRecord] = {}
    for kind, plural in OBJECTS.items():
        seeded = sandbox.hubspot_seed(1, hub_id=hub, object_type=plural, prefix=f"{label}-secret")
        records[kind] = CrmRecord.objects.create(
            connection=connection,
            object_type=kind,
            external_id=str(seeded["ids"][0]),
            fields={"email": f"lead@{label}-secret-mail.test", "name": f"{label}-secret-{kind}"},
            raw={"note": f"{label}-secret-{kind}"},
        )
    now = timezone.now()
    sync_state = SyncState.objects.create(connection=connection, object_type="contact")
    sync_run = SyncRun.objects.create(
        connection=connection, object_type="contact", kind="full", trigger="api"
    )
    call_log = ProviderCallLog.objects.create(
        connection=connection, method="GET", path=f"/{label}-secret-path", status=200, duration_ms=1
    )
    oauth_attempt = OAuthAttempt.objects.create(
        organization=org,
        provider="hubspot",
        state=f"{label}-state-{uuid.uuid4().hex}",
        redirect_uri="http://127.0.0.1/connect/hubspot/callback",
        initiated_by=owner,
        expires_at=now + timedelta(minutes=10),
    )
    write = CrmWrite.objects.create(
        organization=org,
        connection=connection,
        idempotency_key=f"{label}-write-1",
        request_hash="0" * 64,
        operation="update",
        object_type="contact",
        record_id=records["contact"].external_id,
        payload={"email": f"new@{label}-secret-mail.test"},
        status=WriteStatus.DEAD,
        last_error="gave up",
    )
    event = WebhookEvent.objects.create(
        provider="hubspot",
        event_id=f"{hub}:{label}-1",
        external_account_id=str(hub),
        subscription_type="contact.propertyChange",
        object_type="contact",
        object_id=records["contact"].external_id,
        payload={"objectId": records["contact"].external_id, "note": f"{label}-secret-event"},
        status=WebhookStatus.PROCESSED,
    )
    event.connections.add(connection)
    workflow = Workflow.objects.create(
        organization=org,
        key=f"{label}-secret-flow",  # not a registered graph's key: nobody else has one
        graph="crm_hygiene",
        name=f"Tenant {label} secret workflow",
        connection=connection,
    )
    run_id = uuid.uuid4()
    run = WorkflowRun.objects.create(
        id=run_id,
        organization=org,
        workflow=workflow,
        connection=connection,
        graph=workflow.graph,
        thread_id=str(run_id),
        trigger="api",
        status=RunStatus.WAITING_APPROVAL,
        started_at=now,
    )
    step = RunStep.objects.create(
        run=run, task_id=uuid.uuid4().hex, node="propose", status=StepStatus.INTERRUPTED
    )
    approval = Approval.objects.create(
        organization=org,
        run=run,
        interrupt_id=uuid.uuid4().hex,
        summary=f"Tenant {label} secret summary",
        proposal=[{"operation": "update", "object_type": "contact", "record_id": "1"}],
    )
    audit = audit_record(
        actor=ACTOR,
        action="test.marked",
        entity_type="organization",
        entity_id=org.pk,
        organization_id=org.pk,
        changes={"note": f"{label}-secret-audit"},
    )
    return Tenant(
        label=label,
        org=org,
        owner=owner,
        member=member,
        key=key,
        api_key=api_key,
        revoked_key=revoked_key,
        revoked_api_key=revoked_api_key,
        connection=connection,
        records=records,
        sync_state=sync_state,
        sync_run=sync_run,
        call_log=call_log,
        oauth_attempt=oauth_attempt,
        write=write,
        event=event,
        workflow=workflow,
        run=run,
        step=step,
        approval=approval,
        audit=audit,
    )


@dataclass
class Tenants:
    alpha: Tenant
    bravo: Tenant
    shared_event: WebhookEvent


@pytest.fixture
def tenants(sandbox: Any, sandbox_settings: Any, db: None) -> Tenants:
    """``alpha`` and ``bravo``, and an event routed to both (two organisations connected to
    the same provider account see the same event), with an error line about each one's
    connection."""
    alpha, bravo = make_tenant(sandbox, "alpha"), make_tenant(sandbox, "bravo")
    shared = WebhookEvent.objects.create(
        provider="hubspot",
        event_id="shared:1",
        external_account_id="shared",
        subscription_type="contact.creation",
        object_type="contact",
        object_id="1",
        payload={"objectId": 1},
        status=WebhookStatus.FAILED,
        error="\n".join(
            f"connection {t.connection.pk}: provider_error: {t.label}-secret-failure"
            for t in (alpha, bravo)
        ),
    )
    shared.connections.add(alpha.connection, bravo.connection)
    return Tenants(alpha=alpha, bravo=bravo, shared_event=shared)


# --- "changes nothing" ------------------------------------------------------------------------

# How each model's rows reach their organisation; None: rows of no single organisation (they
# must not change either). A model missing here fails the snapshot: classify it.
OWNERSHIP: dict[str, str | None] = {
    "accounts.Organization": "id",
    "accounts.Membership": "organization",
    "accounts.ApiKey": "organization",
    "accounts.AuditEvent": "organization",
    "accounts.User": None,  # a person can belong to several organisations
    "accounts.User_groups": None,
    "accounts.User_user_permissions": None,
    "integrations.Connection": "organization",
    "integrations.OAuthAttempt": "organization",
    "integrations.ProviderCallLog": "connection__organization",
    "integrations.SyncState": "connection__organization",
    "integrations.SyncRun": "connection__organization",
    "integrations.CrmRecord": "connection__organization",
    "integrations.CrmWrite": "organization",
    "integrations.WebhookEvent": None,  # routed to any number of organisations
    "integrations.WebhookEvent_connections": "connection__organization",
    "integrations.RateLimitKey": None,
    "integrations.RateLimitHit": None,
    "workflows.Workflow": "organization",
    "workflows.WorkflowRun": "organization",
    "workflows.RunStep": "run__organization",
    "workflows.Approval": "organization",
    "admin.LogEntry": None,
    "auth.Permission": None,
    "auth.Group": None,
    "auth.Group_permissions": None,
    "contenttypes.ContentType": None,
    # A person's addresses: theirs, so of the organisations they belong to.
    "account.EmailAddress": "user__memberships__organization",
    "account.EmailConfirmation": "email_address__user__memberships__organization",
}
# Per-browser state, changed by every signed-in request: not an organisation's data.
VOLATILE = {"sessions.Session"}


def project_models(*, include_auto_created: bool = False) -> list[type[models.Model]]:
    """Every model of the installed apps, without those that tests define for themselves (e.g.
    tests/core/test_encryption.py's, registered once that module is imported)."""
    return [
        model
        for model in apps.get_models(include_auto_created=include_auto_created)
        if not model.__module__.startswith("tests.")
    ]


def outside_of(org: Organization) -> dict[str, list[dict[str, Any]]]:
    """Every row of every model (auto-created through tables included) that ``org`` does not
    own: what ``org``'s credentials must never change, add or remove."""
    snapshot: dict[str, list[dict[str, Any]]] = {}
    for model in project_models(include_auto_created=True):
        label = model._meta.label
        if label in VOLATILE:
            continue
        assert label in OWNERSHIP, f"classify {label} in OWNERSHIP (tests/security/conftest.py)"
        rows = model._default_manager.all()
        path = OWNERSHIP[label]
        if path is not None:
            rows = rows.exclude(**{path: org.pk})
        snapshot[label] = list(rows.order_by("pk").values())
    return snapshot


def assert_unchanged(before: dict[str, list[dict[str, Any]]], after: dict[str, Any]) -> None:
    for label, rows in before.items():
        assert after[label] == rows, f"{label} changed:\n{rows}\n->\n{after[label]}"


@dataclass
class Quiet:
    """What went out while it watched: Celery messages and transaction.on_commit callbacks."""

    published: list[str] = field(default_factory=list)
    callbacks: list[Any] = field(default_factory=list)


@pytest.fixture
def watch_side_effects(
    django_capture_on_commit_callbacks: Any,
) -> Callable[[], AbstractContextManager[Quiet]]:
    """A context manager: within it, every Celery message published (the signal fires before
    any broker sees it) and every on_commit callback registered (queued tasks) is recorded;
    the callbacks run at its end (so whatever they would send is recorded too)."""

    @contextmanager
    def watch() -> Iterator[Quiet]:
        quiet = Quiet()

        def record(sender: Any = None, **kwargs: Any) -> None:
            quiet.published.append(str(sender))

        before_task_publish.connect(record, weak=False)
        try:
            with django_capture_on_commit_callbacks(execute=True) as callbacks:
                yield quiet
        finally:
            before_task_publish.disconnect(record)
        quiet.callbacks.extend(callbacks)

    return watch
