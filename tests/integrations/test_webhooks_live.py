"""End to end over real HTTP: the HubSpot sandbox, subscribed to Switchboard under uvicorn,
delivers signed events after CRM changes; a real Celery worker routes them and the targeted
fetch brings the mirror up to date within seconds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from accounts.models import Organization
from integrations.models import CrmRecord, SyncKind, SyncRun, WebhookEvent, WebhookStatus
from tests.conftest import LiveServer
from tests.integrations.test_tokens import make_connection
from tests.workers import celery_worker

pytestmark = pytest.mark.live


@pytest.fixture
def asgi_env(sandbox: Any) -> dict[str, str]:
    """The server verifies with the sandbox app's client secret."""
    return {
        "SWITCHBOARD_SANDBOX_URL": sandbox.url,
        "SWITCHBOARD_SANDBOX_CA_FILE": sandbox.ca_file,
    }


def wait_for(what: str, check: Any, *, timeout: float = 15, diagnose: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s" + (
            diagnose() if diagnose else ""
        )
        time.sleep(0.1)


def test_sandbox_events_arrive_verified_and_update_the_mirror(
    sandbox: Any,
    sandbox_settings: Any,
    asgi_server: LiveServer,
    org: Organization,
    tmp_path: Path,
) -> None:
    connection = make_connection(sandbox, org)
    token = connection.access_token
    status = sandbox.hubspot_webhooks(target_url=f"{asgi_server.url}/webhooks/hubspot")
    assert status["target_url"].endswith("/webhooks/hubspot")
    crm = httpx.Client(
        base_url=sandbox.hubspot_api_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )

    # Without a worker: the delivery is verified, stored and acknowledged all the same.
    created = crm.post(
        "/crm/v3/objects/contacts",
        json={"properties": {"email": "ada@example.com", "firstname": "Ada"}},
    )
    assert created.status_code == 201, created.text
    contact_id = created.json()["id"]
    delivered = sandbox.wait_for_webhooks(1)
    assert (delivered["delivered"], delivered["failed"]) == (1, 0), delivered
    assert delivered["last_status"] == 200
    stored = WebhookEvent.objects.get(object_id=contact_id)
    assert stored.subscription_type == "contact.creation"
    assert stored.external_account_id == "62515"
    assert stored.status == WebhookStatus.RECEIVED  # waiting for a worker

    with celery_worker(tmp_path, queues="sync", name="webhooks") as worker:

        def diagnose() -> str:
            return worker.tail() + asgi_server.tail()

        # The waiting event is processed: routed and fetched into the mirror.
        row = wait_for(
            "the created contact in the mirror",
            lambda: CrmRecord.objects.filter(connection=connection, external_id=contact_id).first(),
            diagnose=diagnose,
        )
        assert row.fields["email"] == "ada@example.com"
        stored.refresh_from_db()
        assert stored.status == WebhookStatus.PROCESSED
        assert list(stored.connections.all()) == [connection]

        # A change: one event per changed property, one targeted fetch of the contact.
        changed = crm.patch(
            f"/crm/v3/objects/contacts/{contact_id}",
            json={"properties": {"firstname": "Augusta", "lastname": "King"}},
        )
        assert changed.status_code == 200, changed.text
        sandbox.wait_for_webhooks(3)
        wait_for(
            "the change in the mirror",
            lambda: CrmRecord.objects.get(pk=row.pk).fields.get("last_name") == "King",
            diagnose=diagnose,
        )
        assert CrmRecord.objects.get(pk=row.pk).fields["first_name"] == "Augusta"
        targeted = SyncRun.objects.filter(connection=connection, kind=SyncKind.TARGETED)
        assert all(r.trigger == "webhook" for r in targeted)
        assert all(r.record_ids == [contact_id] for r in targeted)

        # An archive: the mirror row is marked deleted.
        archived = crm.delete(f"/crm/v3/objects/contacts/{contact_id}")
        assert archived.status_code == 204, archived.text
        sandbox.wait_for_webhooks(4)
        wait_for(
            "the deletion in the mirror",
            lambda: CrmRecord.objects.get(pk=row.pk).deleted_at is not None,
            diagnose=diagnose,
        )
    crm.close()
    assert WebhookEvent.objects.count() == 4
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {WebhookStatus.PROCESSED}
    # A forged delivery to the same live server is refused.
    forged = httpx.post(
        f"{asgi_server.url}/webhooks/hubspot",
        content=b"[]",
        headers={
            "X-HubSpot-Signature-v3": "Zm9yZ2Vk",
            "X-HubSpot-Request-Timestamp": str(int(time.time() * 1000)),
        },
    )
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "signature_invalid"
