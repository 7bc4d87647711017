"""Webhook events in the admin (list, filters, search, payload, replay) and in the API
(``GET /api/v1/webhook-events``, organisation-scoped)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import AuditEvent, Organization
from integrations.models import SyncRun, WebhookEvent, WebhookStatus
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok
from tests.factories import make_user
from tests.integrations import test_webhooks
from tests.integrations.test_webhooks import PORTAL, connect, event, post, process

# The signed-delivery fixtures of test_webhooks, shared.
hook_settings = test_webhooks.hook_settings
sent = test_webhooks.sent

pytestmark = pytest.mark.usefixtures("hook_settings")


def staff() -> Client:
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def listed(admin: Client, **params: str) -> list[str]:
    """The object ids of the events on the admin's list page for these query parameters."""
    response = admin.get("/admin/integrations/webhookevent/", params)
    assert response.status_code == 200
    return [e.object_id for e in response.context["cl"].result_list]


@pytest.fixture
def hooks(db: None) -> Client:
    return Client()


def test_the_admin_lists_filters_searches_and_shows_the_payload(
    hooks: Client, sent: dict[str, list[Any]], org: Organization
) -> None:
    connect(org)
    routed = event("contact.propertyChange", 501, propertyValue="Lovelace")
    unknown = event("deal.creation", 7001, portal=999)
    post(hooks, [routed, unknown])
    process(sent)
    admin = staff()
    page = admin.get("/admin/integrations/webhookevent/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Processed" in html
    assert "No connection for this account" in html
    assert listed(admin, status__exact="unrouted") == ["7001"]
    assert listed(admin, subscription_type="contact.propertyChange") == ["501"]
    assert sorted(listed(admin, provider="hubspot")) == ["501", "7001"]
    for term in (str(routed["eventId"]), f"{PORTAL}:{routed['eventId']}", "501", str(PORTAL)):
        assert listed(admin, q=term) == ["501"], term
    assert listed(admin, q="999") == ["7001"]
    assert listed(admin, q=str(unknown["eventId"])) == ["7001"]
    stored = WebhookEvent.objects.get(object_id="501")
    detail = admin.get(f"/admin/integrations/webhookevent/{stored.pk}/change/")
    assert detail.status_code == 200
    body = detail.content.decode()
    assert "Lovelace" in body  # the payload
    assert "portal-62515.hubspot.test" in body  # where it was routed
    assert admin.get("/admin/integrations/webhookevent/add/").status_code == 403
    assert admin.post(f"/admin/integrations/webhookevent/{stored.pk}/delete/").status_code == 403


def test_replay_routes_an_unrouted_event_once_its_portal_is_connected(
    hooks: Client, sent: dict[str, list[Any]], org: Organization
) -> None:
    connect(org)
    post(hooks, [event(object_id=500), event(portal=31337)])  # alone, it would be refused
    process(sent)
    stored = WebhookEvent.objects.get(external_account_id="31337")
    assert stored.status == WebhookStatus.UNROUTED
    connection = connect(org, portal=31337)
    response = staff().post(
        "/admin/integrations/webhookevent/",
        {"action": "replay", "_selected_action": [str(stored.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Replayed: 1 processed, 0 unrouted" in response.content.decode()
    stored.refresh_from_db()
    assert stored.status == WebhookStatus.PROCESSED
    assert list(stored.connections.all()) == [connection]
    [run] = SyncRun.objects.filter(connection=connection)
    assert run.record_ids == ["501"]
    audit = AuditEvent.objects.get(action="webhook_event.replay")
    assert audit.entity_id == str(stored.pk)
    assert audit.actor_label.startswith("user:")


def test_the_api_lists_only_events_routed_to_the_callers_connections(
    hooks: Client,
    sent: dict[str, list[Any]],
    org: Organization,
    other_org: Organization,
    api: Api,
) -> None:
    mine = connect(org)
    connect(other_org)  # the same portal, connected by another organisation too
    connect(other_org, portal=5555)
    shared = [event(object_id=n) for n in range(1, 6)]
    post(hooks, shared)
    post(hooks, [event(portal=5555, object_id=77)])  # only the other organisation's
    post(hooks, [event(portal=5555, object_id=87), event(portal=999, object_id=88)])  # nobody's
    process(sent)

    listed = assert_envelope_ok(api.get("/api/v1/webhook-events"))
    assert sorted(e["object_id"] for e in listed) == ["1", "2", "3", "4", "5"]
    first = listed[0]
    assert first["connection_ids"] == [str(mine.pk)]  # not the other organisation's
    assert first["status"] == "processed"
    assert first["payload"]["portalId"] == PORTAL
    assert first["event_id"] == f"{PORTAL}:{first['payload']['eventId']}"

    # Newest first, keyset-paginated without gaps or repeats.
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        response = api.get("/api/v1/webhook-events", params)
        page = assert_envelope_ok(response)
        seen += [e["id"] for e in page]
        meta = response.json()["meta"]["pagination"]
        if not meta["has_more"]:
            break
        params["cursor"] = meta["next_cursor"]
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == len(set(seen)) == 5

    filtered = assert_envelope_ok(
        api.get("/api/v1/webhook-events", {"object_id": "3", "status": "processed"})
    )
    assert [e["object_id"] for e in filtered] == ["3"]
    assert assert_envelope_ok(api.get("/api/v1/webhook-events", {"status": "unrouted"})) == []
    by_connection = assert_envelope_ok(
        api.get("/api/v1/webhook-events", {"connection_id": str(mine.pk)})
    )
    assert len(by_connection) == 5
    assert_envelope_error(
        api.get("/api/v1/webhook-events", {"status": "lost"}), 422, "validation_failed"
    )
    assert_envelope_error(
        api.get("/api/v1/webhook-events", {"cursor": "garbage"}), 422, "validation_failed"
    )


def test_the_api_hides_other_organisations_errors(
    hooks: Client,
    sent: dict[str, list[Any]],
    org: Organization,
    other_org: Organization,
    api: Api,
) -> None:
    mine, theirs = connect(org), connect(other_org)
    stored_event = event()
    post(hooks, [stored_event])
    process(sent)
    stored = WebhookEvent.objects.get()
    stored.status = WebhookStatus.FAILED
    stored.error = f"connection {theirs.pk}: conflict: nope\nconnection {mine.pk}: conflict: ours"
    stored.save()
    [listed] = assert_envelope_ok(api.get("/api/v1/webhook-events"))
    assert listed["error"] == f"connection {mine.pk}: conflict: ours"
    assert str(theirs.pk) not in str(listed)


def test_the_api_needs_a_caller(anon: Api) -> None:
    assert_envelope_error(anon.get("/api/v1/webhook-events"), 401, "unauthenticated")
