"""Every /api/v1 answer is the envelope, whatever went wrong (the foundation's done-when)."""

from __future__ import annotations

import logging

import orjson
import pytest
from django.test import Client, override_settings

from accounts.keys import prefix_of
from accounts.models import ApiKey, Organization, Role
from config.api import api as ninja_api
from core.envelope import app_error_response
from core.errors import ProviderRateLimited
from core.throttling import parse_rate
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok, new_key


def test_unknown_route_is_a_404_envelope(api: Api) -> None:
    body = assert_envelope_error(api.get("/api/v1/no-such-thing"), 404, "not_found")
    assert "/api/v1/no-such-thing" in body["error"]["message"]


def test_unknown_route_without_credentials_is_still_the_envelope(anon: Api) -> None:
    assert_envelope_error(anon.get("/api/v1/nope/deeper"), 404, "not_found")


def test_malformed_json_is_400(api: Api) -> None:
    response = api.post("/api/v1/api-keys", raw=b'{"name": "x"')
    assert_envelope_error(response, 400, "malformed_json")


def test_wrong_types_are_422_naming_the_field(api: Api) -> None:
    response = api.post("/api/v1/api-keys", {"name": 123, "extra": True})
    body = assert_envelope_error(response, 422, "validation_failed")
    locs = [e["loc"] for e in body["error"]["details"]["errors"]]
    assert ["body", "name"] in locs
    assert ["body", "extra"] in locs  # unknown fields are refused, not ignored
    assert "input" not in body["error"]["details"]["errors"][0]  # never echo the request back


def test_missing_key_is_401(anon: Api) -> None:
    response = anon.get("/api/v1/me")
    assert_envelope_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "key",
    ["nonsense", "sbk_aaaaaaaa_forged-secret", "Bearer", "sbk__", "sbk_" + "x" * 500],
)
def test_garbage_keys_are_401(db: None, key: str) -> None:
    assert_envelope_error(Api(key=key).get("/api/v1/me"), 401, "unauthenticated")


def test_a_real_prefix_with_the_wrong_secret_is_401(api: Api) -> None:
    assert api.key is not None
    prefix = prefix_of(api.key)
    assert prefix is not None
    forged = Api(key=f"{prefix}_{'A' * 43}")
    assert_envelope_error(forged.get("/api/v1/me"), 401, "unauthenticated")


def test_revoked_key_is_401(api: Api) -> None:
    assert_envelope_ok(api.get("/api/v1/me"))
    ApiKey.objects.update(revoked_at="2026-01-01T00:00:00Z")
    assert_envelope_error(api.get("/api/v1/me"), 401, "unauthenticated")


def test_wrong_method_is_405_with_allow(api: Api) -> None:
    response = api.request("PUT", "/api/v1/me")
    body = assert_envelope_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "GET"
    assert body["error"]["details"]["allowed_methods"] == ["GET"]


def test_unexpected_exception_is_a_500_that_hides_internals(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(**kwargs: object) -> None:
        raise RuntimeError("db password is hunter2")

    monkeypatch.setattr("accounts.api.api_key_list", explode)
    with caplog.at_level(logging.ERROR, logger="switchboard.api"):
        response = api.get("/api/v1/api-keys")
    body = assert_envelope_error(response, 500, "internal_error")
    assert b"hunter2" not in response.content
    assert b"Traceback" not in response.content
    request_id = response["X-Request-ID"]
    assert request_id in body["error"]["message"]
    logged = [r for r in caplog.records if r.name == "switchboard.api"]
    assert logged
    assert logged[0].exc_info is not None
    assert logged[0].request_id == request_id  # type: ignore[attr-defined]


def test_throttled_caller_gets_429_with_retry_after(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    throttles = ninja_api.throttle
    assert isinstance(throttles, list)
    throttle = throttles[1]  # CallerThrottle
    monkeypatch.setattr(throttle, "item", parse_rate("2/m"))
    assert_envelope_ok(api.get("/api/v1/me"))
    assert_envelope_ok(api.get("/api/v1/me"))
    response = api.get("/api/v1/me")
    assert_envelope_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024)
def test_oversized_body_is_413(api: Api) -> None:
    response = api.post("/api/v1/api-keys", {"name": "x" * 4096})
    body = assert_envelope_error(response, 413, "payload_too_large")
    assert body["error"]["details"]["limit_bytes"] == 1024
    assert not ApiKey.objects.filter(name__startswith="xxx").exists()


def test_request_id_from_the_caller_is_kept_when_safe(api: Api) -> None:
    response = api.get("/api/v1/me", headers={"X-Request-ID": "abc-123.DEF"})
    assert response["X-Request-ID"] == "abc-123.DEF"
    assert orjson.loads(response.content)["meta"]["request_id"] == "abc-123.DEF"
    unsafe = api.get("/api/v1/me", headers={"X-Request-ID": "evil\r\nheader: 1"})
    assert unsafe["X-Request-ID"] != "evil\r\nheader: 1"
    assert len(unsafe["X-Request-ID"]) == 32


def test_non_api_pages_keep_their_own_shape(db: None) -> None:
    response = Client().get("/definitely-not-a-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")
    assert response.has_header("X-Request-ID")


def test_session_post_without_csrf_token_is_refused(org: Organization) -> None:
    from tests.factories import make_membership

    membership = make_membership(organization=org, role=Role.OWNER)
    client = Client(enforce_csrf_checks=True)
    client.force_login(membership.user)
    response = client.post("/api/v1/api-keys", b'{"name": "k"}', content_type="application/json")
    assert_envelope_error(response, 403, "csrf_failed")
    assert not ApiKey.objects.filter(organization=org).exists()
    # With the token (as a browser page would send it) the same call works.
    client.get("/api/v1/docs")
    token = client.cookies["csrftoken"].value
    response = client.post(
        "/api/v1/api-keys",
        b'{"name": "k"}',
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert_envelope_ok(response, 201)


def test_new_key_helper_makes_working_keys(org: Organization) -> None:
    assert_envelope_ok(Api(key=new_key(org)).get("/api/v1/me"))


@pytest.mark.parametrize(("wait", "header"), [(0.2, "1"), (1.0, "1"), (1.4, "2"), (29.01, "30")])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: str) -> None:
    response = app_error_response(ProviderRateLimited(retry_after=wait))
    assert response.status_code == 429
    assert response["Retry-After"] == header
