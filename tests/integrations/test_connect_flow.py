"""The connect wizard end to end over HTTP: Django's stack on one side, the HubSpot sandbox's
consent page and token endpoint on the other."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.db import connection as db
from django.test import Client
from django.utils import timezone

from accounts.audit import Actor
from accounts.connect_sessions import EndUser, connect_session_issue
from accounts.models import AuditEvent, Organization, Role
from integrations.models import AttemptStatus, Connection, ConnectionStatus, OAuthAttempt
from tests.factories import make_membership

ACME = "62515"
GLOBEX = "62516"


def consent(authorize_url: str, *, decision: str = "allow", portal: str = ACME) -> str:
    """Answer the sandbox's consent page as a person would; returns where it redirects."""
    page = httpx.get(authorize_url, timeout=10)
    assert page.status_code == 200, page.text
    assert 'name="portal"' in page.text
    answer = httpx.post(authorize_url, data={"portal": portal, "decision": decision}, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    return answer.headers["location"]


def start(client: Client, query: str = "") -> Any:
    return client.get(f"/connect/hubspot/start{query}")


def finish(client: Client, redirect: str) -> Any:
    """Follow the provider's redirect to our callback with the same browser."""
    parts = urlsplit(redirect)
    assert parts.path == "/connect/hubspot/callback", redirect
    return client.get(f"{parts.path}?{parts.query}")


@pytest.fixture
def member(org: Organization) -> Client:
    client = Client()
    client.force_login(make_membership(organization=org, role=Role.ADMIN).user)
    return client


def connect(client: Client, **kw: str) -> Any:
    response = start(client)
    assert response.status_code == 302, response.content
    return finish(client, consent(response["Location"], **kw))


def test_a_member_connects_hubspot(
    sandbox_settings: Any, member: Client, org: Organization
) -> None:
    index = member.get("/connect/")
    assert index.status_code == 200
    assert b'id="connect-hubspot"' in index.content
    response = start(member)
    authorize = urlsplit(response["Location"])
    query = parse_qs(authorize.query)
    assert query["client_id"] == ["sandbox-hubspot-client"]
    assert query["code_challenge_method"] == ["S256"]
    assert "crm.objects.contacts.write" in query["scope"][0]
    done = finish(member, consent(response["Location"]))
    assert done.status_code == 200, done.content.decode()
    assert b"acme-sandbox.hubspot.test" in done.content
    connection = Connection.objects.get(organization=org)
    assert connection.external_account_id == ACME
    assert connection.status == ConnectionStatus.ACTIVE
    assert connection.account_user == "owner@acme.test"
    assert "crm.objects.contacts.write" in connection.scopes
    assert connection.token_expires_at is not None
    assert connection.token_expires_at > timezone.now() + timedelta(minutes=20)
    attempt = OAuthAttempt.objects.get(organization=org)
    assert attempt.status == AttemptStatus.SUCCEEDED
    assert attempt.connection == connection
    assert attempt.code_verifier == ""
    assert AuditEvent.objects.filter(
        action="connection.created", entity_id=str(connection.pk)
    ).exists()
    # Listed on the wizard page afterwards.
    assert b"acme-sandbox.hubspot.test" in member.get("/connect/").content


def test_tokens_are_encrypted_at_rest(sandbox_settings: Any, member: Client) -> None:
    connect(member)
    connection = Connection.objects.get()
    with db.cursor() as cursor:
        cursor.execute("SELECT access_token, refresh_token FROM integrations_connection")
        stored_access, stored_refresh = cursor.fetchone()
    assert connection.access_token not in stored_access
    assert connection.refresh_token is not None
    assert connection.refresh_token not in stored_refresh


def test_reconnecting_the_same_account_updates_the_row(
    sandbox_settings: Any, member: Client, org: Organization
) -> None:
    connect(member)
    first = Connection.objects.get()
    connect(member)
    again = Connection.objects.get()
    assert again.pk == first.pk
    assert again.access_token != first.access_token
    assert AuditEvent.objects.filter(action="connection.reauthorized").count() == 1
    connect(member, portal=GLOBEX)  # another account: another row
    assert Connection.objects.filter(organization=org).count() == 2


def test_anonymous_visitors_are_told_to_sign_in(sandbox_settings: Any, db: None) -> None:
    response = Client().get("/connect/")
    assert response.status_code == 401
    assert b"unauthenticated" in response.content


def session_token(org: Organization, providers: list[str], ttl: int = 600) -> str:
    return connect_session_issue(
        organization_id=org.pk,
        providers=providers,
        end_user=EndUser(id="cust-7", email="buyer@customer.test"),
        ttl_seconds=ttl,
        actor=Actor(label="test"),
    ).token


def test_an_end_customer_connects_with_a_session_link(
    sandbox_settings: Any, org: Organization
) -> None:
    browser = Client()
    index = browser.get(f"/connect/?session={session_token(org, ['hubspot'])}")
    assert index.status_code == 200
    assert org.name.encode() in index.content
    assert b"Sign in" not in index.content  # embedded: no site navigation
    done = connect(browser)  # the token rides in the browser's session from here on
    assert done.status_code == 200, done.content.decode()
    connection = Connection.objects.get(organization=org)
    assert connection.end_user == {
        "id": "cust-7",
        "email": "buyer@customer.test",
        "display_name": None,
    }
    assert connection.connected_by is None


def test_a_session_link_only_offers_its_providers(sandbox_settings: Any, org: Organization) -> None:
    browser = Client()
    index = browser.get(f"/connect/?session={session_token(org, ['salesforce'])}")
    assert b'id="connect-hubspot"' not in index.content
    refused = start(browser)
    assert refused.status_code == 403
    assert not OAuthAttempt.objects.exists()


def test_bad_session_links(sandbox_settings: Any, org: Organization) -> None:
    assert Client().get("/connect/?session=garbage").status_code == 401
    token = session_token(org, ["hubspot"], ttl=60)
    from freezegun import freeze_time

    with freeze_time(timezone.now() + timedelta(minutes=2)):
        expired = Client().get(f"/connect/?session={token}")
    assert expired.status_code == 401
    assert b"expired" in expired.content
