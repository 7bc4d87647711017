"""The sync engine against the sandbox: full and incremental reads, deletes, resuming after a
crash, one sync at a time, and the mirror served by the API."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings
from django.utils import timezone

from accounts.models import Organization
from integrations.models import Connection, CrmRecord, SyncKind, SyncRun, SyncState, SyncStatus
from integrations.providers.unified import CompanyIn, ContactIn, RecordIn
from integrations.services.calls import crm_client_for
from integrations.sync import engine
from integrations.sync.engine import claim, run_slice
from integrations.sync.service import sync_cancel, sync_request
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok, new_key
from tests.integrations.test_salesforce_connections import make_sf_connection
from tests.integrations.test_tokens import make_connection


def drive(run: SyncRun, *, max_slices: int = 500) -> SyncRun:
    """Work the run slice by slice, as the Celery task and its continuations would."""
    for n in range(max_slices):
        outcome = run_slice(run.pk, owner=f"test-{n}").outcome
        if outcome not in ("continue", "retry_later"):
            break
    run.refresh_from_db()
    return run


def create_contacts(connection: Connection, count: int, prefix: str = "c") -> list[str]:
    client = crm_client_for(connection)
    items: list[RecordIn] = [
        ContactIn(email=f"{prefix}{i}@example.com", first_name=f"N{i}") for i in range(count)
    ]
    result = async_to_sync(client.batch_create)("contact", items)
    batch = result.unwrap()
    assert not batch.errors
    return [r.id for r in batch.results]


def mirror(connection: Connection, object_type: str = "contact") -> dict[str, CrmRecord]:
    return {
        r.external_id: r
        for r in CrmRecord.objects.filter(connection=connection, object_type=object_type)
    }


@pytest.fixture
def hubspot(sandbox: Any, sandbox_settings: Any, org: Organization) -> Connection:
    return make_connection(sandbox, org)


@override_settings(SYNC_OVERLAP_SECONDS=0)
def test_full_then_incremental_with_updates_and_deletes(hubspot: Connection, sandbox: Any) -> None:
    ids = create_contacts(hubspot, 230)
    # The sandbox stamps records in one batch a millisecond apart, so the last ones can be a
    # little ahead of our clock (as a provider's clock can be): let that pass first.
    time.sleep(1)
    run, created = sync_request(connection=hubspot, object_type="contact", trigger="api")
    assert created
    assert run.kind == SyncKind.FULL
    run = drive(run)
    assert run.status == SyncStatus.SUCCEEDED, run.error_message
    rows = mirror(hubspot)
    live = {k for k, r in rows.items() if r.deleted_at is None}
    assert set(ids) <= live
    assert rows[ids[7]].fields["email"] == "c7@example.com"
    assert rows[ids[7]].raw["email"] == "c7@example.com"
    assert run.pages >= 3  # 100 per page, plus the archived listing
    assert run.records_created == len(rows)
    state = SyncState.objects.get(connection=hubspot, object_type="contact")
    assert state.cursor is None
    assert state.full_completed_at is not None
    assert state.high_watermark is not None

    client = crm_client_for(hubspot)
    async_to_sync(client.update)("contact", ids[3], ContactIn(job_title="Analyst"))
    async_to_sync(client.archive)("contact", ids[4])
    new_id = create_contacts(hubspot, 1, prefix="late")[0]

    run2, _ = sync_request(connection=hubspot, object_type="contact", trigger="api")
    assert run2.kind == SyncKind.INCREMENTAL
    run2 = drive(run2)
    assert run2.status == SyncStatus.SUCCEEDED, run2.error_message
    rows = mirror(hubspot)
    assert rows[ids[3]].fields["job_title"] == "Analyst"
    assert rows[ids[4]].deleted_at is not None
    assert rows[new_id].deleted_at is None
    assert run2.records_deleted == 1
    assert run2.records_created == 1
    # An incremental read reads what changed, not everything: the update, the new contact
    # and the archived one.
    assert run2.records_seen == 3
    counts = sandbox.counters()["requests"]
    assert counts.get("POST /crm/v3/objects/contacts/search", 0) >= 1


def test_one_sync_per_connection_and_type(hubspot: Connection) -> None:
    first, created = sync_request(connection=hubspot, object_type="contact", trigger="api")
    again, created_again = sync_request(connection=hubspot, object_type="contact", trigger="api")
    assert created
    assert not created_again
    assert again.pk == first.pk
    other, created_other = sync_request(connection=hubspot, object_type="company", trigger="api")
    assert created_other
    assert other.pk != first.pk
    # A second task for the same run cannot take it while the first holds the lease.
    assert claim(first.pk, "worker-a") is not None
    assert claim(first.pk, "worker-b") is None
    cancelled = sync_cancel(run=first)
    assert cancelled.status == SyncStatus.CANCELLED
    assert run_slice(first.pk, owner="worker-c").outcome == "not_claimed"


@override_settings(SYNC_SLICE_SECONDS=0, SYNC_LEASE_SECONDS=1)
def test_a_crashed_worker_resumes_from_the_saved_cursor(hubspot: Connection) -> None:
    ids = create_contacts(hubspot, 250)
    run, _ = sync_request(connection=hubspot, object_type="contact", trigger="api")
    # One slice (one page, as the slice length is 0) by a worker that then "dies" holding
    # the lease: it never releases it.
    assert run_slice(run.pk, owner="doomed").outcome == "continue"
    SyncRun.objects.filter(pk=run.pk).update(lease_owner="doomed")
    state = SyncState.objects.get(connection=hubspot, object_type="contact")
    assert state.cursor is not None
    assert state.cursor["position"]["stage"] == "live"
    assert len(mirror(hubspot)) == 100
    # Until the lease goes stale nobody else may take the run...
    assert claim(run.pk, "early") is None
    # ...then the next task takes over and finishes from the cursor.
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=5))
    run = drive(run)
    assert run.status == SyncStatus.SUCCEEDED
    rows = mirror(hubspot)
    assert set(ids) <= set(rows)
    assert run.records_created == len(rows)  # every record created once, none twice
    # The dead worker's late page is refused: its lease is gone.
    assert run_slice(run.pk, owner="doomed").outcome == "not_claimed"


def test_the_next_page_is_read_while_one_is_stored(
    hubspot: Connection, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_contacts(hubspot, 500)
    sandbox.faults(latency_ms=250)
    store = engine._store_page

    def slow_store(**kwargs: Any) -> Any:
        time.sleep(0.25)
        return store(**kwargs)

    monkeypatch.setattr(engine, "_store_page", slow_store)
    run, _ = sync_request(connection=hubspot, object_type="contact", trigger="api")
    started = time.monotonic()
    run = drive(run)
    elapsed = time.monotonic() - started
    assert run.status == SyncStatus.SUCCEEDED, run.error_message
    assert run.pages >= 6
    # One after the other a page would cost its read and its store (0.5 s); overlapped, the
    # longer of the two (0.25 s), plus the first read: about 60% of that for six pages.
    assert elapsed < 0.85 * run.pages * 0.5


def test_a_cancelled_sync_stores_no_page_read_ahead(
    hubspot: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = create_contacts(hubspot, 350)
    run, _ = sync_request(connection=hubspot, object_type="contact", trigger="api")
    store = engine._store_page
    stored: list[int] = []

    def store_then_cancel(**kwargs: Any) -> Any:
        counts = store(**kwargs)
        stored.append(counts.seen)
        if len(stored) == 2:  # the third page is being read meanwhile
            sync_cancel(run=SyncRun.objects.get(pk=run.pk))
        return counts

    monkeypatch.setattr(engine, "_store_page", store_then_cancel)
    assert run_slice(run.pk, owner="w").outcome == "cancelled"
    assert stored == [100, 100]
    assert len(mirror(hubspot)) == 200
    state = SyncState.objects.get(connection=hubspot, object_type="contact")
    assert state.cursor is not None
    assert state.cursor["position"]["stage"] == "live"
    # The next full sync goes on from the second page: nothing read ahead was stored.
    monkeypatch.undo()
    again, _ = sync_request(connection=hubspot, object_type="contact", trigger="api")
    assert again.kind == SyncKind.FULL
    again = drive(again)
    assert again.status == SyncStatus.SUCCEEDED, again.error_message
    rows = mirror(hubspot)
    assert set(ids) <= set(rows)
    assert again.records_created == len(rows) - 200


def test_transient_faults_are_retried_in_place(hubspot: Connection, sandbox: Any) -> None:
    ids = create_contacts(hubspot, 120)
    sandbox.faults(fail_next=2)
    run, _ = sync_request(connection=hubspot, object_type="contact", trigger="api")
    run = drive(run)
    assert run.status == SyncStatus.SUCCEEDED, run.error_message
    assert set(ids) <= set(mirror(hubspot))
    assert sandbox.counters()["faults_injected"] == 2


def test_a_permanent_failure_fails_the_run_with_its_code(hubspot: Connection, sandbox: Any) -> None:
    sandbox.revoke_tokens()
    sandbox.expire_tokens()
    run, _ = sync_request(connection=hubspot, object_type="contact", trigger="api")
    run = drive(run)
    assert run.status == SyncStatus.FAILED
    assert run.error_code == "reauth_required"


def test_targeted_fetch_updates_and_deletes(hubspot: Connection) -> None:
    client = crm_client_for(hubspot)
    company = async_to_sync(client.create)("company", CompanyIn(name="Acme", domain="acme.test"))
    company_id = company.unwrap().id
    run, _ = sync_request(
        connection=hubspot,
        object_type="company",
        trigger="webhook",
        record_ids=[company_id, "999999999"],
    )
    run = drive(run)
    assert run.status == SyncStatus.SUCCEEDED, run.error_message
    rows = mirror(hubspot, "company")
    assert rows[company_id].fields["domain"] == "acme.test"
    assert "999999999" not in rows  # never seen, nothing to mark


def test_salesforce_full_and_incremental_with_deletes(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    connection = make_sf_connection(sandbox, org)
    client = crm_client_for(connection)
    made = [
        async_to_sync(client.create)(
            "contact", ContactIn(email=f"sf{i}@example.com", last_name=f"L{i}")
        )
        .unwrap()
        .id
        for i in range(5)
    ]
    run, _ = sync_request(connection=connection, object_type="contact", trigger="api")
    run = drive(run)
    assert run.status == SyncStatus.SUCCEEDED, run.error_message
    rows = mirror(connection)
    assert set(made) <= set(rows)
    assert rows[made[0]].fields["email"] == "sf0@example.com"

    async_to_sync(client.update)("contact", made[1], ContactIn(job_title="CFO"))
    async_to_sync(client.archive)("contact", made[2])
    run2, _ = sync_request(connection=connection, object_type="contact", trigger="api")
    assert run2.kind == SyncKind.INCREMENTAL
    run2 = drive(run2)
    assert run2.status == SyncStatus.SUCCEEDED, run2.error_message
    rows = mirror(connection)
    assert rows[made[1]].fields["job_title"] == "CFO"
    assert rows[made[2]].deleted_at is not None
    assert rows[made[3]].deleted_at is None


def test_the_api_starts_syncs_and_serves_the_mirror(
    hubspot: Connection, api: Api, other_org: Organization
) -> None:
    ids = create_contacts(hubspot, 30)
    base = f"/api/v1/connections/{hubspot.pk}"
    started = assert_envelope_ok(api.post(f"{base}/syncs", {"object": "contact"}), 202)
    assert [r["object_type"] for r in started] == ["contact"]
    assert started[0]["status"] == "queued"
    drive(SyncRun.objects.get(pk=started[0]["id"]))
    runs = assert_envelope_ok(api.get(f"{base}/syncs?object=contact"))
    assert runs[0]["status"] == "succeeded"
    assert runs[0]["records_created"] >= 30
    one = assert_envelope_ok(api.get(f"{base}/syncs/{runs[0]['id']}"))
    assert one["pages"] >= 1

    seen: list[str] = []
    cursor = None
    while True:
        query = f"{base}/records?object=contact&limit=7" + (f"&cursor={cursor}" if cursor else "")
        response = api.get(query)
        page = assert_envelope_ok(response)
        seen += [r["id"] for r in page]
        meta = response.json()["meta"]["pagination"]
        cursor = meta["next_cursor"]
        if not meta["has_more"]:
            break
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)
    email = {
        r["id"]: r for r in assert_envelope_ok(api.get(f"{base}/records?object=contact&limit=200"))
    }
    assert email[ids[0]]["fields"]["email"] == "c0@example.com"

    future = (timezone.now() + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert (
        assert_envelope_ok(api.get(f"{base}/records?object=contact&updated_since={future}")) == []
    )
    assert_envelope_error(api.get(f"{base}/records?object=ticket"), 422, "validation_failed")
    assert_envelope_error(
        api.get(f"{base}/records?object=contact&cursor=%%%"), 422, "validation_failed"
    )
    assert_envelope_error(
        api.post(f"{base}/syncs", {"object": "contact", "x": 1}), 422, "validation_failed"
    )

    other = Api(new_key(other_org))
    assert_envelope_error(other.get(f"{base}/records?object=contact"), 404, "not_found")
    assert_envelope_error(other.get(f"{base}/syncs"), 404, "not_found")
    assert_envelope_error(other.post(f"{base}/syncs", {}), 404, "not_found")
