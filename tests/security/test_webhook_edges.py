"""Webhook edges of ``POST /webhooks/hubspot``: every way a delivery can be wrong, through
Django's whole stack (the test client) and through uvicorn (a live server, real HTTP, chunked
bodies included).

A refused delivery answers a 4xx in the API's envelope with a stable code (and, for signatures,
the reason), echoes nothing it was sent, stores no event and queues nothing; the same events,
sent properly afterwards (HubSpot's retry), are stored and applied once: nothing valid is lost.
An authentic delivery is judged event by event (HubSpot resends a whole delivery that is not
answered 2xx): its well-formed events are kept even next to malformed ones; a delivery only of
portals nobody connected is refused (404) and nothing of it kept, while such an event beside
known portals' is stored ``unrouted`` and never applied; a replayed event is applied once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from django.test import Client

from accounts.audit import Actor
from accounts.models import AuditEvent, Organization
from integrations.models import Connection, SyncRun, WebhookEvent, WebhookStatus
from integrations.webhooks import service
from tests.conftest import LiveServer, assert_envelope_error, assert_envelope_ok
from tests.integrations import test_webhooks
from tests.integrations.test_webhooks import (
    PATH,
    PORTAL,
    PUBLIC_URL,
    SECRET,
    connect,
    event,
    hubspot_sign,
    now_ms,
)

# The signed-delivery settings of test_webhooks (HubSpot's client secret, the public URL).
hook_settings = test_webhooks.hook_settings

LIMIT = 16 * 1024  # WEBHOOK_MAX_BODY_BYTES in these tests
UNKNOWN_PORTAL = 424242


@dataclass(frozen=True)
class Target:
    """Where deliveries go: the secret HubSpot signs with and the URL it signs."""

    secret: str
    url: str


Request = tuple[bytes, dict[str, str]]
Build = Callable[[Target, list[dict[str, Any]]], Request]


def signed(
    target: Target,
    body: bytes,
    *,
    timestamp: int | None = None,
    secret: str | None = None,
    url: str | None = None,
) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else now_ms())
    signature = hubspot_sign(secret or target.secret, "POST", url or target.url, body, stamp)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-Version": "v3",
    }


def _proper(target: Target, events: list[dict[str, Any]]) -> Request:
    body = orjson.dumps(events)
    return body, signed(target, body)


def _wrong_secret(target: Target, events: list[dict[str, Any]]) -> Request:
    body = orjson.dumps(events)
    return body, signed(target, body, secret="not-the-client-secret")


def _changed_after_signing(target: Target, events: list[dict[str, Any]]) -> Request:
    body = orjson.dumps(events)
    return body.replace(b'"objectId":', b'"objectId":9'), signed(target, body)


def _signed_for_another_url(target: Target, events: list[dict[str, Any]]) -> Request:
    body = orjson.dumps(events)
    return body, signed(target, body, url=target.url.replace("/hubspot", "/elsewhere"))


def _without(*names: str) -> Build:
    def build(target: Target, events: list[dict[str, Any]]) -> Request:
        body = orjson.dumps(events)
        headers = {k: v for k, v in signed(target, body).items() if k not in names}
        return body, headers

    return build


def _v1_only(target: Target, events: list[dict[str, Any]]) -> Request:
    """The old v1 scheme (SHA-256 of secret + body), which we do not take."""
    body = orjson.dumps(events)
    return body, {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": "0" * 64,
        "X-HubSpot-Signature-Version": "v1",
    }


def _timestamp(value: str) -> Build:
    def build(target: Target, events: list[dict[str, Any]]) -> Request:
        body = orjson.dumps(events)
        return body, signed(target, body) | {"X-HubSpot-Request-Timestamp": value}

    return build


def _aged(milliseconds: int) -> Build:
    """Signed properly, at ``now - milliseconds`` (a replay captured earlier, or a skewed
    clock)."""

    def build(target: Target, events: list[dict[str, Any]]) -> Request:
        body = orjson.dumps(events)
        return body, signed(target, body, timestamp=now_ms() - milliseconds)

    return build


def _raw(body: bytes) -> Build:
    """This body, signed properly (the signature is checked before the body is read)."""

    def build(target: Target, events: list[dict[str, Any]]) -> Request:
        return body, signed(target, body)

    return build


def _oversized(target: Target, events: list[dict[str, Any]]) -> Request:
    padded = [events[0] | {"propertyValue": "x" * LIMIT}, *events[1:]]
    body = orjson.dumps(padded)
    return body, signed(target, body)


def _no_event_well_formed(target: Target, events: list[dict[str, Any]]) -> Request:
    broken = [{k: v for k, v in e.items() if k != "eventId"} for e in events]
    body = orjson.dumps(broken)
    return body, signed(target, body)


@dataclass(frozen=True)
class Refusal:
    id: str
    build: Build
    status: int
    code: str
    reason: str | None = None  # error.details.reason


REFUSALS = [
    Refusal("wrong-secret", _wrong_secret, 401, "signature_invalid", "mismatch"),
    Refusal("body-changed", _changed_after_signing, 401, "signature_invalid", "mismatch"),
    Refusal("other-url", _signed_for_another_url, 401, "signature_invalid", "mismatch"),
    Refusal(
        "no-signature",
        _without("X-HubSpot-Signature-v3"),
        401,
        "signature_invalid",
        "missing_headers",
    ),
    Refusal(
        "no-timestamp",
        _without("X-HubSpot-Request-Timestamp"),
        401,
        "signature_invalid",
        "missing_headers",
    ),
    Refusal("v1-signature-only", _v1_only, 401, "signature_invalid", "missing_headers"),
    Refusal("timestamp-not-ms", _timestamp("soon"), 401, "signature_invalid", "bad_timestamp"),
    Refusal("timestamp-huge", _timestamp("9" * 40), 401, "signature_invalid", "bad_timestamp"),
    Refusal("stale", _aged(301_000), 401, "signature_invalid", "stale_timestamp"),
    Refusal("a-day-old", _aged(86_400_000), 401, "signature_invalid", "stale_timestamp"),
    Refusal("future", _aged(-301_000), 401, "signature_invalid", "future_timestamp"),
    Refusal("oversized", _oversized, 413, "payload_too_large"),
    Refusal("malformed-json", _raw(b'[{"eventId": 1, "portalId": '), 400, "malformed_json"),
    Refusal("not-utf8", _raw(b'[{"eventId": "\xff\xfe"}]'), 400, "malformed_json"),
    Refusal("nested-too-deep", _raw(b"[" * 5000 + b"]" * 5000), 400, "malformed_json"),
    Refusal("empty-body", _raw(b""), 400, "malformed_json"),
    Refusal("an-object", _raw(b'{"eventId": 1, "portalId": 62515}'), 422, "validation_failed"),
    Refusal("no-event-well-formed", _no_event_well_formed, 422, "validation_failed"),
]


@pytest.fixture
def client(db: None, hook_settings: Any) -> Client:
    hook_settings.WEBHOOK_MAX_BODY_BYTES = LIMIT
    return Client()


@pytest.fixture
def connection(org: Organization) -> Connection:
    return connect(org)


def marker() -> str:
    """A value no answer may echo."""
    return f"Ada-{uuid.uuid4().hex}"


def fresh_events(value: str) -> list[dict[str, Any]]:
    return [
        event("contact.propertyChange", 501, propertyValue=value),
        event("company.creation", 9001),
    ]


def post(client: Client, request: Request) -> Any:
    body, headers = request
    content_type = headers.get("Content-Type", "application/octet-stream")
    rest = {k: v for k, v in headers.items() if k != "Content-Type"}
    return client.generic("POST", PATH, body, content_type=content_type, headers=rest)


def process_waiting() -> service.ProcessOutcome:
    """What the processing task would do with every event still waiting (run here, for real)."""
    waiting = list(
        WebhookEvent.objects.filter(status=WebhookStatus.RECEIVED).values_list("pk", flat=True)
    )
    return service.webhook_process(event_ids=waiting)


PUBLIC = Target(SECRET, f"{PUBLIC_URL}{PATH}")


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: r.id)
def test_a_wrong_delivery_is_refused_and_nothing_of_it_kept(
    client: Client,
    connection: Connection,
    refusal: Refusal,
    django_capture_on_commit_callbacks: Any,
) -> None:
    value = marker()
    events = fresh_events(value)
    with django_capture_on_commit_callbacks() as queued:
        response = post(client, refusal.build(PUBLIC, events))
    body = assert_envelope_error(response, refusal.status, refusal.code)
    if refusal.reason is not None:
        assert body["error"]["details"]["reason"] == refusal.reason
    if refusal.status == 413:
        assert body["error"]["details"] == {"limit_bytes": LIMIT}
    text = response.content.decode()
    for secret in (SECRET, value, str(events[0]["eventId"])):
        assert secret not in text
    assert '"input"' not in text  # validation errors say where and why, never what
    assert not WebhookEvent.objects.exists()
    assert queued == []  # no processing task
    assert not SyncRun.objects.exists()

    # HubSpot's retry, sent properly: the same events are stored and applied, once.
    with django_capture_on_commit_callbacks() as queued:
        data = assert_envelope_ok(post(client, _proper(PUBLIC, events)))
    assert data == {"received": 2, "stored": 2, "duplicates": 0, "rejected": 0}
    assert len(queued) == 1
    outcome = process_waiting()
    assert outcome.processed == 2
    assert sorted(SyncRun.objects.values_list("object_type", flat=True)) == ["company", "contact"]


def test_a_delivery_inside_the_five_minutes_is_taken(
    client: Client, connection: Connection
) -> None:
    """The boundary of the "stale" refusal: four and a half minutes old is fine."""
    data = assert_envelope_ok(post(client, _aged(270_000)(PUBLIC, fresh_events(marker()))))
    assert data["stored"] == 2


def test_the_body_limit_is_exact(client: Client, connection: Connection) -> None:
    pad = orjson.dumps([event(propertyValue="")])
    room = LIMIT - len(pad)
    exactly = orjson.dumps([event(propertyValue="x" * room)])
    assert len(exactly) == LIMIT
    assert_envelope_ok(post(client, _raw(exactly)(PUBLIC, [])))
    over = orjson.dumps([event(propertyValue="x" * (room + 1))])
    assert_envelope_error(post(client, _raw(over)(PUBLIC, [])), 413, "payload_too_large")
    assert WebhookEvent.objects.count() == 1


def test_a_replayed_request_is_applied_once(
    client: Client, connection: Connection, django_capture_on_commit_callbacks: Any
) -> None:
    """The very same signed request, sent again within the five minutes (captured and replayed,
    or a retry after a lost answer), and HubSpot's own retry (next attemptNumber, signed anew)."""
    events = fresh_events(marker())
    request = _proper(PUBLIC, events)
    assert_envelope_ok(post(client, request))
    first = process_waiting()
    assert (first.processed, len(first.sync_runs)) == (2, 2)
    with django_capture_on_commit_callbacks() as queued:
        again = assert_envelope_ok(post(client, request))
    assert again == {"received": 2, "stored": 0, "duplicates": 2, "rejected": 0}
    assert queued == []  # already processed: nothing to do again
    retried = [e | {"attemptNumber": 1} for e in events]
    assert assert_envelope_ok(post(client, _proper(PUBLIC, retried)))["duplicates"] == 2
    assert process_waiting().processed == 0
    assert WebhookEvent.objects.count() == 2
    assert SyncRun.objects.count() == 2
    # The same event twice in one delivery is one event.
    twice = event(object_id=503)
    data = assert_envelope_ok(post(client, _proper(PUBLIC, [twice, twice])))
    assert data == {"received": 2, "stored": 1, "duplicates": 1, "rejected": 0}


def test_a_delivery_is_judged_event_by_event(
    client: Client, connection: Connection, django_capture_on_commit_callbacks: Any
) -> None:
    """A valid event, one of the wrong shape and one of a portal nobody connected: 200 (a 4xx
    would make HubSpot resend the valid one), the valid one applied, the malformed one dropped,
    the unknown portal's kept unrouted and never applied."""
    valid = event("contact.propertyChange", 501)
    malformed = {"portalId": PORTAL, "subscriptionType": "contact.creation", "objectId": 7}
    wrong_type = event(portalId=True)
    stranger = event("contact.creation", 777, portal=UNKNOWN_PORTAL)
    with django_capture_on_commit_callbacks() as queued:
        response = post(client, _proper(PUBLIC, [valid, malformed, wrong_type, stranger]))
    data = assert_envelope_ok(response)
    assert data == {"received": 4, "stored": 2, "duplicates": 0, "rejected": 2}
    assert len(queued) == 1
    assert set(WebhookEvent.objects.values_list("event_id", flat=True)) == {
        f"{PORTAL}:{valid['eventId']}",
        f"{UNKNOWN_PORTAL}:{stranger['eventId']}",
    }
    outcome = process_waiting()
    assert (outcome.processed, outcome.unrouted) == (1, 1)
    [run] = SyncRun.objects.all()
    assert (run.connection_id, run.record_ids) == (connection.pk, ["501"])
    kept = WebhookEvent.objects.get(external_account_id=str(UNKNOWN_PORTAL))
    assert kept.status == WebhookStatus.UNROUTED
    assert not kept.connections.exists()


def test_a_delivery_of_only_unknown_portals_is_refused_and_nothing_kept(
    client: Client, connection: Connection, django_capture_on_commit_callbacks: Any
) -> None:
    strangers = [event(portal=UNKNOWN_PORTAL), event(object_id=502, portal=UNKNOWN_PORTAL + 1)]
    with django_capture_on_commit_callbacks() as queued:
        response = post(client, _proper(PUBLIC, strangers))
    body = assert_envelope_error(response, 404, "not_found")
    assert body["error"]["details"]["unknown_portals"] == sorted(
        {str(UNKNOWN_PORTAL), str(UNKNOWN_PORTAL + 1)}
    )
    assert queued == []
    assert not WebhookEvent.objects.exists()
    assert not SyncRun.objects.exists()


def test_an_unknown_portals_events_wait_unrouted_until_it_is_connected(
    client: Client, connection: Connection, org: Organization
) -> None:
    mixed = [event(object_id=500), event(portal=UNKNOWN_PORTAL)]
    data = assert_envelope_ok(post(client, _proper(PUBLIC, mixed)))
    assert data["stored"] == 2
    assert process_waiting().unrouted == 1
    stored = WebhookEvent.objects.get(external_account_id=str(UNKNOWN_PORTAL))
    assert stored.status == WebhookStatus.UNROUTED
    assert str(UNKNOWN_PORTAL) in stored.error
    [known_run] = SyncRun.objects.all()  # the known portal's event, nothing for the stranger
    assert (known_run.connection_id, known_run.record_ids) == (connection.pk, ["500"])

    connection = connect(org, portal=UNKNOWN_PORTAL)
    outcome = service.webhook_replay(event_ids=[stored.pk], actor=Actor(label="test"))
    assert outcome.processed == 1
    assert AuditEvent.objects.filter(
        action="webhook_event.replay", entity_id=str(stored.pk)
    ).exists()
    stored.refresh_from_db()
    assert stored.status == WebhookStatus.PROCESSED
    assert (stored.error, stored.attempts) == ("", 2)
    assert list(stored.connections.all()) == [connection]
    [run] = SyncRun.objects.filter(connection=connection)
    assert run.record_ids == ["501"]


# --- over real HTTP -------------------------------------------------------------------------------


@pytest.fixture
def asgi_env() -> dict[str, str]:
    return {
        "HUBSPOT_CLIENT_ID": "test-client",
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "WEBHOOK_MAX_BODY_BYTES": str(LIMIT),
    }


@pytest.fixture
def live(asgi_server: LiveServer, org: Organization) -> Iterator[tuple[LiveServer, httpx.Client]]:
    connect(org)
    with httpx.Client(base_url=asgi_server.url, timeout=10) as http:
        yield asgi_server, http


def _error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.mark.live
def test_every_edge_over_a_live_server(live: tuple[LiveServer, httpx.Client]) -> None:
    server, http = live
    target = Target(SECRET, f"{server.url}{PATH}")
    for refusal in REFUSALS:
        body, headers = refusal.build(target, fresh_events(marker()))
        answer = http.post(PATH, content=body, headers=headers)
        assert answer.status_code == refusal.status, (refusal.id, answer.text, server.tail())
        assert _error_code(answer) == refusal.code, refusal.id
    assert not WebhookEvent.objects.exists()

    # A body larger than the limit, streamed without a Content-Length (chunked).
    big = orjson.dumps([event(propertyValue="x" * (4 * LIMIT))])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    answer = http.post(PATH, content=chunks(), headers=signed(target, big))
    assert "content-length" not in {k.lower() for k in answer.request.headers}
    assert answer.status_code == 413, answer.text
    assert _error_code(answer) == "payload_too_large"
    # A Content-Length over the limit is refused whatever follows.
    declared = http.post(PATH, content=big, headers=signed(target, big))
    assert declared.status_code == 413
    assert not WebhookEvent.objects.exists()

    # And a proper delivery is taken, once.
    body, headers = _proper(target, fresh_events(marker()))
    first = http.post(PATH, content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["data"] == {"received": 2, "stored": 2, "duplicates": 0, "rejected": 0}
    replayed = http.post(PATH, content=body, headers=headers)
    assert replayed.json()["data"]["duplicates"] == 2
    assert WebhookEvent.objects.count() == 2
