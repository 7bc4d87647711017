"""Salesforce through the whole stack: the wizard's login host choice and PKCE, the records API,
refresh on an expired session, revocation, and the same unified shape as HubSpot."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from django.db import transaction
from django.test import Client

from accounts.audit import Actor
from accounts.models import Organization, Role
from integrations.models import Connection, ConnectionStatus, OAuthAttempt
from integrations.providers.base import AccountIdentity, TokenSet
from integrations.services.connections import connection_upsert
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok
from tests.factories import make_membership
from tests.integrations.test_tokens import make_connection as make_hubspot_connection

SF_ORG_FIELD = re.compile(r'name="org"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="org"')


def consent(authorize_url: str, decision: str = "allow") -> str:
    page = httpx.get(authorize_url, timeout=10)
    assert page.status_code == 200, page.text
    found = SF_ORG_FIELD.search(page.text)
    assert found, page.text
    org = found.group(1) or found.group(2)
    answer = httpx.post(authorize_url, data={"org": org, "decision": decision}, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    return str(answer.headers["location"])


@pytest.fixture
def member(org: Organization) -> Client:
    client = Client()
    client.force_login(make_membership(organization=org, role=Role.ADMIN).user)
    return client


def connect(client: Client, query: str = "?environment=sandbox") -> Any:
    start = client.get(f"/connect/salesforce/start{query}")
    assert start.status_code == 302, start.content
    redirect = urlsplit(consent(start["Location"]))
    return client.get(f"{redirect.path}?{redirect.query}")


@pytest.mark.parametrize(
    ("query", "host_part"),
    [
        ("", "/salesforce/login/"),
        ("?environment=production", "/salesforce/login/"),
        ("?environment=sandbox", "/salesforce/test/"),
        (
            "?environment=my_domain&domain=acme.my.salesforce.com",
            "/mydomain/acme.my.salesforce.com/",
        ),
    ],
)
def test_the_person_picks_the_login_host(
    sandbox: Any, sandbox_settings: Any, member: Client, query: str, host_part: str
) -> None:
    start = member.get(f"/connect/salesforce/start{query}")
    assert start.status_code == 302
    target = urlsplit(start["Location"])
    assert host_part in target.path
    params = parse_qs(target.query)
    assert params["code_challenge_method"] == ["S256"]
    assert params["client_id"] == ["sandbox-salesforce-client"]


@pytest.mark.parametrize(
    "query",
    [
        "?environment=my_domain&domain=evil.example.com",
        "?environment=my_domain",
        "?environment=moon",
    ],
)
def test_bad_login_choices_end_on_the_error_page(
    sandbox: Any, sandbox_settings: Any, member: Client, query: str
) -> None:
    response = member.get(f"/connect/salesforce/start{query}")
    assert response.status_code == 422
    assert b"validation_failed" in response.content
    assert not OAuthAttempt.objects.exists()


def test_the_wizard_explains_the_five_approvals_limit(
    sandbox: Any, sandbox_settings: Any, member: Client
) -> None:
    page = member.get("/connect/").content.decode()
    assert 'id="form-salesforce"' in page
    assert 'name="environment"' in page
    assert "five" in page.split('id="note-salesforce"', 1)[1].split("</p>", 1)[0].lower()


def test_connecting_a_sandbox_org_keeps_instance_and_login_host(
    sandbox: Any, sandbox_settings: Any, member: Client, org: Organization
) -> None:
    done = connect(member)
    assert done.status_code == 200, done.content.decode()
    connection = Connection.objects.get(organization=org, provider="salesforce")
    assert connection.external_account_id.startswith("00D")
    assert len(connection.external_account_id) == 18
    assert connection.token_expires_at is None  # Salesforce sends no expiry
    assert connection.token_extra["instance_url"].startswith("https://")
    assert "/salesforce/test" in connection.token_extra["login_url"]
    assert {"api", "refresh_token"} <= set(connection.scopes)
    assert OAuthAttempt.objects.get().login_url == connection.token_extra["login_url"]


def make_sf_connection(sandbox: Any, org: Organization) -> Connection:
    minted = sandbox.sf_mint_token(org="acme")
    org_id = minted["id"].rstrip("/").split("/")[-2]
    with transaction.atomic():
        return connection_upsert(
            organization_id=org.pk,
            provider_key="salesforce",
            tokens=TokenSet(
                access_token=minted["access_token"],
                refresh_token=minted["refresh_token"],
                extra={
                    "instance_url": minted["instance_url"],
                    "id_url": minted["id"],
                    "login_url": sandbox.sf_login_url,
                },
            ),
            identity=AccountIdentity(external_id=org_id, display_name="Acme Corp (sandbox)"),
            connected_by_id=None,
            end_user=None,
            actor=Actor(label="test"),
        )


def patch(api: Api, path: str, body: dict[str, Any]) -> Any:
    return api.client.patch(
        path,
        orjson.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.key}"},
    )


def test_records_api_for_each_object_type(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_sf_connection(sandbox, org)
    base = f"/api/v1/connections/{connection.pk}"
    company = assert_envelope_ok(
        api.post(f"{base}/companies", {"name": "Acme Widgets", "domain": "widgets.test"}), 201
    )
    assert company["id"].startswith("001")
    contact = assert_envelope_ok(
        api.post(
            f"{base}/contacts",
            {
                "first_name": "Grace",
                "last_name": "Hopper",
                "email": "grace@widgets.test",
                "company_id": company["id"],
                "properties": {"Favorite_Color__c": "teal"},
            },
        ),
        201,
    )
    assert contact["id"].startswith("003")
    assert contact["company_id"] == company["id"]
    deal = assert_envelope_ok(
        api.post(
            f"{base}/deals",
            {
                "name": "Big one",
                "stage": "Prospecting",
                "close_date": "2026-12-31",
                "amount": "1200.50",
                "company_id": company["id"],
            },
        ),
        201,
    )
    assert deal["id"].startswith("006")
    got = assert_envelope_ok(api.get(f"{base}/contacts/{contact['id']}"))
    assert got["email"] == "grace@widgets.test"
    assert got["properties"]["Favorite_Color__c"] == "teal"
    updated = assert_envelope_ok(
        patch(api, f"{base}/contacts/{contact['id']}", {"job_title": "Admiral"})
    )
    assert updated["job_title"] == "Admiral"
    found = assert_envelope_ok(
        api.post(
            f"{base}/contacts/search",
            {
                "filter_groups": [
                    [{"field": "email", "operator": "eq", "value": "grace@widgets.test"}]
                ]
            },
        )
    )
    assert [r["id"] for r in found["results"]] == [contact["id"]]
    for plural, record in (("contacts", contact), ("deals", deal), ("companies", company)):
        assert_envelope_ok(api.delete(f"{base}/{plural}/{record['id']}"))
        assert_envelope_error(api.get(f"{base}/{plural}/{record['id']}"), 404, "not_found")
    connection.refresh_from_db()
    assert connection.api_budget_used is not None
    assert connection.api_budget_limit


def test_a_batch_of_450_contacts_takes_three_collection_calls(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_sf_connection(sandbox, org)
    items: list[dict[str, Any]] = [
        {"last_name": f"Person {n}", "email": f"p{n}@example.com"} for n in range(450)
    ]
    items[7] = {"email": "no-last-name@example.com"}  # LastName is required
    result = assert_envelope_ok(
        api.post(f"/api/v1/connections/{connection.pk}/contacts/batch", {"create": items})
    )
    assert len(result["results"]) == 449
    assert [e["index"] for e in result["errors"]] == [7]
    assert result["errors"][0]["code"] == "validation_failed"
    requests = sandbox.counters()["requests"]
    composite = {
        k: v for k, v in requests.items() if k.startswith("POST") and "composite/sobjects" in k
    }
    assert sum(composite.values()) == 3, requests


def test_an_expired_session_is_refreshed_once_mid_run(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_sf_connection(sandbox, org)
    base = f"/api/v1/connections/{connection.pk}/contacts"
    assert_envelope_ok(api.post(base, {"last_name": "Before"}), 201)
    old = connection.access_token
    sandbox.sf_expire_tokens()
    assert_envelope_ok(api.post(base, {"last_name": "After"}), 201)
    connection.refresh_from_db()
    assert connection.access_token != old
    assert connection.last_refreshed_at is not None
    assert sandbox.counters()["token_grants"].get("salesforce:refresh_token") == 1
    assert_envelope_ok(api.get(base, {"limit": 10}))
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ACTIVE


def test_a_revoked_refresh_token_needs_reauth(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_sf_connection(sandbox, org)
    sandbox.sf_revoke_tokens()
    response = api.get(f"/api/v1/connections/{connection.pk}/contacts")
    assert_envelope_error(response, 409, "reauth_required")
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.NEEDS_REAUTH


def test_the_same_request_gives_the_same_shape_on_both_providers(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    hubspot = make_hubspot_connection(sandbox, org)
    salesforce = make_sf_connection(sandbox, org)
    body = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@engines.test",
        "phone": "+44 20 1234",
    }
    answers = [
        assert_envelope_ok(api.post(f"/api/v1/connections/{c.pk}/contacts", body), 201)
        for c in (hubspot, salesforce)
    ]
    assert set(answers[0]) == set(answers[1])
    for field in ("first_name", "last_name", "email", "phone", "object_type", "archived"):
        assert answers[0][field] == answers[1][field], field
    listed = [
        assert_envelope_ok(api.get(f"/api/v1/connections/{c.pk}/contacts", {"limit": 5}))
        for c in (hubspot, salesforce)
    ]
    assert set(listed[0]) == set(listed[1])
    assert set(listed[0]["results"][0]) == set(listed[1]["results"][0])
