from __future__ import annotations

import hashlib

import orjson
import pytest
from django.db import connection
from django.test import Client

from accounts.models import ApiKey, AuditEvent, Organization, Role
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok, new_key
from tests.factories import make_membership


def test_create_shows_the_key_once_and_stores_only_its_hash(api: Api, org: Organization) -> None:
    data = assert_envelope_ok(api.post("/api/v1/api-keys", {"name": "ci deploys"}), 201)
    key = data["key"]
    assert key.startswith(data["prefix"] + "_")
    assert data["name"] == "ci deploys"
    assert data["active"] is True
    row = ApiKey.objects.get(pk=data["id"])
    assert row.organization == org
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    # The secret is nowhere in the table, whatever column.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        assert key not in repr(cursor.fetchall())
    # Listing never shows it again; the new key works.
    listed = assert_envelope_ok(api.get("/api/v1/api-keys"))
    assert all("key" not in item for item in listed)
    assert assert_envelope_ok(Api(key=key).get("/api/v1/me"))["api_key"]["id"] == data["id"]


def test_using_a_key_records_last_used_at(api: Api) -> None:
    assert ApiKey.objects.get().last_used_at is None
    assert_envelope_ok(api.get("/api/v1/me"))
    first = ApiKey.objects.get().last_used_at
    assert first is not None
    assert_envelope_ok(api.get("/api/v1/me"))
    assert ApiKey.objects.get().last_used_at == first  # coarse: not one write per request


def test_revoke_stops_the_key_and_is_idempotent(api: Api, org: Organization) -> None:
    victim = new_key(org, "to revoke")
    victim_id = ApiKey.objects.get(name="to revoke").pk
    data = assert_envelope_ok(api.delete(f"/api/v1/api-keys/{victim_id}"))
    assert data["active"] is False
    assert data["revoked_at"]
    assert_envelope_error(Api(key=victim).get("/api/v1/me"), 401, "unauthenticated")
    again = assert_envelope_ok(api.delete(f"/api/v1/api-keys/{victim_id}"))
    assert again["revoked_at"] == data["revoked_at"]
    assert (
        AuditEvent.objects.filter(action="api_key.revoked", entity_id=str(victim_id)).count() == 1
    )


def test_another_organisations_keys_are_invisible(
    api: Api, org: Organization, other_org: Organization
) -> None:
    theirs = new_key(other_org, "theirs")
    their_id = ApiKey.objects.get(name="theirs").pk
    listed = assert_envelope_ok(api.get("/api/v1/api-keys"))
    assert str(their_id) not in {item["id"] for item in listed}
    assert_envelope_error(api.delete(f"/api/v1/api-keys/{their_id}"), 404, "not_found")
    assert ApiKey.objects.get(pk=their_id).revoked_at is None
    assert_envelope_ok(Api(key=theirs).get("/api/v1/me"))
    assert not AuditEvent.objects.filter(action="api_key.revoked").exists()


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_revoking_an_unknown_key_is_404(api: Api, bad_id: str) -> None:
    assert_envelope_error(api.delete(f"/api/v1/api-keys/{bad_id}"), 404, "not_found")


def test_blank_name_is_refused(api: Api) -> None:
    assert_envelope_error(api.post("/api/v1/api-keys", {"name": "   "}), 422, "validation_failed")
    assert ApiKey.objects.count() == 1


def test_members_can_read_but_not_manage_keys(org: Organization) -> None:
    member = make_membership(organization=org, role=Role.MEMBER).user
    client = Client()
    client.force_login(member)
    response = client.get("/api/v1/api-keys")
    assert_envelope_ok(response)
    response = client.post("/api/v1/api-keys", b'{"name": "x"}', content_type="application/json")
    assert_envelope_error(response, 403, "permission_denied")
    assert not ApiKey.objects.filter(organization=org).exists()


def test_session_owner_creates_keys_attributed_to_them(org: Organization) -> None:
    owner = make_membership(organization=org, role=Role.OWNER).user
    client = Client()
    client.force_login(owner)
    response = client.post("/api/v1/api-keys", b'{"name": "mine"}', content_type="application/json")
    data = assert_envelope_ok(response, 201)
    assert data["created_by"] == owner.email
    event = AuditEvent.objects.get(action="api_key.created", entity_id=data["id"])
    assert event.actor_user == owner
    assert event.organization == org
    assert event.request_id == response["X-Request-ID"]


def test_pagination_by_cursor_and_offset(api: Api, org: Organization) -> None:
    for n in range(6):
        new_key(org, f"k{n}")  # 7 keys with the fixture's own
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = orjson.loads(api.get("/api/v1/api-keys", params).content)
        page = body["meta"]["pagination"]
        seen += [item["id"] for item in body["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    body = orjson.loads(api.get("/api/v1/api-keys", {"limit": 2, "offset": 6}).content)
    assert body["meta"]["pagination"] == {
        "limit": 2,
        "offset": 6,
        "next_cursor": None,
        "has_more": False,
        "total": 7,
    }
    assert [item["id"] for item in body["data"]] == seen[6:]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "!!!"},
        {"limit": 0},
        {"limit": 500},
        {"offset": -1},
        {"cursor": "eyJ4Ijox", "offset": 1},
    ],
)
def test_bad_pagination_is_422(api: Api, params: dict[str, object]) -> None:
    assert_envelope_error(api.get("/api/v1/api-keys", params), 422, "validation_failed")


def _strict_client() -> Client:
    # Django's test client skips CSRF unless asked: a browser (or curl) gets no such pass.
    return Client(enforce_csrf_checks=True)


@pytest.mark.parametrize("state", ["revoked", "unknown", "malformed", "empty"])
def test_a_bad_key_on_an_unsafe_method_is_401_not_a_csrf_refusal(
    api: Api, org: Organization, state: str
) -> None:
    keys = {
        "revoked": new_key(org, "soon revoked"),
        "unknown": "sbk_AAAAAAAA_" + "x" * 43,
        "malformed": "not-a-key",
        "empty": "",
    }
    if state == "revoked":
        victim_id = ApiKey.objects.get(name="soon revoked").pk
        assert_envelope_ok(api.delete(f"/api/v1/api-keys/{victim_id}"))
    before = ApiKey.objects.count()
    response = _strict_client().post(
        "/api/v1/api-keys",
        b'{"name": "sneaky"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {keys[state]}"},
    )
    assert_envelope_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert ApiKey.objects.count() == before


def test_a_bad_key_is_not_rescued_by_a_signed_in_session(org: Organization) -> None:
    owner = make_membership(organization=org, role=Role.OWNER).user
    client = _strict_client()
    client.force_login(owner)
    headers = {"Authorization": "Bearer sbk_AAAAAAAA_nope"}
    assert_envelope_error(client.get("/api/v1/me", headers=headers), 401, "unauthenticated")
    page = client.get("/admin/login/")  # a CSRF cookie, as a browser page would leave
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/api/v1/api-keys",
        b'{"name": "x"}',
        content_type="application/json",
        headers=headers | {"X-CSRFToken": token},
    )
    assert_envelope_error(response, 401, "unauthenticated")
    assert not ApiKey.objects.filter(organization=org).exists()


def test_a_good_key_needs_no_csrf_token(api: Api) -> None:
    response = _strict_client().post(
        "/api/v1/api-keys",
        b'{"name": "from ci"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert assert_envelope_ok(response, 201)["name"] == "from ci"


def test_no_credentials_at_all_is_401(db: None) -> None:
    response = _strict_client().post(
        "/api/v1/api-keys", b'{"name": "x"}', content_type="application/json"
    )
    assert_envelope_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_session_needs_the_csrf_token_on_unsafe_methods(org: Organization) -> None:
    owner = make_membership(organization=org, role=Role.OWNER).user
    client = _strict_client()
    client.force_login(owner)
    body = b'{"name": "mine"}'
    refused = client.post("/api/v1/api-keys", body, content_type="application/json")
    assert_envelope_error(refused, 403, "csrf_failed")
    token = client.get("/admin/login/").cookies["csrftoken"].value
    accepted = client.post(
        "/api/v1/api-keys", body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert assert_envelope_ok(accepted, 201)["created_by"] == owner.email
    # A session cookie that signs nobody in is no credential: 401, not a CSRF refusal.
    client.logout()
    client.cookies["sessionid"] = "no-such-session"
    stale = client.post("/api/v1/api-keys", body, content_type="application/json")
    assert_envelope_error(stale, 401, "unauthenticated")
