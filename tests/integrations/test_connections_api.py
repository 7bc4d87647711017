"""/api/v1/connections and the CRM records under them, against the HubSpot sandbox."""

from __future__ import annotations

from typing import Any

import orjson

from accounts.models import AuditEvent, Organization
from integrations.models import Connection, ProviderCallLog
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok, new_key
from tests.integrations.test_tokens import make_connection


def url(connection: Connection, tail: str = "") -> str:
    return f"/api/v1/connections/{connection.pk}{tail}"


def test_connections_are_listed_without_tokens(
    sandbox: Any, sandbox_settings: Any, org: Organization, other_org: Organization, api: Api
) -> None:
    mine = make_connection(sandbox, org)
    theirs = make_connection(sandbox, other_org)
    response = api.get("/api/v1/connections")
    listed = assert_envelope_ok(response)
    assert [c["id"] for c in listed] == [str(mine.pk)]
    assert listed[0]["display_name"] == "acme-sandbox.hubspot.test"
    assert listed[0]["status"] == "active"
    body = response.content.decode()
    assert mine.access_token not in body
    assert mine.refresh_token is not None
    assert mine.refresh_token not in body
    assert_envelope_error(api.get(url(theirs)), 404, "not_found")
    assert_envelope_error(api.get(url(theirs, "/contacts")), 404, "not_found")
    assert_envelope_error(api.get("/api/v1/connections/not-a-uuid"), 404, "not_found")


def test_the_records_round_trip(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    created = assert_envelope_ok(
        api.post(
            url(connection, "/contacts"),
            {
                "email": "ada@example.com",
                "first_name": "Ada",
                "properties": {"favorite_color": "green"},
            },
        ),
        201,
    )
    contact_id = created["id"]
    assert created["email"] == "ada@example.com"
    assert created["first_name"] == "Ada"
    got = assert_envelope_ok(api.get(url(connection, f"/contacts/{contact_id}")))
    assert got["properties"]["email"] == "ada@example.com"
    patched = assert_envelope_ok(
        api.client.patch(
            url(connection, f"/contacts/{contact_id}"),
            orjson.dumps({"job_title": "Engineer"}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {api.key}"},
        )
    )
    assert patched["job_title"] == "Engineer"
    found = assert_envelope_ok(
        api.post(
            url(connection, "/contacts/search"),
            {"filter_groups": [[{"field": "email", "operator": "eq", "value": "ada@example.com"}]]},
        )
    )
    assert [r["id"] for r in found["results"]] == [contact_id]
    company = assert_envelope_ok(
        api.post(
            url(connection, "/companies"), {"name": "Analytical Engines", "domain": "ae.test"}
        ),
        201,
    )
    linked = api.client.put(
        url(connection, f"/contacts/{contact_id}/associations/companies/{company['id']}"),
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert_envelope_ok(linked)
    ids = assert_envelope_ok(
        api.get(url(connection, f"/contacts/{contact_id}/associations/companies"))
    )
    assert ids["ids"] == [company["id"]]
    archived = assert_envelope_ok(api.delete(url(connection, f"/contacts/{contact_id}")))
    assert archived == {"id": contact_id, "archived": True}
    assert_envelope_error(api.get(url(connection, f"/contacts/{contact_id}")), 404, "not_found")
    # Every call to the provider is in the connection's call log.
    assert ProviderCallLog.objects.filter(connection=connection).count() >= 8


def test_batch_create_250_contacts_in_provider_sized_chunks(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    items = [{"email": f"person{n}@example.com", "last_name": f"P{n}"} for n in range(250)]
    result = assert_envelope_ok(api.post(url(connection, "/contacts/batch"), {"create": items}))
    assert len(result["results"]) == 250
    assert result["errors"] == []
    calls = sandbox.counters()["requests"]
    assert calls.get("POST /crm/v3/objects/contacts/batch/create") == 3
    listed = assert_envelope_ok(api.get(url(connection, "/contacts"), {"limit": 100}))
    assert len(listed["results"]) == 100
    assert listed["next_cursor"]


def test_provider_validation_errors_name_the_field(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    response = api.post(url(connection, "/contacts"), {"properties": {"no_such_property": "x"}})
    body = assert_envelope_error(response, 422, "validation_failed")
    assert "no_such_property" in body["error"]["details"]["fields"]


def test_our_own_validation_comes_first(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    assert_envelope_error(
        api.post(url(connection, "/deals"), {"amount": "lots"}), 422, "validation_failed"
    )
    assert_envelope_error(
        api.post(url(connection, "/contacts/batch"), {}), 422, "validation_failed"
    )
    assert sandbox.counters()["total"] == 0


def test_provider_outage_and_rate_limit_are_coded(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    sandbox.faults(fail_next=1, fail_status=503)
    assert_envelope_error(api.get(url(connection, "/contacts")), 503, "provider_unavailable")
    sandbox.faults(rate_limit_next=1)
    limited = api.get(url(connection, "/contacts"))
    assert_envelope_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1


def test_test_endpoint_and_disconnect(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    tested = assert_envelope_ok(api.post(url(connection, "/test")))
    assert tested["account"] == "acme-sandbox.hubspot.test"
    deleted = assert_envelope_ok(api.delete(url(connection)))
    assert deleted == {"id": str(connection.pk), "deleted": True, "revoked_at_provider": True}
    assert not Connection.objects.filter(pk=connection.pk).exists()
    event = AuditEvent.objects.get(action="connection.deleted", entity_id=str(connection.pk))
    assert event.changes["revoked_at_provider"] is True
    assert sandbox.counters()["requests"].get("DELETE /oauth/v1/refresh-tokens/{token}") == 1


def test_another_organisations_key_cannot_touch_the_connection(
    sandbox: Any, sandbox_settings: Any, org: Organization, other_org: Organization
) -> None:
    connection = make_connection(sandbox, org)
    stranger = Api(key=new_key(other_org))
    assert_envelope_error(stranger.delete(url(connection)), 404, "not_found")
    assert_envelope_error(
        stranger.post(url(connection, "/contacts"), {"email": "x@y.z"}), 404, "not_found"
    )
    assert Connection.objects.filter(pk=connection.pk).exists()
    assert sandbox.counters()["total"] == 0


def test_a_bad_batch_item_is_named_without_echoing_it(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    items = [{"email": "fine@example.com"}, {"email": "x@example.com", "secret_field": "hunter2"}]
    response = api.post(url(connection, "/contacts/batch"), {"create": items})
    body = assert_envelope_error(response, 422, "validation_failed")
    assert body["error"]["details"]["index"] == 1
    assert body["error"]["details"]["errors"][0]["loc"] == ["secret_field"]
    assert b"hunter2" not in response.content
    assert sandbox.counters()["total"] == 0  # nothing half-written
