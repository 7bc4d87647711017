"""The write outbox against the HubSpot sandbox over HTTP: the record write routes, idempotency,
retries (503, 429 + Retry-After), dead letters and replay, uncertain creates, leases, batches,
the /writes routes and the admin.

Retries are driven here by calling the service the Celery task calls (``write_process``) or the
sweep; messages the outbox queues are captured (``published``) instead of going to a broker.
tests/integrations/test_outbox_live.py runs the same machinery with real worker processes.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, Organization, Role
from integrations.models import Connection, CrmRecord, CrmWrite, WriteStatus
from integrations.outbox import policy
from integrations.outbox.service import (
    _claim,
    write_process,
    write_submit,
    write_sweep,
)
from integrations.outbox.tasks import write_send_task
from integrations.providers.unified import CompanyIn, ContactIn
from integrations.services.calls import crm_client_for
from tests.conftest import TEST_ACTOR, Api, assert_envelope_error, assert_envelope_ok
from tests.factories import make_membership, make_user
from tests.integrations.test_tokens import make_connection

WRITE_ID = "switchboard_write_id"
CREATE = "POST /crm/v3/objects/contacts"
SEARCH = "POST /crm/v3/objects/contacts/search"


@pytest.fixture
def outbox(sandbox_settings: Any) -> Any:
    """Sandbox settings with the write-id property, a short provider timeout and a tiny
    backoff (so a test that ignored Retry-After would retry almost at once)."""
    s = sandbox_settings
    s.PROVIDERS = dict(s.PROVIDERS) | {
        "hubspot": dict(s.PROVIDERS["hubspot"]) | {"write_id_property": WRITE_ID}
    }
    s.PROVIDER_TIMEOUT_SECONDS = 1.0
    s.OUTBOX_BACKOFF_BASE_SECONDS = 0.01
    s.OUTBOX_BACKOFF_MAX_SECONDS = 0.05
    s.OUTBOX_INLINE_SECONDS = 10.0
    return s


@pytest.fixture(autouse=True)
def published(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Messages the outbox queues (ids, queue, countdown), captured instead of sent (for every
    test here: none reaches a broker)."""
    sent: list[dict[str, Any]] = []

    def capture(args: tuple[Any, ...], **options: Any) -> None:
        sent.append({"ids": list(args[0]), **options})

    monkeypatch.setattr(write_send_task, "apply_async", capture)
    return sent


@pytest.fixture
def connection(sandbox: Any, outbox: Any, org: Organization) -> Connection:
    return make_connection(sandbox, org)


def url(connection: Connection, tail: str) -> str:
    return f"/api/v1/connections/{connection.pk}{tail}"


def patch(api: Api, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return api.client.patch(
        path,
        orjson.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.key}"} | (headers or {}),
    )


def calls(sandbox: Any, route: str) -> int:
    return int(sandbox.counters()["requests"].get(route, 0))


def drive(write_id: Any, *, rounds: int = 12) -> CrmWrite:
    """What the worker does: send the write whenever it is due, until it is done."""
    for _ in range(rounds):
        write = CrmWrite.objects.get(pk=write_id)
        if write.status in (WriteStatus.SUCCEEDED, WriteStatus.FAILED, WriteStatus.DEAD):
            return write
        if write.next_attempt_at is not None:
            wait = (write.next_attempt_at - timezone.now()).total_seconds()
            if wait > 0:
                time.sleep(wait + 0.01)
        async_to_sync(write_process)([write.pk])
    return CrmWrite.objects.get(pk=write_id)


# --- the happy path and idempotency ----------------------------------------------------------


def test_a_create_is_a_stored_write_then_the_record(
    sandbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    response = api.post(url(connection, "/contacts"), {"email": "ada@example.com"})
    record = assert_envelope_ok(response, 201)
    write = CrmWrite.objects.get()
    assert write.status == WriteStatus.SUCCEEDED
    assert (write.operation, write.object_type, write.attempts) == ("create", "contact", 1)
    assert write.idempotency_key.startswith("auto:")
    assert write.payload == {"email": "ada@example.com"}
    assert write.result_id == record["id"]
    assert write.result is not None
    assert write.result["email"] == "ada@example.com"
    stored = sandbox.hubspot_stats(object_type="contacts")
    assert stored["live"] == 1
    # The mirror has it, and the audit trail says who wrote what.
    mirrored = CrmRecord.objects.get(connection=connection, external_id=record["id"])
    assert mirrored.fields["email"] == "ada@example.com"
    event = AuditEvent.objects.get(action="crm_write.created")
    assert event.entity_id == str(write.pk)
    assert event.actor_label.startswith("api_key:")
    assert event.changes["fields"] == ["email"]
    assert published == []  # nothing left for a worker


def test_the_create_carries_the_write_id_property(
    sandbox: Any, connection: Connection, api: Api
) -> None:
    record = assert_envelope_ok(api.post(url(connection, "/deals"), {"name": "Big one"}), 201)
    write = CrmWrite.objects.get()
    # Read it back asking for the property: HubSpot returns only properties a read names.
    raw = sandbox.http.get(
        f"{sandbox.hubspot_api_url}/crm/v3/objects/deals/{record['id']}",
        params={"properties": WRITE_ID},
        headers={"Authorization": f"Bearer {connection.access_token}"},
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["properties"][WRITE_ID] == str(write.pk)


def test_a_repeated_key_returns_the_first_answer_without_a_second_call(
    sandbox: Any, connection: Connection, api: Api
) -> None:
    key = {"Idempotency-Key": "create-ada-1"}
    first = api.post(url(connection, "/contacts"), {"email": "ada@example.com"}, headers=key)
    second = api.post(url(connection, "/contacts"), {"email": "ada@example.com"}, headers=key)
    assert assert_envelope_ok(first, 201)["id"] == assert_envelope_ok(second, 201)["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert calls(sandbox, CREATE) == 1
    assert CrmWrite.objects.count() == 1
    # Another organisation's identical key is its own.
    assert CrmWrite.objects.get().idempotency_key == "create-ada-1"


def test_a_reused_key_with_another_request_is_refused(
    sandbox: Any, connection: Connection, api: Api
) -> None:
    key = {"Idempotency-Key": "k-42"}
    assert_envelope_ok(
        api.post(url(connection, "/contacts"), {"email": "a@x.test"}, headers=key), 201
    )
    other = api.post(url(connection, "/contacts"), {"email": "b@x.test"}, headers=key)
    body = assert_envelope_error(other, 422, "idempotency_key_reused")
    assert body["error"]["details"]["idempotency_key"] == "k-42"
    # The same key on another route (an update) is another request too.
    record_id = CrmWrite.objects.get().result_id
    assert_envelope_error(
        patch(api, url(connection, f"/contacts/{record_id}"), {"first_name": "A"}, key),
        422,
        "idempotency_key_reused",
    )
    assert calls(sandbox, CREATE) == 1


@pytest.mark.parametrize("key", ["", " ", "x" * 201, "caf\u00e9", "tab\there"])
def test_a_malformed_key_is_a_validation_error(
    sandbox: Any, connection: Connection, api: Api, key: str
) -> None:
    response = api.post(
        url(connection, "/contacts"), {"email": "a@x.test"}, headers={"Idempotency-Key": key}
    )
    if response.status_code == 201:  # a blank header may be dropped before Ninja sees it
        assert key.strip() == ""
        return
    assert_envelope_error(response, 422, "validation_failed")
    assert calls(sandbox, CREATE) == 0


def test_writes_of_another_organisation_are_not_found(
    sandbox: Any, outbox: Any, org: Organization, other_org: Organization, api: Api
) -> None:
    theirs = make_connection(sandbox, other_org)
    response = api.post(url(theirs, "/contacts"), {"email": "a@x.test"})
    assert_envelope_error(response, 404, "not_found")
    write = async_to_sync(write_submit)(
        connection=theirs,
        operation="create",
        object_type="contact",
        payload={"email": "b@x.test"},
        actor=TEST_ACTOR,
    ).write
    assert_envelope_error(api.get(f"/api/v1/writes/{write.pk}"), 404, "not_found")
    assert_envelope_error(api.post(f"/api/v1/writes/{write.pk}/replay"), 404, "not_found")
    assert assert_envelope_ok(api.get("/api/v1/writes")) == []
    assert_envelope_error(api.get("/api/v1/writes/not-a-uuid"), 404, "not_found")


def test_update_archive_and_associate_go_through_the_outbox(
    sandbox: Any, connection: Connection, api: Api
) -> None:
    contact = assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "a@x.test"}), 201)
    company = assert_envelope_ok(api.post(url(connection, "/companies"), {"name": "X"}), 201)
    updated = assert_envelope_ok(
        patch(api, url(connection, f"/contacts/{contact['id']}"), {"job_title": "Engineer"})
    )
    assert updated["job_title"] == "Engineer"
    linked = api.client.put(
        url(connection, f"/contacts/{contact['id']}/associations/companies/{company['id']}"),
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert assert_envelope_ok(linked)["to_id"] == company["id"]
    archived = assert_envelope_ok(api.delete(url(connection, f"/contacts/{contact['id']}")))
    assert archived == {"id": contact["id"], "archived": True}
    operations = list(
        CrmWrite.objects.order_by("created_at").values_list("operation", "status", "record_id")
    )
    assert operations == [
        ("create", "succeeded", ""),
        ("create", "succeeded", ""),
        ("update", "succeeded", contact["id"]),
        ("associate", "succeeded", contact["id"]),
        ("archive", "succeeded", contact["id"]),
    ]
    # The mirror follows: the contact is marked deleted.
    mirrored = CrmRecord.objects.get(connection=connection, external_id=contact["id"])
    assert mirrored.deleted_at is not None
    assert mirrored.fields["job_title"] == "Engineer"


def test_a_refused_write_fails_with_the_providers_error(
    sandbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    response = api.post(url(connection, "/contacts"), {"properties": {"no_such_property": "x"}})
    body = assert_envelope_error(response, 422, "validation_failed")
    assert "no_such_property" in body["error"]["details"]["fields"]
    write = CrmWrite.objects.get()
    assert write.status == WriteStatus.FAILED
    assert write.last_error_code == "validation_failed"
    assert body["error"]["details"]["write_id"] == str(write.pk)
    assert published == []  # not retried
    # Our own validation comes first: nothing is stored for a body that cannot be a write.
    assert_envelope_error(
        api.post(url(connection, "/deals"), {"amount": "lots"}), 422, "validation_failed"
    )
    assert CrmWrite.objects.count() == 1


# --- retries ----------------------------------------------------------------------------------


def test_a_503_is_retried_until_it_succeeds(
    sandbox: Any, connection: Connection, api: Api, published: list[dict[str, Any]]
) -> None:
    sandbox.faults(fail_next=2, fail_status=503)
    response = api.post(
        url(connection, "/contacts"),
        {"email": "ada@example.com"},
        headers={"Idempotency-Key": "r1"},
    )
    queued = assert_envelope_ok(response, 202)
    write = CrmWrite.objects.get()
    assert queued["status_url"] == f"/api/v1/writes/{write.pk}"
    assert response["Location"] == queued["status_url"]
    assert queued["write"]["status"] == "pending"
    assert queued["write"]["last_error_code"] == "provider_unavailable"
    assert not queued["write"]["uncertain"]  # a 503 is an answer: nothing was written
    assert published[-1]["queue"] == "writes"
    assert published[-1]["ids"] == [str(write.pk)]
    done = drive(write.pk)
    assert done.status == WriteStatus.SUCCEEDED
    assert done.attempts == 3
    assert calls(sandbox, CREATE) == 3
    assert calls(sandbox, SEARCH) == 0  # no lookups for certain failures
    assert sandbox.hubspot_stats(object_type="contacts")["live"] == 1
    # The status URL now shows the record, and the key answers with it.
    status = assert_envelope_ok(api.get(queued["status_url"]))
    assert status["status"] == "succeeded"
    assert status["result"]["email"] == "ada@example.com"
    again = api.post(
        url(connection, "/contacts"),
        {"email": "ada@example.com"},
        headers={"Idempotency-Key": "r1"},
    )
    assert assert_envelope_ok(again, 201)["id"] == done.result_id


def test_a_429_waits_at_least_retry_after(
    sandbox: Any, connection: Connection, api: Api, published: list[dict[str, Any]]
) -> None:
    sandbox.faults(rate_limit_next=1)  # HubSpot's 429 says Retry-After: 1
    before = timezone.now()
    assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "a@x.test"}), 202)
    write = CrmWrite.objects.get()
    assert write.last_error_code == "rate_limited"
    assert write.next_attempt_at is not None
    assert write.next_attempt_at - before >= timedelta(seconds=1)
    assert published[-1]["countdown"] >= 1.0
    # A worker that comes early sends nothing.
    async_to_sync(write_process)([write.pk])
    assert calls(sandbox, CREATE) == 1
    assert CrmWrite.objects.get().status == WriteStatus.PENDING
    done = drive(write.pk)
    assert done.status == WriteStatus.SUCCEEDED
    assert calls(sandbox, CREATE) == 2


def test_a_write_our_budget_held_back_keeps_its_attempt(
    sandbox: Any, connection: Connection, api: Api, published: list[dict[str, Any]], settings: Any
) -> None:
    # One call per ten seconds, and no waiting for more: the second write never leaves.
    settings.RATE_LIMIT_OVERRIDES = {"hubspot": {"ten_secondly_rolling": 1}}
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 0
    assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "a@x.test"}), 201)
    assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "b@x.test"}), 202)
    assert calls(sandbox, CREATE) == 1
    held = CrmWrite.objects.get(payload__email="b@x.test")
    assert held.status == WriteStatus.PENDING
    assert held.last_error_code == "rate_limited"
    assert held.attempts == 0  # not sent, so not an attempt
    assert held.next_attempt_at is not None
    assert not held.uncertain


def test_backoff_is_full_jitter_and_never_below_retry_after(settings: Any) -> None:
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 2.0
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 60.0
    waits = [policy.backoff_seconds(4) for _ in range(300)]
    assert all(0 <= w <= 16 for w in waits)  # [0, 2 * 2^3]
    assert max(waits) > 8
    assert min(waits) < 4
    assert all(policy.backoff_seconds(20) <= 60 for _ in range(50))
    assert all(policy.backoff_seconds(1, retry_after=30) >= 30 for _ in range(50))


def test_dead_letter_after_the_last_attempt_then_replay(
    sandbox: Any, outbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    outbox.OUTBOX_MAX_ATTEMPTS = 3
    sandbox.faults(fail_next=3, fail_status=503)
    assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "a@x.test"}), 202)
    write = drive(CrmWrite.objects.get().pk)
    assert write.status == WriteStatus.DEAD
    assert (write.attempts, write.max_attempts) == (3, 3)
    assert "gave up after 3 attempts" in write.last_error
    assert AuditEvent.objects.filter(action="crm_write.dead_lettered").count() == 1
    assert calls(sandbox, CREATE) == 3
    # It is listed as dead; a replay (owners/admins) sends it again with fresh attempts.
    dead = assert_envelope_ok(api.get("/api/v1/writes", {"status": "dead"}))
    assert [w["id"] for w in dead] == [str(write.pk)]
    replayed = api.post(f"/api/v1/writes/{write.pk}/replay")
    out = assert_envelope_ok(replayed, 202)
    assert (out["status"], out["attempts"]) == ("pending", 0)
    assert replayed["Location"] == f"/api/v1/writes/{write.pk}"
    assert published[-1]["ids"] == [str(write.pk)]
    assert AuditEvent.objects.filter(action="crm_write.replayed").count() == 1
    done = drive(write.pk)
    assert done.status == WriteStatus.SUCCEEDED
    assert sandbox.hubspot_stats(object_type="contacts")["live"] == 1
    # Only dead or failed writes can be replayed.
    assert_envelope_error(api.post(f"/api/v1/writes/{write.pk}/replay"), 409, "conflict")


def test_replay_needs_a_manager(
    sandbox: Any, connection: Connection, org: Organization, published: list[Any]
) -> None:
    sandbox.faults(fail_next=1)
    outcome = async_to_sync(write_submit)(
        connection=connection,
        operation="create",
        object_type="contact",
        payload={"email": "a@x.test"},
        actor=TEST_ACTOR,
    )
    CrmWrite.objects.filter(pk=outcome.write.pk).update(status=WriteStatus.DEAD)
    member = make_membership(organization=org, role=Role.MEMBER)
    client = Client()
    client.force_login(member.user)
    # A member may look, but not replay.
    assert_envelope_ok(client.get(f"/api/v1/writes/{outcome.write.pk}"))
    denied = client.post(f"/api/v1/writes/{outcome.write.pk}/replay")
    assert_envelope_error(denied, 403, "permission_denied")
    assert CrmWrite.objects.get(pk=outcome.write.pk).status == WriteStatus.DEAD


# --- uncertain creates ------------------------------------------------------------------------


def test_an_uncertain_create_is_found_by_the_write_id_not_sent_again(
    sandbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    # The deal is created, then HubSpot's answer never comes: deals have no natural key, so
    # only the write id on the record can tell.
    sandbox.faults(timeout_after_next=1, timeout_seconds=5)
    response = api.post(url(connection, "/deals"), {"name": "Maybe"})
    queued = assert_envelope_ok(response, 202)
    assert queued["write"]["uncertain"] is True
    assert sandbox.hubspot_stats(object_type="deals")["live"] == 1  # it did happen
    done = drive(CrmWrite.objects.get().pk)
    assert done.status == WriteStatus.SUCCEEDED
    assert not done.uncertain
    assert "found at the provider" in done.last_error
    stats = sandbox.hubspot_stats(object_type="deals")
    assert stats["live"] == 1
    assert stats["duplicates"][WRITE_ID] == 0
    assert calls(sandbox, "POST /crm/v3/objects/deals") == 1
    assert calls(sandbox, "POST /crm/v3/objects/deals/search") >= 1
    assert done.result is not None
    assert done.result["name"] == "Maybe"


def test_an_uncertain_contact_is_found_by_email_without_the_property(
    sandbox: Any, outbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    outbox.PROVIDERS = dict(outbox.PROVIDERS) | {
        "hubspot": dict(outbox.PROVIDERS["hubspot"]) | {"write_id_property": ""}
    }
    sandbox.faults(timeout_after_next=1, timeout_seconds=5)
    assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "grace@x.test"}), 202)
    done = drive(CrmWrite.objects.get().pk)
    assert done.status == WriteStatus.SUCCEEDED
    assert done.result is not None
    assert done.result["email"] == "grace@x.test"
    assert calls(sandbox, CREATE) == 1
    assert sandbox.hubspot_stats(object_type="contacts")["live"] == 1


def test_an_old_record_with_the_same_domain_is_not_taken_for_ours(
    sandbox: Any, outbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    outbox.PROVIDERS = dict(outbox.PROVIDERS) | {
        "hubspot": dict(outbox.PROVIDERS["hubspot"]) | {"write_id_property": ""}
    }
    outbox.OUTBOX_RECONCILE_SKEW_SECONDS = 0
    old = assert_envelope_ok(
        api.post(url(connection, "/companies"), {"name": "Old", "domain": "same.test"}), 201
    )
    time.sleep(0.05)
    sandbox.faults(timeout_next=1, timeout_seconds=5)  # held before it runs: nothing created
    assert_envelope_ok(
        api.post(url(connection, "/companies"), {"name": "New", "domain": "same.test"}), 202
    )
    done = drive(CrmWrite.objects.order_by("-created_at").first().pk)  # type: ignore[union-attr]
    assert done.status == WriteStatus.SUCCEEDED
    assert done.result_id != old["id"]
    assert sandbox.hubspot_stats(object_type="companies")["live"] == 2


def test_an_unanswered_create_that_did_not_happen_is_sent_again(
    sandbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    sandbox.faults(timeout_next=1, timeout_seconds=5)
    assert_envelope_ok(api.post(url(connection, "/deals"), {"name": "Once"}), 202)
    assert sandbox.hubspot_stats(object_type="deals")["live"] == 0
    done = drive(CrmWrite.objects.get().pk)
    assert done.status == WriteStatus.SUCCEEDED
    assert calls(sandbox, "POST /crm/v3/objects/deals") == 2
    assert sandbox.hubspot_stats(object_type="deals")["live"] == 1


def test_an_uncertain_create_that_cannot_be_checked_is_dead_lettered(
    sandbox: Any, outbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    outbox.PROVIDERS = dict(outbox.PROVIDERS) | {
        "hubspot": dict(outbox.PROVIDERS["hubspot"]) | {"write_id_property": ""}
    }
    sandbox.faults(timeout_after_next=1, timeout_seconds=5)
    assert_envelope_ok(api.post(url(connection, "/deals"), {"name": "Unknowable"}), 202)
    done = drive(CrmWrite.objects.get().pk)
    assert done.status == WriteStatus.DEAD
    assert done.uncertain
    assert done.last_error_code == "uncertain"
    assert "Look for the record" in done.last_error
    assert calls(sandbox, "POST /crm/v3/objects/deals") == 1  # never sent blindly again
    status = assert_envelope_ok(api.get(f"/api/v1/writes/{done.pk}"))
    assert status["result"]["error"]["code"] == "conflict"


def test_an_expired_lease_is_checked_before_the_write_is_sent_again(
    sandbox: Any, outbox: Any, connection: Connection, published: list[Any]
) -> None:
    """A worker claimed a write, sent it, and died before recording the answer."""
    outcome = async_to_sync(write_submit)(
        connection=connection,
        operation="create",
        object_type="company",
        payload={"name": "Crashy", "domain": "crashy.test"},
        actor=TEST_ACTOR,
        inline=False,
    )
    [claimed] = _claim([outcome.write.pk], due_only=False)
    assert claimed.status == WriteStatus.SENDING
    assert claimed.attempts == 1
    sent = async_to_sync(crm_client_for(connection).create)("company", _stamped(claimed))
    assert sent.is_ok
    # Another worker cannot take it while the lease holds...
    assert async_to_sync(write_process)([claimed.pk], due_only=False) == 0
    assert write_sweep().recovered == 0
    # ...and once it has run out the sweep puts it back, uncertain.
    CrmWrite.objects.filter(pk=claimed.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    swept = write_sweep()
    assert swept.recovered == 1
    assert str(claimed.pk) in published[-1]["ids"]
    back = CrmWrite.objects.get(pk=claimed.pk)
    assert (back.status, back.uncertain, back.last_error_code) == ("pending", True, "lease_expired")
    done = drive(claimed.pk)
    assert done.status == WriteStatus.SUCCEEDED
    assert done.result_id == sent.unwrap().id
    assert done.attempts == 2
    stats = sandbox.hubspot_stats(object_type="companies")
    assert stats["live"] == 1
    assert stats["duplicates"][WRITE_ID] == 0


def _stamped(write: CrmWrite) -> Any:
    return CompanyIn.model_validate(write.payload | {"properties": {WRITE_ID: str(write.pk)}})


def test_a_late_worker_cannot_overwrite_a_newer_attempt(
    sandbox: Any, connection: Connection, published: list[Any]
) -> None:
    from integrations.outbox.sender import settle_all

    outcome = async_to_sync(write_submit)(
        connection=connection,
        operation="create",
        object_type="contact",
        payload={"email": "a@x.test"},
        actor=TEST_ACTOR,
        inline=False,
    )
    [stale] = _claim([outcome.write.pk], due_only=False)
    CrmWrite.objects.filter(pk=stale.pk).update(
        status=WriteStatus.PENDING, next_attempt_at=timezone.now()
    )
    [fresh] = _claim([stale.pk], due_only=True)
    assert fresh.attempts == 2
    kept = settle_all([(stale, {"status": WriteStatus.FAILED}, None)], connection)
    assert kept == {}
    assert CrmWrite.objects.get(pk=stale.pk).status == WriteStatus.SENDING


# --- queued writes and the 202 answer ---------------------------------------------------------


def test_a_write_still_in_flight_at_the_deadline_is_answered_202(
    sandbox: Any, outbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    outbox.OUTBOX_INLINE_SECONDS = 0.2
    outbox.OUTBOX_LEASE_SECONDS = 1.0
    sandbox.faults(latency_ms=600)
    response = api.post(url(connection, "/contacts"), {"email": "slow@x.test"})
    queued = assert_envelope_ok(response, 202)
    assert queued["write"]["status"] == "sending"
    assert response["Location"] == queued["status_url"]
    write_id = queued["write"]["id"]
    # This test client ends the request's event loop with the answer, so the send it left
    # running dies with it: the lease runs out, and the sweep checks before sending again.
    time.sleep(1.2)
    sandbox.faults()
    swept = write_sweep()
    assert swept.recovered == 1
    done = drive(write_id)
    assert done.status == WriteStatus.SUCCEEDED
    assert sandbox.hubspot_stats(object_type="contacts")["live"] == 1
    assert calls(sandbox, CREATE) <= 2


def test_a_queued_write_waits_for_a_worker(
    sandbox: Any, connection: Connection, api: Api, published: list[dict[str, Any]]
) -> None:
    outcome = async_to_sync(write_submit)(
        connection=connection,
        operation="create",
        object_type="contact",
        payload=ContactIn(email="q@x.test"),
        actor=TEST_ACTOR,
        source="agent",
        inline=False,
    )
    assert outcome.status == WriteStatus.PENDING
    assert not outcome.done
    assert published == [{"ids": [str(outcome.write.pk)], "queue": "writes", "countdown": 0.0}]
    assert calls(sandbox, CREATE) == 0
    got = assert_envelope_ok(api.get(f"/api/v1/writes/{outcome.write.pk}"))
    assert (got["status"], got["source"], got["requested_by"]) == ("pending", "agent", "test")
    assert write_send_task.run([str(outcome.write.pk)]) == 1
    assert CrmWrite.objects.get().status == WriteStatus.SUCCEEDED
    # Sent once: the same message again finds nothing to do.
    assert write_send_task.run([str(outcome.write.pk)]) == 0
    assert calls(sandbox, CREATE) == 1


def test_the_sweep_queues_writes_whose_message_was_lost(
    sandbox: Any, outbox: Any, connection: Connection, published: list[dict[str, Any]]
) -> None:
    outbox.OUTBOX_SWEEP_SECONDS = 0
    outcome = async_to_sync(write_submit)(
        connection=connection,
        operation="create",
        object_type="contact",
        payload={"email": "lost@x.test"},
        actor=TEST_ACTOR,
        inline=False,
    )
    published.clear()
    swept = write_sweep()
    assert swept.queued == 1
    assert published[0]["ids"] == [str(outcome.write.pk)]


# --- batches --------------------------------------------------------------------------------------


def test_a_batch_is_one_write_per_item_sent_in_batch_calls(
    sandbox: Any, connection: Connection, api: Api
) -> None:
    items = [{"email": f"p{n}@x.test"} for n in range(150)]
    key = {"Idempotency-Key": "batch-1"}
    response = api.post(url(connection, "/contacts/batch"), {"create": items}, headers=key)
    out = assert_envelope_ok(response)
    assert len(out["results"]) == 150
    assert out["errors"] == []
    assert out["queued"] == 0
    assert [i["status"] for i in out["items"]] == ["succeeded"] * 150
    assert out["items"][7]["record"]["email"] == "p7@x.test"
    keys = set(CrmWrite.objects.values_list("idempotency_key", flat=True))
    assert keys == {f"batch-1:{n}" for n in range(150)}
    assert calls(sandbox, "POST /crm/v3/objects/contacts/batch/create") == 2
    # The same batch again: the stored outcomes, no new calls.
    again = assert_envelope_ok(
        api.post(url(connection, "/contacts/batch"), {"create": items}, headers=key)
    )
    assert [i["write_id"] for i in again["items"]] == [i["write_id"] for i in out["items"]]
    assert calls(sandbox, "POST /crm/v3/objects/contacts/batch/create") == 2
    # With one item changed, that item's key was used for another request.
    changed = [*items[:-1], {"email": "other@x.test"}]
    refused = api.post(url(connection, "/contacts/batch"), {"create": changed}, headers=key)
    body = assert_envelope_error(refused, 422, "idempotency_key_reused")
    assert body["error"]["details"]["index"] == 149
    # The batch's writes are listed by its key.
    listed = assert_envelope_ok(api.get("/api/v1/writes", {"batch": "batch-1", "limit": 200}))
    assert len(listed) == 150


def test_batch_items_fail_and_retry_one_by_one(
    sandbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    sandbox.faults(fail_next=1, fail_status=503)
    items: list[dict[str, Any]] = [{"name": f"Deal {n}"} for n in range(4)]
    items[2] = {"name": "Bad", "properties": {"no_such_property": "x"}}
    response = api.post(url(connection, "/deals/batch"), {"create": items})
    out = assert_envelope_ok(response, 202)
    assert out["queued"] == 4  # the whole call got a 503: every item waits for a retry
    assert response["Location"] == out["status_url"]
    assert out["status_url"].startswith("/api/v1/writes?batch=auto%3A")
    ids = [i["write_id"] for i in out["items"]]
    assert [i["status"] for i in out["items"]] == ["pending"] * 4
    assert published[-1]["ids"] == ids  # one message for the group: one batch call again
    async_to_sync(write_process)(ids)  # early: nothing is due yet (or just due)
    for write_id in ids:
        drive(write_id)
    states = dict(CrmWrite.objects.values_list("idempotency_key", "status"))
    prefix = out["idempotency_key"]
    assert states == {
        f"{prefix}:0": "succeeded",
        f"{prefix}:1": "succeeded",
        f"{prefix}:2": "failed",
        f"{prefix}:3": "succeeded",
    }
    assert calls(sandbox, "POST /crm/v3/objects/deals/batch/create") == 2
    assert sandbox.hubspot_stats(object_type="deals")["live"] == 3


def test_batch_updates_answer_per_item(sandbox: Any, connection: Connection, api: Api) -> None:
    made = assert_envelope_ok(
        api.post(url(connection, "/contacts/batch"), {"create": [{"email": "a@x.test"}]})
    )
    record_id = made["results"][0]["id"]
    out = assert_envelope_ok(
        api.post(
            url(connection, "/contacts/batch"),
            {"update": [{"id": record_id, "job_title": "CTO"}, {"id": "999999", "job_title": "X"}]},
        )
    )
    assert [i["status"] for i in out["items"]] == ["succeeded", "failed"]
    assert out["items"][0]["record"]["job_title"] == "CTO"
    assert out["errors"][0]["index"] == 1
    assert out["items"][1]["error"]["code"] == out["errors"][0]["code"]


# --- the /writes routes and the admin ---------------------------------------------------------


def test_writes_are_listed_filtered_and_paged(
    sandbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    for n in range(3):
        assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": f"{n}@x.test"}), 201)
    sandbox.faults(fail_next=1)
    assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "p@x.test"}), 202)
    page = api.get("/api/v1/writes", {"limit": 2})
    body = orjson.loads(page.content)
    assert len(body["data"]) == 2
    assert body["meta"]["pagination"]["has_more"]
    cursor = body["meta"]["pagination"]["next_cursor"]
    rest = assert_envelope_ok(api.get("/api/v1/writes", {"limit": 2, "cursor": cursor}))
    assert len(rest) == 2
    assert [
        w["status"] for w in assert_envelope_ok(api.get("/api/v1/writes", {"status": "pending"}))
    ] == ["pending"]
    mine = assert_envelope_ok(api.get("/api/v1/writes", {"connection_id": str(connection.pk)}))
    assert len(mine) == 4
    none = assert_envelope_ok(api.get("/api/v1/writes", {"connection_id": str(uuid.uuid4())}))
    assert none == []
    assert_envelope_error(api.get("/api/v1/writes", {"status": "lost"}), 422, "validation_failed")
    one = assert_envelope_ok(api.get(f"/api/v1/writes/{rest[0]['id']}"))
    assert "access_token" not in str(one)


def test_openapi_documents_the_write_routes(db: None) -> None:
    doc = orjson.loads(Client().get("/api/v1/openapi.json").content)
    paths = doc["paths"]
    create = paths["/api/v1/connections/{connection_id}/contacts"]["post"]
    assert {"201", "202", "422"} <= set(create["responses"])
    names = [p["name"] for p in create["parameters"]]
    assert "Idempotency-Key" in names
    for path in ("/api/v1/writes", "/api/v1/writes/{write_id}", "/api/v1/writes/{write_id}/replay"):
        assert path in paths
    assert "202" in paths["/api/v1/connections/{connection_id}/deals/batch"]["post"]["responses"]


def staff() -> Client:
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def test_the_admin_lists_writes_and_replays_and_sends_them(
    sandbox: Any, connection: Connection, api: Api, published: list[Any]
) -> None:
    sandbox.faults(fail_next=2)
    assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "a@x.test"}), 202)
    assert_envelope_ok(api.post(url(connection, "/contacts"), {"email": "b@x.test"}), 202)
    first, second = CrmWrite.objects.order_by("created_at")
    CrmWrite.objects.filter(pk=first.pk).update(status=WriteStatus.DEAD)
    client = staff()
    listing = client.get("/admin/integrations/crmwrite/", {"status": "dead"})
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "Dead-lettered" in page
    assert str(first.pk) in page
    assert str(second.pk) not in page
    detail = client.get(f"/admin/integrations/crmwrite/{first.pk}/change/").content.decode()
    assert "a@x.test" in detail
    assert connection.access_token not in detail
    assert connection.refresh_token is not None
    assert connection.refresh_token not in detail
    for query in ({"q": first.idempotency_key}, {"provider": "hubspot"}, {"operation": "create"}):
        assert client.get("/admin/integrations/crmwrite/", query).status_code == 200

    def act(action: str, write: CrmWrite) -> str:
        response = client.post(
            "/admin/integrations/crmwrite/",
            {"action": action, "_selected_action": [str(write.pk)]},
            follow=True,
        )
        assert response.status_code == 200
        return response.content.decode()

    assert "1 write(s) queued again" in act("replay", first)
    assert published[-1]["ids"] == [str(first.pk)]
    assert "only dead or failed" in act("replay", second)
    assert "Sent 1 write(s)" in act("send_now", second)
    assert CrmWrite.objects.get(pk=second.pk).status == WriteStatus.SUCCEEDED
    assert AuditEvent.objects.filter(action="crm_write.sent_now").count() == 1
    assert AuditEvent.objects.filter(action="crm_write.replayed").count() == 1


def test_an_uncertain_salesforce_create_is_found_by_its_external_id(
    sandbox: Any, outbox: Any, org: Organization, api: Api, published: list[Any]
) -> None:
    from integrations.providers.salesforce import catalog
    from tests.integrations.test_salesforce_connections import make_sf_connection

    catalog.forget()  # field lists are cached per org; the sandbox was reset
    outbox.PROVIDERS = dict(outbox.PROVIDERS) | {
        "salesforce": dict(outbox.PROVIDERS["salesforce"])
        | {"write_id_property": "Switchboard_Write_Id__c"}
    }
    connection = make_sf_connection(sandbox, org)
    sandbox.faults(timeout_after_next=1, timeout_seconds=5)
    body = {"name": "Maybe", "stage": "Prospecting", "close_date": "2030-01-31"}
    assert_envelope_ok(api.post(url(connection, "/deals"), body), 202)
    assert sandbox.sf_stats(sobject="Opportunity")["live"] == 1
    done = drive(CrmWrite.objects.get().pk)
    assert done.status == WriteStatus.SUCCEEDED, done.last_error
    assert "found at the provider" in done.last_error
    stats = sandbox.sf_stats(sobject="Opportunity")
    assert stats["live"] == 1
    assert stats["duplicates"]["Switchboard_Write_Id__c"] == 0
    # A create that went through normally carries its write id in the External ID field.
    made = assert_envelope_ok(api.post(url(connection, "/companies"), {"name": "Acme"}), 201)
    write = CrmWrite.objects.get(result_id=made["id"])
    assert made["properties"]["Switchboard_Write_Id__c"] == str(write.pk)
