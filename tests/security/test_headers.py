"""Security headers and cookies under production settings (DEBUG off), over HTTPS, on every kind
of answer: the wizard, the admin, the account pages, the home page and the API."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from http.cookies import Morsel
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.checks import run_checks
from django.db import connections
from django.test import AsyncClient, Client, override_settings

from accounts.models import Organization, Role
from core import inline_middleware
from tests.conftest import new_key
from tests.factories import PASSWORD, make_membership, make_user

HSTS = "max-age=31536000; includeSubDomains"
SIGNED_OUT_PAGES = ["/", "/accounts/login/", "/accounts/signup/", "/admin/login/"]
SIGNED_IN_PAGES = ["/connect/", "/accounts/email/", "/admin/", "/admin/accounts/organization/"]
API_ANSWERS = ["/api/v1/health", "/api/v1/me", "/api/v1/connections", "/api/v1/no-such-route"]


@pytest.fixture(autouse=True)
def _production() -> None:
    # The suite runs on production settings; these tests say so rather than assume it.
    assert settings.DEBUG is False
    assert settings.SESSION_COOKIE_SECURE is True
    assert settings.CSRF_COOKIE_SECURE is True


@pytest.fixture
def member(org: Organization) -> Client:
    """A signed-in owner of ``org`` (staff, so the admin answers too), over HTTPS."""
    user = make_user(is_staff=True, is_superuser=True)
    make_membership(organization=org, user=user, role=Role.OWNER)
    client = Client()
    client.force_login(user)
    return client


def directives(response: Any) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        assert name not in parsed, policy
        parsed[name] = values
    return parsed


def assert_common_headers(response: Any, *, secure: bool = True) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    if secure:
        assert response["Strict-Transport-Security"] == HSTS
    else:
        assert not response.has_header("Strict-Transport-Security")


def assert_html_policy(response: Any) -> None:
    csp = directives(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no nonce
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"][0] == "'self'"
    assert "'unsafe-inline'" not in csp["style-src"]
    assert "style-src-attr" not in csp  # style attributes fall under style-src: none allowed


@pytest.mark.parametrize("path", SIGNED_OUT_PAGES + SIGNED_IN_PAGES)
def test_html_pages_carry_the_headers_and_the_policy(member: Client, path: str) -> None:
    client = member if path in SIGNED_IN_PAGES else Client()
    response = client.get(path, secure=True)
    assert response.status_code == 200, (path, response.status_code)
    assert response["Content-Type"].startswith("text/html")
    assert_common_headers(response)
    assert_html_policy(response)


@pytest.mark.parametrize("path", API_ANSWERS)
def test_api_answers_carry_the_headers_and_a_policy_that_loads_nothing(
    org: Organization, path: str
) -> None:
    response = Client().get(path, secure=True, headers={"Authorization": f"Bearer {new_key(org)}"})
    assert response["Content-Type"].startswith("application/json"), path
    assert_common_headers(response)
    assert directives(response) == {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}


def test_an_unauthenticated_api_answer_too() -> None:
    response = Client().get("/api/v1/me", secure=True)
    assert response.status_code == 401
    assert_common_headers(response)
    assert directives(response)["default-src"] == ["'none'"]


def test_the_api_docs_have_their_own_policy(db: None) -> None:
    response = Client().get("/api/v1/docs", secure=True)
    assert response.status_code == 200
    assert_common_headers(response)
    csp = directives(response)
    assert csp["script-src"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "data:"]  # Swagger UI's stylesheet icons
    assert csp["form-action"] == ["'self'"]
    assert b"/static/ninja/swagger-ui-bundle.js" in response.content  # ours, not a CDN's


def test_the_wizard_may_send_a_form_to_each_providers_consent_page(member: Client) -> None:
    csp = directives(member.get("/connect/", secure=True))
    expected = {"https://app.hubspot.com", "https://login.salesforce.com"}
    expected |= {"https://test.salesforce.com", "https://*.my.salesforce.com"}
    if settings.SWITCHBOARD_SANDBOX_URL:
        expected = {settings.SWITCHBOARD_SANDBOX_URL}
    assert set(csp["form-action"]) == {"'self'", *expected}


def test_a_style_nonce_is_fresh_on_every_page_and_matches_the_header(member: Client) -> None:
    nonces = []
    for _ in range(2):
        response = member.get("/connect/", secure=True)
        (nonce,) = [v for v in directives(response)["style-src"] if v.startswith("'nonce-")]
        value = nonce.removeprefix("'nonce-").removesuffix("'")
        assert f'<style nonce="{value}">'.encode() in response.content
        nonces.append(value)
    assert nonces[0] != nonces[1]


@pytest.mark.parametrize("path", ["/connect/", "/api/v1/health"])
def test_hsts_only_on_secure_requests(member: Client, path: str) -> None:
    assert_common_headers(member.get(path), secure=False)


def test_a_forwarded_proto_counts_only_when_the_proxy_is_trusted(member: Client) -> None:
    forwarded = {"X-Forwarded-Proto": "https"}
    assert not member.get("/connect/", headers=forwarded).has_header("Strict-Transport-Security")
    with override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        response = member.get("/connect/", headers=forwarded)
    assert response["Strict-Transport-Security"] == HSTS


@pytest.mark.parametrize("path", ["/connect/", "/admin/login/", "/api/v1/health"])
def test_ssl_redirect_sends_plain_http_to_https(db: None, path: str) -> None:
    with override_settings(SECURE_SSL_REDIRECT=True):
        response = Client().get(path)
    assert response.status_code == 301
    assert response["Location"] == f"https://testserver{path}"


def cookie(response: Any, name: str) -> Morsel[str]:
    assert name in response.cookies, sorted(response.cookies)
    morsel: Morsel[str] = response.cookies[name]
    return morsel


@pytest.mark.parametrize(
    ("sign_in_page", "fields"),
    [
        ("/accounts/login/", {"login": "{email}", "password": PASSWORD}),
        ("/admin/login/", {"username": "{email}", "password": PASSWORD}),
    ],
)
def test_signing_in_sets_secure_cookies(
    db: None, sign_in_page: str, fields: dict[str, str]
) -> None:
    user = make_user(is_staff=True)
    client = Client(enforce_csrf_checks=True)
    page = client.get(sign_in_page, secure=True)
    csrf = cookie(page, "csrftoken")
    assert csrf["secure"] is True
    assert csrf["samesite"] == "Lax"
    assert not csrf["httponly"]  # the browser's fetch() reads it for X-CSRFToken (README)
    form = {k: v.format(email=user.email) for k, v in fields.items()}
    form["csrfmiddlewaretoken"] = csrf.value
    origin = {"Origin": "https://testserver"}  # what a browser sends with the form
    signed_in = client.post(sign_in_page, form, secure=True, headers=origin)
    assert signed_in.status_code == 302, signed_in.content[:300]
    assert_common_headers(signed_in)
    session = cookie(signed_in, "sessionid")
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"  # Strict would drop it on the provider's OAuth callback


def test_the_deploy_check_wants_the_csp_middleware_and_runs_django_csps_checks() -> None:
    trimmed = [m for m in settings.MIDDLEWARE if not m.endswith("CSPMiddleware")]
    assert len(trimmed) == len(settings.MIDDLEWARE) - 1
    with override_settings(MIDDLEWARE=trimmed):
        missing = [
            m for m in run_checks(include_deployment_checks=True) if m.id == "switchboard.W005"
        ]
    assert any("CSPMiddleware" in m.msg for m in missing), missing
    policy = settings.CONTENT_SECURITY_POLICY | {"EXCLUDE_URL_PREFIXES": "/"}
    with override_settings(CONTENT_SECURITY_POLICY=policy):
        assert "csp.E002" in [m.id for m in run_checks(include_deployment_checks=True)]
    clean = run_checks(include_deployment_checks=True)
    assert [m.id for m in clean if (m.id or "").startswith(("csp.", "switchboard.W005"))] == []


@pytest_asyncio.fixture
async def _close_thread_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_close_thread_connections")
async def test_the_policy_is_set_on_the_event_loop_under_asgi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[int] = []
    original = inline_middleware.CSPMiddleware.process_response

    def spy(self: Any, request: Any, response: Any) -> Any:
        seen.append(threading.get_ident())
        return original(self, request, response)

    monkeypatch.setattr(inline_middleware.CSPMiddleware, "process_response", spy)
    response = await AsyncClient().get("/accounts/login/", secure=True)
    assert response.status_code == 200
    assert_html_policy(response)
    assert any(v.startswith("'nonce-") for v in directives(response)["style-src"])
    assert seen == [threading.get_ident()]
