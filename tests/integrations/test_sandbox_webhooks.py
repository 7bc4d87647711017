"""HubSpot webhooks from the sandbox: event shapes, v3 signatures, batching, retries, over HTTP
to a receiver in this test process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hubspot.utils.signature import Signature

from integrations.sandbox.hubspot.webhooks import SUBSCRIPTION_IDS, canonical_uri, sign_v3
from tests.processes import free_port
from tests.sandbox_fixtures import ACME_HUB_ID, GLOBEX_HUB_ID, SANDBOX_CLIENT_SECRET, Sandbox

pytestmark = pytest.mark.live

APP_ID = 3100001


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    received: float

    @property
    def events(self) -> list[dict[str, Any]]:
        parsed: list[dict[str, Any]] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """An HTTP endpoint that records what it is sent and answers ``statuses`` in turn (then
    ``default``), after ``delay`` seconds."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default: int = 204
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [event for d in self.deliveries for event in d.events]

    def wait(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events()) < count:
            assert time.monotonic() < deadline, f"only {len(self.events())} of {count} events"
            time.sleep(0.01)
        return self.events()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    box = Receiver(f"http://127.0.0.1:{port}/webhooks/hubspot?source=sandbox")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with box.lock:
                box.deliveries.append(
                    Delivery(self.path, dict(self.headers.items()), body, time.monotonic())
                )
                status = box.statuses.pop(0) if box.statuses else box.default
            if box.delay:
                time.sleep(box.delay)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()


def bearer(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


def url(sandbox: Sandbox, path: str) -> str:
    return f"{sandbox.hubspot_api_url}/crm/v3/objects/{path}"


def expected_signature(uri: str, body: bytes, timestamp: str) -> str:
    """The v3 signature as HubSpot's docs describe it, computed here independently."""
    source = b"POST" + uri.encode() + body + timestamp.encode()
    digest = hmac.new(SANDBOX_CLIENT_SECRET.encode(), source, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def test_sign_v3_matches_a_known_signature() -> None:
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    body = b'[{"eventId":1}]'
    uri = "https://www.example.com/webhook_uri"
    # Computed with openssl: printf 'POST<uri><body>1700000000000' | openssl dgst -sha256 -hmac
    assert (
        sign_v3(secret, "POST", uri, body, 1_700_000_000_000)
        == "vnX5Als0n2OhEZQxOS/1ftERzeabHuxE8jEarlPWRdE="
    )
    assert sign_v3(secret, "POST", uri, body, 1_700_000_000_001) != sign_v3(
        secret, "POST", uri, body, 1_700_000_000_000
    )
    assert sign_v3("other", "POST", uri, body, 1) != sign_v3(secret, "POST", uri, body, 1)
    # The escapes HubSpot has verifiers decode are decoded; others are kept.
    assert canonical_uri("https://x.test/a%3Ab%2Fc?d=%40%20") == "https://x.test/a:b/c?d=@%20"
    assert sign_v3(secret, "POST", "https://x.test/a%3Ab", b"", 1) == sign_v3(
        secret, "POST", "https://x.test/a:b", b"", 1
    )


def test_crm_changes_are_delivered_as_signed_hubspot_events(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    settings = sandbox.hubspot_webhooks(target_url=receiver.url)
    assert (settings["target_url"], settings["max_batch"]) == (receiver.url, 100)
    headers = bearer(sandbox.mint_token())
    contact = sandbox.http.post(
        url(sandbox, "contacts"),
        headers=headers,
        json={"properties": {"email": "w@example.com", "firstname": "Wanda"}},
    ).json()
    changed_at = time.monotonic()
    sandbox.http.patch(
        url(sandbox, f"contacts/{contact['id']}"),
        headers=headers,
        json={"properties": {"firstname": "Wendy", "jobtitle": "CTO", "email": "w@example.com"}},
    )
    sandbox.http.delete(url(sandbox, f"contacts/{contact['id']}"), headers=headers)
    companies = sandbox.http.post(
        url(sandbox, "companies/batch/create"),
        headers=bearer(sandbox.mint_token(GLOBEX_HUB_ID)),
        json={"inputs": [{"properties": {"name": "A"}}, {"properties": {"name": "B"}}]},
    ).json()["results"]
    events = receiver.wait(6)
    assert receiver.deliveries[0].received - changed_at < 1.0  # shortly after the change
    status = sandbox.wait_for_webhooks(6)
    assert (status["delivered"], status["failed"], status["pending"]) == (6, 0, 0)
    kinds = [
        (e["subscriptionType"], e["portalId"], e["objectId"], e.get("propertyName")) for e in events
    ]
    cid = int(contact["id"])
    assert kinds == [
        ("contact.creation", ACME_HUB_ID, cid, None),
        ("contact.propertyChange", ACME_HUB_ID, cid, "firstname"),
        ("contact.propertyChange", ACME_HUB_ID, cid, "jobtitle"),  # email did not change
        ("contact.deletion", ACME_HUB_ID, cid, None),
        ("company.creation", GLOBEX_HUB_ID, int(companies[0]["id"]), None),
        ("company.creation", GLOBEX_HUB_ID, int(companies[1]["id"]), None),
    ]
    assert [e.get("propertyValue") for e in events[1:3]] == ["Wendy", "CTO"]
    assert len({e["eventId"] for e in events}) == 6
    for event in events:
        assert event["appId"] == APP_ID
        assert event["attemptNumber"] == 0
        assert event["changeSource"] == "CRM"
        assert event["subscriptionId"] == SUBSCRIPTION_IDS[event["subscriptionType"]]
        assert isinstance(event["occurredAt"], int)
        assert abs(event["occurredAt"] - time.time() * 1000) < 60_000
        if not event["subscriptionType"].endswith("propertyChange"):
            assert "propertyName" not in event
    assert events[0]["occurredAt"] < events[1]["occurredAt"] < events[3]["occurredAt"]
    for delivery in receiver.deliveries:
        assert delivery.path == "/webhooks/hubspot?source=sandbox"
        assert delivery.headers["Content-Type"] == "application/json"
        assert delivery.headers["X-HubSpot-Signature-Version"] == "v3"
        stamp = delivery.headers["X-HubSpot-Request-Timestamp"]
        assert abs(int(stamp) - time.time() * 1000) < 60_000
        signature = delivery.headers["X-HubSpot-Signature-v3"]
        assert signature == expected_signature(receiver.url, delivery.body, stamp)
        # hubspot-api-client's own check (its v3 validation, timestamp window included)
        assert Signature.is_valid(
            signature,
            SANDBOX_CLIENT_SECRET,
            delivery.body.decode(),
            receiver.url,
            "POST",
            signature_version="v3",
            timestamp=stamp,
        )
        assert signature == sign_v3(
            SANDBOX_CLIENT_SECRET, "POST", receiver.url, delivery.body, int(stamp)
        )


def test_events_are_batched_up_to_max_batch(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.hubspot_webhooks(target_url=receiver.url, max_batch=3, flush_ms=100)
    sandbox.http.post(
        url(sandbox, "deals/batch/create"),
        headers=bearer(sandbox.mint_token()),
        json={"inputs": [{"properties": {"dealname": f"D{n}"}} for n in range(7)]},
    )
    events = receiver.wait(7)
    sandbox.wait_for_webhooks(7)
    assert sorted(len(d.events) for d in receiver.deliveries) == [1, 3, 3]
    assert [e["subscriptionType"] for e in events] == ["deal.creation"] * 7
    assert sandbox.hubspot_webhook_status()["requests"] == 3


def test_failed_deliveries_are_retried_with_attempt_numbers(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    sandbox.hubspot_webhooks(target_url=receiver.url, backoff_ms=50, max_attempts=4)
    sandbox.http.post(
        url(sandbox, "companies"),
        headers=bearer(sandbox.mint_token()),
        json={"properties": {"name": "Retry"}},
    )
    status = sandbox.wait_for_webhooks(1)
    assert (status["delivered"], status["failed"], status["requests"], status["retries"]) == (
        1,
        0,
        3,
        2,
    )
    attempts = [d.events[0] for d in receiver.deliveries]
    assert [e["attemptNumber"] for e in attempts] == [0, 1, 2]
    assert len({e["eventId"] for e in attempts}) == 1
    gaps = [
        b.received - a.received
        for a, b in zip(receiver.deliveries, receiver.deliveries[1:], strict=False)
    ]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1  # the backoff doubles
    for delivery in receiver.deliveries:  # each attempt is signed afresh
        stamp = delivery.headers["X-HubSpot-Request-Timestamp"]
        assert delivery.headers["X-HubSpot-Signature-v3"] == expected_signature(
            receiver.url, delivery.body, stamp
        )


def test_a_target_that_never_answers_counts_failed_events(sandbox: Sandbox) -> None:
    dead = f"http://127.0.0.1:{free_port()}/webhooks/hubspot"
    sandbox.hubspot_webhooks(target_url=dead, max_attempts=2, backoff_ms=10)
    sandbox.http.post(
        url(sandbox, "contacts/batch/create"),
        headers=bearer(sandbox.mint_token()),
        json={"inputs": [{"properties": {"firstname": "A"}}, {"properties": {"firstname": "B"}}]},
    )
    status = sandbox.wait_for_webhooks(2)
    assert (status["delivered"], status["failed"], status["requests"]) == (0, 2, 2)
    assert status["last_error"]


def test_delivery_never_blocks_crm_calls(sandbox: Sandbox, receiver: Receiver) -> None:
    receiver.delay = 1.5
    sandbox.hubspot_webhooks(target_url=receiver.url)
    headers = bearer(sandbox.mint_token())
    started = time.monotonic()
    for n in range(5):
        made = sandbox.http.post(
            url(sandbox, "contacts"), headers=headers, json={"properties": {"firstname": f"N{n}"}}
        )
        assert made.status_code == 201
        time.sleep(0.1)  # separate deliveries, each held by the slow receiver
    assert time.monotonic() - started < 1.2
    receiver.wait(5, timeout=10)
    assert sandbox.wait_for_webhooks(5)["delivered"] == 5


def test_unsubscribing_stops_events_and_seeding_sends_none(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    headers = bearer(sandbox.mint_token())
    sandbox.http.post(url(sandbox, "contacts"), headers=headers, json={"properties": {}})
    sandbox.hubspot_webhooks(target_url=receiver.url)
    sandbox.hubspot_seed(50)
    sandbox.http.post(url(sandbox, "contacts"), headers=headers, json={"properties": {}})
    assert len(receiver.wait(1)) == 1
    sandbox.wait_for_webhooks(1)
    off = sandbox.hubspot_webhooks(target_url=None)
    assert off["target_url"] is None
    sandbox.http.post(url(sandbox, "contacts"), headers=headers, json={"properties": {}})
    time.sleep(0.3)
    assert len(receiver.events()) == 1
    assert sandbox.hubspot_webhook_status()["delivered"] == 1
    sandbox.hubspot_webhooks(target_url=receiver.url)
    sandbox.reset()  # a reset unsubscribes too
    assert sandbox.hubspot_webhook_status()["target_url"] is None


def test_association_changes_report_the_primary_company(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    headers = bearer(sandbox.mint_token())
    contact = sandbox.http.post(url(sandbox, "contacts"), headers=headers, json={"properties": {}})
    company = sandbox.http.post(url(sandbox, "companies"), headers=headers, json={"properties": {}})
    cid, coid = contact.json()["id"], company.json()["id"]
    sandbox.hubspot_webhooks(target_url=receiver.url)
    linked = sandbox.http.put(
        f"{sandbox.hubspot_api_url}/crm/v4/objects/contacts/{cid}/associations/companies/{coid}",
        headers=headers,
        json=[{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}],
    )
    assert linked.status_code == 201, linked.text
    events = receiver.wait(1)
    assert [(e["subscriptionType"], e["propertyName"], e["propertyValue"]) for e in events] == [
        ("contact.propertyChange", "associatedcompanyid", coid)
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"target_url": "ftp://example.com"},
        {"target_url": 5},
        {"max_batch": 0},
        {"max_batch": 101},
        {"max_attempts": 0},
        {"backoff_ms": -1},
        {"colour": "red"},
    ],
)
def test_webhook_settings_are_checked(sandbox: Sandbox, body: dict[str, Any]) -> None:
    answer = sandbox.http.post(f"{sandbox.url}/_sandbox/hubspot/webhooks", json=body)
    assert answer.status_code == 400
