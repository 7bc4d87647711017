"""Notes and tasks through the write outbox, against both sandboxes over HTTP: one activity in
the CRM per write, associated with the deal; the deal's last activity moving (as each CRM counts
it); the sync carrying the deals' owner and last activity into the mirror; uncertain creates
looked up by their write id; and bad input refused with a coded error before anything is sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import Organization
from core.errors import ErrorCode, ValidationFailed
from integrations.models import Connection, CrmRecord, CrmWrite, SyncStatus, WriteStatus
from integrations.outbox.service import WriteOutcome, write_batch_submit, write_submit
from integrations.outbox.tasks import write_send_task
from integrations.providers.base import CrmClient
from integrations.providers.salesforce import catalog
from integrations.providers.unified import (
    Company,
    CompanyIn,
    Contact,
    ContactIn,
    Deal,
    DealIn,
    Note,
    ObjectType,
    SearchFilter,
    SearchQuery,
    Task,
)
from integrations.services.calls import crm_client_for
from integrations.sync.service import sync_request
from tests.conftest import TEST_ACTOR, Api, assert_envelope_ok
from tests.integrations.test_salesforce_connections import make_sf_connection
from tests.integrations.test_sync import drive as drive_sync
from tests.integrations.test_tokens import make_connection

HS_WRITE_ID = "switchboard_write_id"
SF_WRITE_ID = "Switchboard_Write_Id__c"
HS_OWNER = "4100001"
NOTE_ROUTES = {"hubspot": "POST /crm/v3/objects/notes", "salesforce": "Note"}
TASK_ROUTES = {"hubspot": "POST /crm/v3/objects/tasks", "salesforce": "Task"}


@pytest.fixture
def outbox(sandbox_settings: Any) -> Any:
    """Both providers stamp creates with their write-id property; short timeouts."""
    s = sandbox_settings
    s.PROVIDERS = dict(s.PROVIDERS) | {
        "hubspot": dict(s.PROVIDERS["hubspot"]) | {"write_id_property": HS_WRITE_ID},
        "salesforce": dict(s.PROVIDERS["salesforce"]) | {"write_id_property": SF_WRITE_ID},
    }
    s.PROVIDER_TIMEOUT_SECONDS = 1.0
    s.OUTBOX_BACKOFF_BASE_SECONDS = 0.01
    s.OUTBOX_BACKOFF_MAX_SECONDS = 0.05
    s.OUTBOX_INLINE_SECONDS = 10.0
    catalog.forget()  # Salesforce field lists are cached per org; the sandbox was reset
    return s


@pytest.fixture(autouse=True)
def published(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Retries the outbox queues, captured instead of sent to a broker."""
    sent: list[list[str]] = []
    monkeypatch.setattr(write_send_task, "apply_async", lambda args, **_: sent.append(args[0]))
    return sent


@dataclass
class Crm:
    """One connection with a company, a contact and a deal (with an owner) in its sandbox."""

    provider: str
    connection: Connection
    client: CrmClient
    company: Company
    contact: Contact
    deal: Deal
    sandbox: Any

    def raw(self, path: str) -> Any:
        return async_to_sync(self.client.request)("GET", path).unwrap().body

    def deal_now(self) -> Deal:
        found = async_to_sync(self.client.get)("deal", self.deal.id).unwrap()
        assert isinstance(found, Deal)
        return found

    def live(self, object_type: str) -> int:
        return int(self.stats(object_type)["live"])

    def stats(self, object_type: str) -> dict[str, Any]:
        sandbox = self.sandbox
        if self.provider == "hubspot":
            return dict(sandbox.hubspot_stats(object_type=f"{object_type}s"))
        return dict(sandbox.sf_stats(sobject=object_type.capitalize()))


def _made(client: CrmClient, kind: ObjectType, data: Any) -> Any:
    return async_to_sync(client.create)(kind, data).unwrap()


def make_crm(provider: str, sandbox: Any, org: Organization) -> Crm:
    if provider == "hubspot":
        connection = make_connection(sandbox, org)
        client = crm_client_for(connection)
        company = _made(client, "company", CompanyIn(name="Acme", domain="acme.test"))
        deal_in = DealIn(
            name="Big one",
            stage="appointmentscheduled",
            close_date=date(2030, 1, 31),
            company_id=company.id,
            owner_id=HS_OWNER,
        )
    else:
        connection = make_sf_connection(sandbox, org)
        client = crm_client_for(connection)
        company = _made(client, "company", CompanyIn(name="Acme"))
        # Salesforce makes the connected user the owner.
        deal_in = DealIn(
            name="Big one", stage="Prospecting", close_date=date(2030, 1, 31), company_id=company.id
        )
    contact = _made(
        client,
        "contact",
        ContactIn(email="ada@acme.test", last_name="Lovelace", company_id=company.id),
    )
    deal = _made(client, "deal", deal_in)
    return Crm(provider, connection, client, company, contact, deal, sandbox)


@pytest.fixture(params=["hubspot", "salesforce"])
def crm(request: pytest.FixtureRequest, sandbox: Any, outbox: Any, org: Organization) -> Crm:
    return make_crm(str(request.param), sandbox, org)


def submit(
    crm: Crm,
    object_type: str,
    payload: dict[str, Any] | None,
    *,
    operation: str = "create",
    record_id: str | None = None,
    key: str | None = None,
) -> WriteOutcome:
    return async_to_sync(write_submit)(
        connection=crm.connection,
        operation=operation,
        object_type=object_type,
        payload=payload,
        record_id=record_id,
        idempotency_key=key,
        source="agent",
        actor=TEST_ACTOR,
    )


def creates(sandbox: Any, crm: Crm, routes: dict[str, str]) -> int:
    """Create calls of the activity's type the sandbox received."""
    counted = sandbox.counters()["requests"]
    if crm.provider == "hubspot":
        return int(counted.get(routes["hubspot"], 0))
    return sum(
        int(n)
        for route, n in counted.items()
        if route.startswith("POST ") and route.endswith(f"/sobjects/{routes['salesforce']}")
    )


# --- the happy path -------------------------------------------------------------------------


def test_a_note_is_one_record_in_the_crm_on_the_deal(sandbox: Any, crm: Crm) -> None:
    before = crm.deal_now().last_activity_at
    outcome = submit(
        crm,
        "note",
        {"body": "Called Ada.\nThey want a quote by Friday.", "deal_id": crm.deal.id},
        key="note-1",
    )
    assert outcome.status == WriteStatus.SUCCEEDED, outcome.write.last_error
    note = outcome.record
    assert isinstance(note, Note)
    assert (note.object_type, note.deal_id) == ("note", crm.deal.id)
    assert note.body == "Called Ada.\nThey want a quote by Friday."
    assert crm.live("note") == 1
    # The same key again is the same write: nothing more is sent.
    again = submit(
        crm, "note", {"body": outcome.write.payload["body"], "deal_id": crm.deal.id}, key="note-1"
    )
    assert again.replayed
    assert again.write.pk == outcome.write.pk
    assert crm.live("note") == 1
    assert creates(sandbox, crm, NOTE_ROUTES) == 1
    # Activities are not mirrored.
    assert not CrmRecord.objects.filter(object_type__in=["note", "task"]).exists()

    if crm.provider == "hubspot":
        linked = crm.raw(f"/crm/v4/objects/deals/{crm.deal.id}/associations/notes")
        assert [r["toObjectId"] for r in linked["results"]] == [int(note.id)]
        assert linked["results"][0]["associationTypes"][0]["typeId"] == 213  # deal to note
        stored = crm.raw(f"/crm/v3/objects/notes/{note.id}?properties=hs_timestamp,{HS_WRITE_ID}")[
            "properties"
        ]
        assert stored[HS_WRITE_ID] == str(outcome.write.pk)
        # No timestamp given: the note happened when it was submitted.
        assert stored["hs_timestamp"].startswith(
            outcome.write.created_at.strftime("%Y-%m-%dT%H:%M")
        )
        # HubSpot moves the deal's Last Activity Date when a note is logged on it.
        moved = crm.deal_now().last_activity_at
        assert before is None
        assert moved is not None
        assert moved >= outcome.write.created_at.replace(microsecond=0)
    else:
        stored = crm.raw(f"/sobjects/Note/{note.id}")
        assert (stored["ParentId"], stored["Title"]) == (crm.deal.id, "Called Ada.")
        assert SF_WRITE_ID not in stored  # Note takes no custom fields: nothing stamped
        # Salesforce counts events and closed tasks, not notes.
        assert crm.deal_now().last_activity_at is None


def test_a_task_is_one_record_in_the_crm_on_the_deal_and_contact(sandbox: Any, crm: Crm) -> None:
    payload = {
        "subject": "Send the quote",
        "body": "Ada asked for it by Friday.",
        "due_date": "2030-01-15",
        "priority": "high",
        "deal_id": crm.deal.id,
        "contact_id": crm.contact.id,
    }
    outcome = submit(crm, "task", payload)
    assert outcome.status == WriteStatus.SUCCEEDED, outcome.write.last_error
    task = outcome.record
    assert isinstance(task, Task)
    assert (task.subject, task.status, task.priority) == ("Send the quote", "not_started", "high")
    assert (task.due_date, task.deal_id, task.contact_id) == (
        date(2030, 1, 15),
        crm.deal.id,
        crm.contact.id,
    )
    assert crm.live("task") == 1
    assert creates(sandbox, crm, TASK_ROUTES) == 1

    if crm.provider == "hubspot":
        stored = crm.raw(
            f"/crm/v3/objects/tasks/{task.id}?properties=hs_task_status,hs_task_priority,"
            f"hs_timestamp,{HS_WRITE_ID}&associations=deals,contacts"
        )
        props = stored["properties"]
        assert (props["hs_task_status"], props["hs_task_priority"]) == ("NOT_STARTED", "HIGH")
        assert props["hs_timestamp"] == "2030-01-15T12:00:00.000Z"  # noon UTC: the same day
        assert props[HS_WRITE_ID] == str(outcome.write.pk)
        linked = crm.raw(f"/crm/v4/objects/deals/{crm.deal.id}/associations/tasks")
        assert [r["toObjectId"] for r in linked["results"]] == [int(task.id)]
        assert crm.deal_now().last_activity_at is not None
    else:
        stored = crm.raw(f"/sobjects/Task/{task.id}")
        assert (stored["WhatId"], stored["WhoId"], stored["AccountId"]) == (
            crm.deal.id,
            crm.contact.id,
            crm.company.id,
        )
        assert (stored["Status"], stored["Priority"]) == ("Not Started", "High")
        assert stored[SF_WRITE_ID] == str(outcome.write.pk)
        # An open task is no activity yet in Salesforce's count...
        assert crm.deal_now().last_activity_at is None
        done = submit(
            crm,
            "task",
            {"subject": "Called Ada", "status": "completed", "due_date": "2030-01-10"}
            | {"deal_id": crm.deal.id},
        )
        assert isinstance(done.record, Task)
        assert done.record.status == "completed"
        # ...a completed one is: the deal's LastActivityDate is its due date.
        assert crm.deal_now().last_activity_at == datetime(2030, 1, 10, tzinfo=UTC)


def test_the_writes_api_shows_the_logged_activity(crm: Crm, api: Api) -> None:
    outcome = submit(crm, "task", {"subject": "Call", "contact_id": crm.contact.id})
    shown = assert_envelope_ok(api.get(f"/api/v1/writes/{outcome.write.pk}"))
    assert (shown["object_type"], shown["status"], shown["source"]) == (
        "task",
        "succeeded",
        "agent",
    )
    assert shown["result"]["id"] == outcome.write.result_id
    assert (shown["result"]["subject"], shown["result"]["contact_id"]) == ("Call", crm.contact.id)


def test_a_task_without_a_due_date_or_deal_goes_on_the_company(crm: Crm) -> None:
    outcome = submit(crm, "task", {"subject": "Check in", "company_id": crm.company.id})
    task = outcome.record
    assert isinstance(task, Task), outcome.write.last_error
    assert (task.company_id, task.deal_id, task.contact_id) == (crm.company.id, None, None)
    if crm.provider == "hubspot":
        # HubSpot needs a due time: a task without a date is due when it is created.
        assert task.due_date == outcome.write.created_at.astimezone(UTC).date()
    else:
        assert task.due_date is None
        assert crm.raw(f"/sobjects/Task/{task.id}")["WhatId"] == crm.company.id


def test_activities_in_a_batch_are_one_call_each(sandbox: Any, crm: Crm) -> None:
    items: list[tuple[str | None, dict[str, Any] | None]] = [
        (None, {"body": f"Note {i}", "contact_id": crm.contact.id}) for i in range(3)
    ]
    outcomes = async_to_sync(write_batch_submit)(
        connection=crm.connection,
        operation="create",
        object_type="note",
        items=items,
        idempotency_key="notes",
        source="agent",
        actor=TEST_ACTOR,
    )
    assert [o.status for o in outcomes] == [WriteStatus.SUCCEEDED] * 3
    bodies = sorted(o.record.body or "" for o in outcomes if isinstance(o.record, Note))
    assert bodies == ["Note 0", "Note 1", "Note 2"]
    assert crm.live("note") == 3
    assert creates(sandbox, crm, NOTE_ROUTES) == 3


# --- deal owner and last activity in the mirror ------------------------------------------------


def test_the_sync_brings_the_deal_owner_and_last_activity_into_the_mirror(crm: Crm) -> None:
    run, _ = sync_request(connection=crm.connection, object_type="deal", trigger="api")
    assert drive_sync(run).status == SyncStatus.SUCCEEDED
    row = CrmRecord.objects.get(connection=crm.connection, object_type="deal")
    owner = HS_OWNER if crm.provider == "hubspot" else crm.deal.owner_id
    assert owner
    assert row.fields["owner_id"] == owner
    assert row.fields["last_activity_at"] is None

    payload: dict[str, Any] = {"subject": "Called", "deal_id": crm.deal.id}
    today = datetime.now(UTC).date()
    outcome = submit(crm, "task", payload | {"status": "completed", "due_date": str(today)})
    assert outcome.status == WriteStatus.SUCCEEDED, outcome.write.last_error
    time.sleep(1)  # the sandbox's clock may run a little ahead of the sync's "until"
    again, _ = sync_request(connection=crm.connection, object_type="deal", trigger="api")
    assert drive_sync(again).status == SyncStatus.SUCCEEDED
    synced = CrmRecord.objects.get(pk=row.pk)
    moved = synced.fields["last_activity_at"]
    assert moved is not None
    assert datetime.fromisoformat(moved).date() == today
    assert synced.fields["owner_id"] == owner
    assert synced.raw["hubspot_owner_id" if crm.provider == "hubspot" else "OwnerId"] == owner


def test_deals_can_be_searched_by_owner_and_last_activity(crm: Crm) -> None:
    other = _made(
        crm.client,
        "deal",
        DealIn(name="Quiet", stage=crm.deal.stage, close_date=date(2030, 1, 31)),
    )
    done = {"status": "completed", "due_date": str(datetime.now(UTC).date())}
    submit(crm, "task", {"subject": "Called", "deal_id": crm.deal.id} | done)

    def ids(*groups: list[SearchFilter]) -> set[str]:
        query = SearchQuery(filter_groups=list(groups))
        return {r.id for r in async_to_sync(crm.client.search)("deal", query).unwrap().results}

    assert ids([SearchFilter(field="last_activity_at", operator="has_property")]) == {crm.deal.id}
    # Idle: no activity since a day that is still to come, or none at all.
    cutoff = datetime(2100, 1, 1, tzinfo=UTC)
    idle = ids(
        [SearchFilter(field="last_activity_at", operator="lt", value=cutoff)],
        [SearchFilter(field="last_activity_at", operator="not_has_property")],
    )
    assert idle == {crm.deal.id, other.id}
    owner = HS_OWNER if crm.provider == "hubspot" else crm.deal.owner_id
    assert crm.deal.id in ids([SearchFilter(field="owner_id", value=owner)])


# --- refused before anything is sent ----------------------------------------------------------

BAD = [
    pytest.param("create", "note", {"body": "On nothing"}, "at least one", id="note-on-nothing"),
    pytest.param("create", "task", {"subject": "x" * 256, "deal_id": "DEAL"}, "subject", id="long"),
    pytest.param("create", "task", {"deal_id": "DEAL"}, "subject", id="no-subject"),
    pytest.param("create", "note", {"body": "", "deal_id": "DEAL"}, "body", id="empty-body"),
    pytest.param(
        "create", "note", {"body": "x", "deal_id": "DEAL", "title": "t"}, "title", id="extra"
    ),
    pytest.param(
        "create",
        "task",
        {"subject": "x", "deal_id": "DEAL", "status": "open"},
        "status",
        id="status",
    ),
    pytest.param("update", "note", {"body": "Edited"}, "create only", id="update-note"),
    pytest.param("archive", "task", None, "create only", id="archive-task"),
    pytest.param(
        "associate", "note", {"to_type": "deal", "to_id": "DEAL"}, "create only", id="link"
    ),
]


@pytest.mark.parametrize(("operation", "object_type", "payload", "named"), BAD)
def test_bad_activity_writes_are_refused_before_anything_is_sent(
    sandbox: Any,
    crm: Crm,
    operation: str,
    object_type: str,
    payload: dict[str, Any] | None,
    named: str,
) -> None:
    if payload is not None:
        payload = {k: crm.deal.id if v == "DEAL" else v for k, v in payload.items()}
    record_id = None if operation == "create" else crm.deal.id
    with pytest.raises(ValidationFailed) as refused:
        submit(crm, object_type, payload, operation=operation, record_id=record_id)
    assert refused.value.code == ErrorCode.VALIDATION_FAILED
    assert named in str(refused.value.details)
    assert not CrmWrite.objects.exists()
    assert creates(sandbox, crm, NOTE_ROUTES) == creates(sandbox, crm, TASK_ROUTES) == 0


def test_what_only_the_crm_refuses_fails_the_write_with_its_code(sandbox: Any, crm: Crm) -> None:
    # A deal id the CRM does not know: validated there, and not retried.
    unknown = "99999999" if crm.provider == "hubspot" else "006Dn000000ZZZZZZZ"
    outcome = submit(crm, "note", {"body": "Lost", "deal_id": unknown})
    assert outcome.status == WriteStatus.FAILED
    assert outcome.error is not None
    assert outcome.error.code in (ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND)
    assert crm.live("note") == 0
    if crm.provider == "salesforce":
        # Not even sent: Salesforce's note body is 32,000 characters at most.
        long = submit(crm, "note", {"body": "x" * 40_000, "deal_id": crm.deal.id})
        assert long.status == WriteStatus.FAILED
        assert long.write.last_error_code == "validation_failed"
        assert creates(sandbox, crm, NOTE_ROUTES) == 1


# --- uncertain creates --------------------------------------------------------------------------


def drive(write_id: Any, *, rounds: int = 12) -> CrmWrite:
    from tests.integrations.test_outbox import drive as drive_write

    return drive_write(write_id, rounds=rounds)


def test_an_uncertain_activity_is_found_by_its_write_id_not_sent_again(
    sandbox: Any, crm: Crm
) -> None:
    sandbox.faults(timeout_after_next=1, timeout_seconds=5)
    outcome = submit(crm, "task", {"subject": "Maybe", "deal_id": crm.deal.id})
    assert (outcome.status, outcome.write.uncertain) == (WriteStatus.PENDING, True)
    assert crm.live("task") == 1  # it did happen
    done = drive(outcome.write.pk)
    assert done.status == WriteStatus.SUCCEEDED, done.last_error
    assert "found at the provider" in done.last_error
    assert crm.live("task") == 1
    assert (
        crm.stats("task")["duplicates"][HS_WRITE_ID if crm.provider == "hubspot" else SF_WRITE_ID]
        == 0
    )
    assert creates(sandbox, crm, TASK_ROUTES) == 1
    assert done.result is not None
    assert done.result["subject"] == "Maybe"


def test_an_uncertain_salesforce_note_cannot_be_checked_so_it_is_dead_lettered(
    sandbox: Any, outbox: Any, org: Organization
) -> None:
    crm = make_crm("salesforce", sandbox, org)
    sandbox.faults(timeout_after_next=1, timeout_seconds=5)
    outcome = submit(crm, "note", {"body": "Maybe", "deal_id": crm.deal.id})
    done = drive(outcome.write.pk)
    assert (done.status, done.uncertain, done.last_error_code) == (
        WriteStatus.DEAD,
        True,
        "uncertain",
    )
    assert creates(sandbox, crm, NOTE_ROUTES) == 1  # never sent blindly again
    assert crm.live("note") == 1
