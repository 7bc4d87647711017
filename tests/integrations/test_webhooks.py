"""POST /webhooks/hubspot: HubSpot's v3 signature, storage once per event, routing by portal,
targeted fetches and deletions. Every way a delivery can be wrong (signatures, timestamps, size,
JSON, shape, replays, unknown portals) is in tests/security/test_webhook_edges.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from django.test import Client, TestCase
from hubspot.utils.signature import Signature

from accounts.models import Organization
from core.errors import Conflict
from integrations.models import (
    Connection,
    ConnectionStatus,
    CrmRecord,
    SyncKind,
    SyncRun,
    SyncStatus,
    WebhookEvent,
    WebhookStatus,
)
from integrations.sync.tasks import sync_run_task
from integrations.webhooks import service
from integrations.webhooks.tasks import process_events_task, redispatch_events_task
from integrations.webhooks.verify import sign_v3, signature_uri
from tests.conftest import assert_envelope_error, assert_envelope_ok
from tests.factories import make_organization

SECRET = "test-hubspot-client-secret"
PORTAL = 62515
PUBLIC_URL = "https://switchboard.example.com"
PATH = "/webhooks/hubspot"
_event_ids = itertools.count(7_000_000)
_tokens = itertools.count(1)

# HubSpot's table of percent-escapes to decode in the URI before signing (written out here
# independently of the code under test).
HUBSPOT_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def hubspot_sign(secret: str, method: str, url: str, body: bytes, timestamp: str) -> str:
    for escaped, char in HUBSPOT_DECODED.items():
        url = url.replace(escaped, char)
    message = method.encode() + url.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def now_ms() -> int:
    return int(time.time() * 1000)


def event(
    kind: str = "contact.propertyChange",
    object_id: int = 501,
    *,
    portal: int = PORTAL,
    occurred: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": next(_event_ids),
        "subscriptionId": 2100001,
        "portalId": portal,
        "appId": 3100001,
        "occurredAt": occurred if occurred is not None else now_ms() - 1000,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM",
    }
    if kind.endswith("propertyChange"):
        body |= {"propertyName": "firstname", "propertyValue": "Ada"}
    return body | extra


def deliver(
    client: Client,
    events: Any = None,
    *,
    raw: bytes | None = None,
    secret: str = SECRET,
    timestamp: int | None = None,
    path: str = PATH,
    signed_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST a delivery signed as HubSpot signs it (for ``signed_url``, by default the public
    URL of ``path``)."""
    body = raw if raw is not None else orjson.dumps(events)
    stamp = str(timestamp if timestamp is not None else now_ms())
    url = signed_url if signed_url is not None else f"{PUBLIC_URL}{path}"
    signed = {
        "X-HubSpot-Signature-v3": hubspot_sign(secret, "POST", url, body, stamp),
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-Version": "v3",
    }
    return client.post(
        path, body, content_type="application/json", headers=signed | (headers or {})
    )


@pytest.fixture
def hook_settings(settings: Any) -> Any:
    settings.PUBLIC_URL = PUBLIC_URL
    settings.PROVIDERS = dict(settings.PROVIDERS) | {
        "hubspot": {
            "client_id": "test-client",
            "client_secret": SECRET,
            "redirect_uri": f"{PUBLIC_URL}/connect/hubspot/callback",
            "app_url": "http://127.0.0.1:9/app",
            "api_url": "http://127.0.0.1:9/api",
        }
    }
    return settings


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What would go to the broker: webhook processing and sync tasks, recorded instead."""
    calls: dict[str, list[Any]] = {"process": [], "sync": []}
    monkeypatch.setattr(
        process_events_task,
        "apply_async",
        lambda args, queue: calls["process"].append(args[0]) if queue == "sync" else None,
    )
    monkeypatch.setattr(sync_run_task, "delay", lambda run_id: calls["sync"].append(run_id))
    return calls


def known_portal() -> Connection:
    """A disconnected connection to PORTAL in an organisation of its own: the portal is known
    (a delivery of only unknown portals is refused), yet its events stay unrouted until a test
    connects it for real."""
    return connect(make_organization(), status=ConnectionStatus.DISCONNECTED)


@pytest.fixture
def client(db: None, hook_settings: Any) -> Client:
    known_portal()
    return Client()


def connect(
    organization: Organization,
    portal: int = PORTAL,
    status: ConnectionStatus = ConnectionStatus.ACTIVE,
    **fields: Any,
) -> Connection:
    return Connection.objects.create(
        organization=organization,
        provider="hubspot",
        external_account_id=str(portal),
        display_name=f"portal-{portal}.hubspot.test",
        access_token=f"token-{next(_tokens)}",
        status=status,
        **fields,
    )


def post(client: Client, events: Any, **kwargs: Any) -> Any:
    """Deliver, with the commit hooks run (the processing task is recorded by ``sent``)."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return deliver(client, events, **kwargs)


def process(sent: dict[str, list[Any]]) -> list[dict[str, int]]:
    """Run the recorded processing tasks (eagerly, here), with their commit hooks."""
    results = []
    batches, sent["process"] = sent["process"], []
    for ids in batches:
        with TestCase.captureOnCommitCallbacks(execute=True):
            results.append(process_events_task.apply(args=(ids,), throw=True).get())
    return results


def runs(connection: Connection) -> list[SyncRun]:
    return list(SyncRun.objects.filter(connection=connection).order_by("object_type"))


# --- the signature --------------------------------------------------------------------------


def test_our_signature_matches_hubspots_own_sdk() -> None:
    body = orjson.dumps([event()])
    url = f"{PUBLIC_URL}/webhooks/hubspot?tag=a%3Ab%2Cc"
    stamp = str(now_ms())
    official = Signature.get_signature(
        SECRET, body.decode(), "v3", signature_uri(url), "POST", stamp
    )
    assert sign_v3(SECRET, "POST", url, body, stamp) == official
    assert hubspot_sign(SECRET, "POST", url, body, stamp) == official
    assert signature_uri(url) == f"{PUBLIC_URL}/webhooks/hubspot?tag=a:b,c"
    # Only the listed escapes are decoded (a space or "%25" stays encoded).
    assert signature_uri("https://x.test/a%20b%25c%2fd") == "https://x.test/a%20b%25c/d"


def test_a_valid_delivery_is_stored_and_acknowledged(
    client: Client, sent: dict[str, list[Any]]
) -> None:
    events = [event(), event("company.creation", 9001)]
    data = assert_envelope_ok(post(client, events))
    assert data == {"received": 2, "stored": 2, "duplicates": 0, "rejected": 0}
    stored = list(WebhookEvent.objects.order_by("pk"))
    assert [e.event_id for e in stored] == [f"{PORTAL}:{e['eventId']}" for e in events]
    assert [e.payload for e in stored] == events  # the raw event, as HubSpot sent it
    first = stored[0]
    assert first.provider == "hubspot"
    assert first.external_account_id == str(PORTAL)
    assert first.subscription_type == "contact.propertyChange"
    assert (first.object_type, first.object_id) == ("contact", "501")
    assert first.occurred_at == datetime.fromtimestamp(events[0]["occurredAt"] / 1000, UTC)
    assert first.status == WebhookStatus.RECEIVED
    # Routing happens in the task, sent once the events were committed.
    assert sent["process"] == [[e.pk for e in stored]]


def test_the_signed_url_is_the_public_url_or_the_requests_own(client: Client) -> None:
    # Behind a proxy: HubSpot called the public URL, query string included.
    path = f"{PATH}?route=a%3Ab"
    assert_envelope_ok(deliver(client, [event()], path=path))
    # Reached under the request's own host (the test client's "testserver").
    assert_envelope_ok(deliver(client, [event()], signed_url=f"http://testserver{PATH}"))
    # Signed for another URL: refused.
    # The target URL configured with a trailing slash.
    assert_envelope_ok(deliver(client, [event()], path=f"{PATH}/"))
    other = deliver(client, [event()], signed_url=f"{PUBLIC_URL}/webhooks/elsewhere")
    assert_envelope_error(other, 401, "signature_invalid")
    other_query = deliver(client, [event()], path=path, signed_url=f"{PUBLIC_URL}{PATH}")
    assert_envelope_error(other_query, 401, "signature_invalid")
    assert WebhookEvent.objects.count() == 3


def test_a_redelivery_of_an_event_not_yet_processed_sends_it_again(
    client: Client, sent: dict[str, list[Any]]
) -> None:
    events = [event()]
    assert_envelope_ok(post(client, events))
    assert_envelope_ok(post(client, events))
    stored = WebhookEvent.objects.get()
    assert sent["process"] == [[stored.pk], [stored.pk]]
    results = process(sent)
    assert [r["unrouted"] for r in results] == [1, 0]  # the second task found nothing to do


def test_only_post_and_only_known_providers(client: Client) -> None:
    response = client.get(PATH)
    body = assert_envelope_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    assert body["error"]["details"] == {"allowed_methods": ["POST"]}
    assert_envelope_error(client.put(PATH, b"[]"), 405, "method_not_allowed")
    assert_envelope_error(deliver(client, [], path="/webhooks/zoho"), 404, "not_found")


def test_no_csrf_token_or_session_is_needed(db: None, hook_settings: Any) -> None:
    known_portal()
    strict = Client(enforce_csrf_checks=True)
    assert_envelope_ok(deliver(strict, [event()]))


def test_an_unconfigured_provider_answers_503(client: Client, settings: Any) -> None:
    settings.PROVIDERS = dict(settings.PROVIDERS) | {
        "hubspot": dict(settings.PROVIDERS["hubspot"], client_secret="")
    }
    assert_envelope_error(deliver(client, [event()]), 503, "service_unavailable")
    assert WebhookEvent.objects.count() == 0


# --- routing and the mirror work --------------------------------------------------------------


def test_events_are_routed_to_every_active_connection_of_the_portal(
    client: Client, sent: dict[str, list[Any]], org: Organization, other_org: Organization
) -> None:
    mine, theirs = connect(org), connect(other_org)
    elsewhere = connect(org, portal=1111)  # another portal: not involved
    stale = connect(make_organization(), status=ConnectionStatus.NEEDS_REAUTH)
    events = [
        event("contact.creation", 501),
        event("contact.propertyChange", 502),
        event("contact.propertyChange", 501),
        event("company.propertyChange", 9001),
        event("deal.creation", 7001),
    ]
    assert_envelope_ok(post(client, events))
    [result] = process(sent)
    assert result == {"processed": 5, "unrouted": 0, "ignored": 0, "failed": 0, "sync_runs": 6}
    for connection in (mine, theirs):
        # One targeted fetch per (connection, object type), with every changed record.
        found = runs(connection)
        assert [(r.object_type, r.kind, r.trigger, r.status) for r in found] == [
            ("company", SyncKind.TARGETED, "webhook", SyncStatus.QUEUED),
            ("contact", SyncKind.TARGETED, "webhook", SyncStatus.QUEUED),
            ("deal", SyncKind.TARGETED, "webhook", SyncStatus.QUEUED),
        ]
        assert [sorted(r.record_ids or []) for r in found] == [["9001"], ["501", "502"], ["7001"]]
    assert sorted(sent["sync"]) == sorted(
        str(r.pk) for r in SyncRun.objects.filter(trigger="webhook")
    )
    assert not SyncRun.objects.filter(connection__in=[stale, elsewhere]).exists()
    for stored in WebhookEvent.objects.all():
        assert stored.status == WebhookStatus.PROCESSED
        assert stored.attempts == 1
        assert stored.processed_at is not None
        assert set(stored.connections.all()) == {mine, theirs}


def test_a_deletion_marks_the_mirror_row_deleted(
    client: Client, sent: dict[str, list[Any]], org: Organization
) -> None:
    connection = connect(org)
    row = CrmRecord.objects.create(
        connection=connection, object_type="contact", external_id="501", fields={"email": "a@x"}
    )
    occurred = now_ms() - 5_000
    assert_envelope_ok(post(client, [event("contact.deletion", 501, occurred=occurred)]))
    process(sent)
    row.refresh_from_db()
    assert row.deleted_at == datetime.fromtimestamp(occurred / 1000, UTC)
    assert row.fields == {"email": "a@x"}  # an ordinary deletion keeps the last known values
    assert not SyncRun.objects.exists()  # nothing to fetch
    assert WebhookEvent.objects.get().status == WebhookStatus.PROCESSED


def test_a_privacy_deletion_also_removes_the_personal_data(
    client: Client, sent: dict[str, list[Any]], org: Organization
) -> None:
    connection = connect(org)
    row = CrmRecord.objects.create(
        connection=connection,
        object_type="contact",
        external_id="501",
        fields={"email": "ada@example.com"},
        raw={"email": "ada@example.com"},
    )
    assert_envelope_ok(post(client, [event("contact.privacyDeletion", 501)]))
    process(sent)
    row.refresh_from_db()
    assert row.deleted_at is not None
    assert (row.fields, row.raw) == ({}, {})


def test_the_newest_event_of_a_record_decides(
    client: Client, sent: dict[str, list[Any]], org: Organization
) -> None:
    connection = connect(org)
    for external_id in ("501", "502"):
        CrmRecord.objects.create(
            connection=connection, object_type="contact", external_id=external_id
        )
    t = now_ms() - 10_000
    events = [
        # 501: deleted, then restored -> fetched (and not marked deleted).
        event("contact.restore", 501, occurred=t + 2),
        event("contact.deletion", 501, occurred=t + 1),
        # 502: changed, then deleted -> deleted (and not fetched).
        event("contact.propertyChange", 502, occurred=t + 1),
        event("contact.deletion", 502, occurred=t + 2),
    ]
    assert_envelope_ok(post(client, events))
    process(sent)
    [run] = runs(connection)
    assert run.record_ids == ["501"]
    assert CrmRecord.objects.get(external_id="501").deleted_at is None
    assert CrmRecord.objects.get(external_id="502").deleted_at is not None


def test_a_merge_fetches_the_survivor_and_deletes_the_merged(
    client: Client, sent: dict[str, list[Any]], org: Organization
) -> None:
    connection = connect(org)
    CrmRecord.objects.create(connection=connection, object_type="contact", external_id="502")
    merge = event(
        "contact.merge", 501, primaryObjectId=501, mergedObjectIds=[501, 502], newObjectId=501
    )
    assert_envelope_ok(post(client, [merge]))
    process(sent)
    [run] = runs(connection)
    assert run.record_ids == ["501"]
    assert CrmRecord.objects.get(external_id="502").deleted_at is not None


def test_events_that_are_not_record_changes_are_ignored(
    client: Client, sent: dict[str, list[Any]], org: Organization
) -> None:
    connection = connect(org)
    events = [event("ticket.creation", 1), event("conversation.creation", 2), event("contact.oops")]
    assert_envelope_ok(post(client, events))
    [result] = process(sent)
    assert result["ignored"] == 3
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookStatus.IGNORED}
    assert not SyncRun.objects.exists()
    # Still routed: the organisation sees its portal's events.
    assert all(list(e.connections.all()) == [connection] for e in WebhookEvent.objects.all())


def test_a_connection_with_sync_off_gets_no_fetch(
    client: Client, sent: dict[str, list[Any]], org: Organization, other_org: Organization
) -> None:
    off = connect(org, sync_enabled=False)
    on = connect(other_org)
    assert_envelope_ok(post(client, [event()]))
    process(sent)
    assert runs(off) == []
    assert len(runs(on)) == 1


def test_a_failed_fetch_request_marks_the_event_failed_and_keeps_the_rest(
    client: Client, sent: dict[str, list[Any]], org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = connect(org)
    CrmRecord.objects.create(connection=connection, object_type="company", external_id="9")

    def refuse(**kwargs: Any) -> Any:
        raise Conflict("The connection is not active; re-authorise it before syncing.")

    monkeypatch.setattr(service, "sync_request", refuse)
    events = [event("contact.propertyChange", 501), event("company.deletion", 9)]
    assert_envelope_ok(post(client, events))
    [result] = process(sent)
    assert result["failed"] == 1
    failed = WebhookEvent.objects.get(status=WebhookStatus.FAILED)
    assert failed.object_id == "501"
    assert "conflict" in failed.error
    # The deletion in the same delivery was applied all the same.
    assert CrmRecord.objects.get(external_id="9").deleted_at is not None


def test_lost_tasks_are_sent_again_by_the_sweep(
    client: Client, sent: dict[str, list[Any]], settings: Any
) -> None:
    assert_envelope_ok(post(client, [event()]))
    stored = WebhookEvent.objects.get()
    sent["process"].clear()  # the broker lost it
    assert redispatch_events_task.apply(throw=True).get() == 0  # too recent to call lost
    settings.WEBHOOK_REDISPATCH_AFTER_SECONDS = 0
    assert redispatch_events_task.apply(throw=True).get() == 1
    assert sent["process"] == [[stored.pk]]
    process(sent)
    assert redispatch_events_task.apply(throw=True).get() == 0


def test_a_broker_outage_does_not_lose_the_events(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(process_events_task, "apply_async", down)
    data = assert_envelope_ok(post(client, [event()]))
    assert data["stored"] == 1
    assert WebhookEvent.objects.get().status == WebhookStatus.RECEIVED  # the sweep sends it


@pytest.fixture
def failing_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(**kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("integrations.webhooks.tasks.webhook_process", crash)


def test_a_crashing_task_fails_its_events_visibly(
    client: Client, sent: dict[str, list[Any]], failing_process: None
) -> None:
    assert_envelope_ok(post(client, [event()]))
    ids = sent["process"][0]
    with pytest.raises(RuntimeError):
        process_events_task.apply(args=(ids,), throw=True)
    stored = WebhookEvent.objects.get()
    assert stored.status == WebhookStatus.FAILED
    assert "unexpected error" in stored.error
