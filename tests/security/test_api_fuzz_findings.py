"""What the API fuzzer (test_api_fuzz.py) found, pinned one by one on the in-process stack.

Each was a 500 (or an answer the OpenAPI document did not describe) before its fix.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from accounts.models import Organization
from core.pagination import BIGINT_MAX
from integrations.models import Connection, CrmWrite, ProviderCallLog
from integrations.providers.base import ProviderCall
from integrations.services.calls import call_recorder
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok


@pytest.fixture
def connection(org: Organization) -> Connection:
    return Connection.objects.create(
        organization=org, provider="hubspot", external_account_id="62515", display_name="acme"
    )


# --- U+0000 anywhere in a request -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/workflows/%00",  # a path parameter used in a query
        "/api/v1/runs?workflow=%00",
        "/api/v1/runs?trigger=a%00b",
        "/api/v1/approvals?workflow=%00",
        "/api/v1/writes?batch=%00",
        "/api/v1/webhook-events?subscription_type=%00",
        "/api/v1/webhook-events?object_id=%00",
        "/api/v1/writes/%00",
    ],
)
def test_a_nul_in_the_path_or_query_is_a_422(api: Api, path: str) -> None:
    body = assert_envelope_error(api.get(path), 422, "validation_failed")
    [error] = body["error"]["details"]["errors"]
    assert error["type"] == "nul_character"
    assert error["loc"] == ["path" if "?" not in path else "query"]


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/api/v1/api-keys", {"name": "a\u0000b"}),
        ("/api/v1/connect-sessions", {"end_user": {"id": "customer\u0000"}}),
        ("/api/v1/workflows/crm_hygiene/runs", {"input": {"note\u0000": 1}}),
    ],
)
def test_a_nul_in_a_json_body_is_a_422(api: Api, path: str, payload: dict[str, Any]) -> None:
    body = assert_envelope_error(api.post(path, payload), 422, "validation_failed")
    assert body["error"]["details"]["errors"][0]["loc"] == ["body"]


def test_an_escaped_backslash_before_u0000_is_plain_text(api: Api) -> None:
    # The JSON text "a\\u0000" is a backslash followed by "u0000", not a NUL.
    response = api.post("/api/v1/api-keys", raw=b'{"name": "a\\\\u0000"}')
    assert assert_envelope_ok(response, 201)["name"] == "a\\u0000"


def test_a_nul_is_refused_after_authentication(anon: Api) -> None:
    assert_envelope_error(anon.get("/api/v1/runs?workflow=%00"), 401, "unauthenticated")


# --- strict JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "k", "n": NaN}',
        b'{"name": "k", "n": Infinity}',
        b'{"name": "k", "n": 1e400}',
        b'{"name": "\\ud800"}',  # a lone surrogate: not Unicode text
    ],
)
def test_what_json_does_not_allow_is_malformed_json(api: Api, raw: bytes) -> None:
    assert_envelope_error(api.post("/api/v1/api-keys", raw=raw), 400, "malformed_json")


def test_integers_postgresql_hands_back_beyond_64_bits_are_still_written(
    api: Api, org: Organization, connection: Connection
) -> None:
    # A client's 1e20 is stored as the number 100000000000000000000 and read back as an int.
    CrmWrite.objects.create(
        organization=org,
        connection=connection,
        idempotency_key="big",
        request_hash="0" * 64,
        operation="create",
        object_type="contact",
        payload={"properties": {"n": 10**20, "m": -(10**30), "fine": 2**63}},
    )
    [write] = assert_envelope_ok(api.get("/api/v1/writes"))
    assert write["payload"]["properties"] == {"n": 1e20, "m": -1e30, "fine": 2**63}


# --- dates, cursors and offsets -----------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "created_after=9999-12-31T23:59:59-23:59",  # beyond year 9999 in UTC
        "created_before=0001-01-01T00:00:00%2B23:59",  # before year 1 in UTC
    ],
)
def test_a_time_outside_what_utc_can_hold_is_a_422(api: Api, query: str) -> None:
    body = assert_envelope_error(api.get(f"/api/v1/runs?{query}"), 422, "validation_failed")
    assert body["error"]["details"]["errors"][0]["loc"][0] == "query"


def test_an_offset_postgresql_refuses_is_compared_in_utc(api: Api) -> None:
    # PostgreSQL takes offsets up to 15:59; ISO 8601 (and Pydantic) up to 23:59.
    assert_envelope_ok(api.get("/api/v1/runs?created_after=2020-01-01T00:00:00%2B23:59"))


def test_the_mirror_compares_times_in_utc_too(api: Api, connection: Connection) -> None:
    base = f"/api/v1/connections/{connection.pk}/records?object=contact"
    assert_envelope_ok(api.get(f"{base}&updated_since=2020-01-01T00:00:00-23:00"))
    response = api.get(f"{base}&updated_since=9999-12-31T23:59:59-23:59")
    assert_envelope_error(response, 422, "validation_failed")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(created_at: str, pk: str) -> str:
    """A cursor shaped like core.pagination's, holding anything."""
    return _b64(orjson.dumps([created_at, pk]))


@pytest.mark.parametrize("path", ["/api/v1/api-keys", "/api/v1/runs", "/api/v1/connections"])
@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("2024-01-01T00:00:00+00:00", "not-a-uuid"),
        _cursor("9999-12-31T23:59:59-23:59", str(uuid.uuid4())),
    ],
)
def test_a_cursor_that_is_not_ours_is_a_422(api: Api, path: str, cursor: str) -> None:
    body = assert_envelope_error(api.get(f"{path}?cursor={cursor}"), 422, "validation_failed")
    assert body["error"]["details"] == {"fields": {"cursor": "invalid cursor"}}


def test_a_cursor_time_without_an_offset_is_utc(api: Api) -> None:
    cursor = _cursor("2999-01-01T00:00:00", str(uuid.uuid4()))
    assert len(assert_envelope_ok(api.get(f"/api/v1/api-keys?cursor={cursor}"))) == 1


@pytest.mark.parametrize("pk", [str(BIGINT_MAX + 1), "\u00b2", "-1"])
def test_a_webhook_event_cursor_needs_a_row_id(api: Api, pk: str) -> None:
    cursor = _cursor("2024-01-01T00:00:00+00:00", pk)
    response = api.get(f"/api/v1/webhook-events?cursor={cursor}")
    assert_envelope_error(response, 422, "validation_failed")


def test_a_mirror_cursor_needs_a_row_id(api: Api, connection: Connection) -> None:
    cursor = _b64(str(BIGINT_MAX + 1).encode())
    path = f"/api/v1/connections/{connection.pk}/records?object=contact&cursor={cursor}"
    assert_envelope_error(api.get(path), 422, "validation_failed")


def test_an_offset_beyond_a_bigint_is_a_422_and_up_to_one_an_empty_page(api: Api) -> None:
    response = api.get(f"/api/v1/api-keys?offset={BIGINT_MAX + 1}")
    assert_envelope_error(response, 422, "validation_failed")
    response = api.get(f"/api/v1/api-keys?offset={BIGINT_MAX}")
    assert assert_envelope_ok(response) == []
    meta = orjson.loads(response.content)["meta"]["pagination"]
    assert (meta["total"], meta["has_more"]) == (1, False)


# --- a provider call that ends after its connection was deleted ---------------------------------


def test_a_call_logged_after_a_disconnect_is_dropped(transactional_db: None) -> None:
    record = call_recorder(uuid.uuid4())  # no such connection (any more)
    async_to_sync(record)(ProviderCall(method="GET", path="/crm/v3/x", status=200, duration_ms=1))
    assert not ProviderCallLog.objects.exists()


# --- what the OpenAPI document says ---------------------------------------------------------------


def _document() -> dict[str, Any]:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = orjson.loads(response.content)
    return doc


def test_the_run_event_stream_documents_each_event(db: None) -> None:
    doc = _document()
    ok = doc["paths"]["/api/v1/runs/{run_id}/events"]["get"]["responses"]["200"]
    events = ok["content"]["text/event-stream"]["schema"]["oneOf"]
    names = {e["properties"]["event"]["const"]: e for e in events}
    assert set(names) == {"status", "step", "end"}
    for name, model in [("status", "StatusEvent"), ("step", "StepEvent"), ("end", "EndEvent")]:
        data = names[name]["properties"]["data"]
        assert data["contentMediaType"] == "application/json"
        assert data["contentSchema"] == {"$ref": f"#/components/schemas/{model}"}
        assert model in doc["components"]["schemas"]
    assert "id" in names["step"]["required"]


def test_502_is_documented_where_the_provider_is_called(db: None) -> None:
    paths = _document()["paths"]
    contacts = "/api/v1/connections/{connection_id}/contacts"
    for path, method in [
        (contacts, "get"),
        (contacts, "post"),
        (f"{contacts}/search", "post"),
        (f"{contacts}/batch", "post"),
        (f"{contacts}/{{record_id}}", "patch"),
        ("/api/v1/connections/{connection_id}/test", "post"),
    ]:
        assert "502" in paths[path][method]["responses"], (method, path)
    assert "502" not in paths["/api/v1/me"]["get"]["responses"]
    assert "502" not in paths["/api/v1/connections/{connection_id}"]["get"]["responses"]


def test_health_documents_what_it_answers(db: None) -> None:
    responses = _document()["paths"]["/api/v1/health"]["get"]["responses"]
    assert set(responses) == {"200", "422", "429", "500", "503"}
