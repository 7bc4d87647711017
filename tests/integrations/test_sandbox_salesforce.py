"""The Salesforce sandbox over real HTTP(S): OAuth with PKCE on every login host, the identity URL,
revocation, and the REST API through simple-salesforce itself (CRUD, describe, SOQL with paging,
sObject Collections, limits, errors, the Sforce-Limit-Info header), faults and counters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import signal
import ssl
import sys
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
from django.core.management import CommandError, call_command
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from integrations.sandbox.salesforce import ids
from tests.processes import free_port, spawn, stop, tail
from tests.sandbox_fixtures import (
    SF_API_VERSION,
    SF_CLIENT_ID,
    SF_CLIENT_SECRET,
    SF_REDIRECT_URI,
    Sandbox,
)

pytestmark = pytest.mark.live

VERIFIER = "v" * 64
CHALLENGE = "w1TpKUdYE9hUAcNSeeSRFioHDxfUxuHho_JHAfZ_vDM"  # S256 of VERIFIER, base64url
SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
TOKEN_FIELDS = {
    "access_token",
    "refresh_token",
    "signature",
    "scope",
    "instance_url",
    "id",
    "token_type",
    "issued_at",
}


class Form(HTMLParser):
    """The inputs and buttons of a page, as Playwright would target them."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.buttons: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "input":
            self.inputs.append(dict(attrs))
        elif tag == "button":
            self.buttons.append(dict(attrs))


def login_hosts(sandbox: Sandbox) -> dict[str, str]:
    return {
        "login": sandbox.sf_login_url,
        "test": sandbox.sf_test_url,
        "mydomain": sandbox.sf_my_domain_url("acme--dev.sandbox.my.salesforce.com"),
    }


def authorize_url(login: str, **params: str) -> str:
    query = {
        "response_type": "code",
        "client_id": SF_CLIENT_ID,
        "redirect_uri": SF_REDIRECT_URI,
        "scope": "api refresh_token id",
        "state": "s-1",
    } | params
    return str(httpx.URL(f"{login}/services/oauth2/authorize", params=query))


def refresh(sandbox: Sandbox, token: str, login: str | None = None) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": SF_CLIENT_ID,
        "client_secret": SF_CLIENT_SECRET,
    }
    return sandbox.http.post(f"{login or sandbox.sf_login_url}/services/oauth2/token", data=form)


def content(exc: pytest.ExceptionInfo[SalesforceError]) -> list[dict[str, Any]]:
    """The error array simple-salesforce keeps on its exception."""
    body: Any = exc.value.content
    assert isinstance(body, list), body
    return body


def org_ids(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {o["key"]: o for o in sandbox.sf_orgs()}


# --- OAuth -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["login", "test", "mydomain"])
def test_authorize_page_offers_both_orgs_and_allow_or_deny(sandbox: Sandbox, host: str) -> None:
    page = sandbox.http.get(authorize_url(login_hosts(sandbox)[host]))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    form = Form()
    form.feed(page.text)
    radios = [i for i in form.inputs if i.get("name") == "org" and i.get("type") == "radio"]
    assert [r["value"] for r in radios] == ["acme", "globex"]
    assert "checked" in radios[0]  # Allow straight away connects the first org
    assert sorted((b.get("name"), b.get("value")) for b in form.buttons) == [
        ("decision", "allow"),
        ("decision", "deny"),
    ]
    assert "Acme Corp (sandbox)" in page.text
    assert "admin@acme-sandbox.test" in page.text
    assert "<script" not in page.text


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "someone-else"},
        {"redirect_uri": "https://evil.example.com/callback"},
        {"redirect_uri": "javascript:alert(1)"},
        {"code_challenge": "abc", "code_challenge_method": "plain"},
    ],
)
def test_authorize_refuses_bad_requests_without_redirecting(
    sandbox: Sandbox, params: dict[str, str]
) -> None:
    for method in ("GET", "POST"):
        response = sandbox.http.request(
            method,
            authorize_url(sandbox.sf_test_url, **params),
            data={"org": "acme", "decision": "allow"},
        )
        assert response.status_code == 400
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")


def test_my_domain_hosts_must_look_like_salesforce_ones(sandbox: Sandbox) -> None:
    for domain in ("acme.my.salesforce.com", "acme--uat.sandbox.my.salesforce.com"):
        page = sandbox.http.get(authorize_url(sandbox.sf_my_domain_url(domain)))
        assert page.status_code == 200, domain
    for domain in ("evil.example.com", "my.salesforce.com", "acme.salesforce.com.evil.test"):
        page = sandbox.http.get(authorize_url(sandbox.sf_my_domain_url(domain)))
        assert page.status_code == 404, domain


def test_deny_redirects_back_with_access_denied_and_state(sandbox: Sandbox) -> None:
    response = sandbox.http.post(
        authorize_url(sandbox.sf_login_url), data={"org": "acme", "decision": "deny"}
    )
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(SF_REDIRECT_URI + "?")
    assert "error_description=end-user+denied+authorization" in location
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["s-1"]
    assert "code" not in query


@pytest.mark.parametrize("host", ["login", "test", "mydomain"])
def test_code_flow_with_pkce_answers_salesforce_token_fields(sandbox: Sandbox, host: str) -> None:
    login = login_hosts(sandbox)[host]
    code = sandbox.sf_authorize_code(
        org="globex", login_url=login, code_challenge=CHALLENGE, code_challenge_method="S256"
    )
    assert code.endswith("==")  # Salesforce's codes need URL-decoding
    before = int(time.time() * 1000)
    answer = sandbox.sf_exchange_code(code, login_url=login, code_verifier=VERIFIER)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == TOKEN_FIELDS  # no expires_in: Salesforce sends none
    globex = org_ids(sandbox)["globex"]
    assert body["id"] == f"{login}/id/{globex['id']}/{globex['user_id']}"
    assert body["instance_url"] == sandbox.sf_instance_url
    assert body["instance_url"].startswith("https://127.0.0.1:")
    assert (body["token_type"], body["scope"]) == ("Bearer", "api refresh_token id")
    assert before - 1000 <= int(body["issued_at"]) <= int(time.time() * 1000)
    assert body["access_token"].startswith(globex["id15"] + "!")
    mac = hmac.new(
        SF_CLIENT_SECRET.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    )
    assert body["signature"] == base64.b64encode(mac.digest()).decode()
    again = sandbox.sf_exchange_code(code, login_url=login, code_verifier=VERIFIER)
    assert (again.status_code, again.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "invalid authorization code"},
    )
    assert sandbox.counters()["token_grants"]["salesforce:authorization_code"] == 1


def test_token_endpoint_checks_client_redirect_uri_host_and_verifier(sandbox: Sandbox) -> None:
    code = sandbox.sf_authorize_code(
        login_url=sandbox.sf_test_url, code_challenge=CHALLENGE, code_challenge_method="S256"
    )

    def exchange(**extra: str) -> tuple[int, dict[str, Any]]:
        answer = sandbox.sf_exchange_code(code, login_url=sandbox.sf_test_url, **extra)
        return answer.status_code, answer.json()

    def refused(error: str, description: str) -> tuple[int, dict[str, str]]:
        return 400, {"error": error, "error_description": description}

    assert exchange(code_verifier=VERIFIER, redirect_uri="http://127.0.0.1/other") == refused(
        "redirect_uri_mismatch", "redirect_uri must match configuration"
    )
    assert exchange() == refused("invalid_grant", "invalid code verifier")
    assert exchange(code_verifier="w" * 64) == refused("invalid_request", "invalid code verifier")
    assert exchange(code_verifier=VERIFIER, client_secret="nope") == refused(
        "invalid_client", "invalid client credentials"
    )
    assert exchange(code_verifier=VERIFIER, client_id="nope") == refused(
        "invalid_client_id", "client identifier invalid"
    )
    assert exchange(code_verifier=VERIFIER, grant_type="password") == refused(
        "unsupported_grant_type", "grant type not supported"
    )
    elsewhere = sandbox.sf_exchange_code(code, code_verifier=VERIFIER)  # production host
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (400, "invalid_grant")
    status, body = exchange(code_verifier=VERIFIER)  # the refusals did not spend the code
    assert status == 200, body
    sandbox.sf_config(code_ttl=0)
    stale = sandbox.sf_authorize_code()
    assert sandbox.sf_exchange_code(stale).json() == {
        "error": "invalid_grant",
        "error_description": "expired authorization code",
    }


def test_a_code_without_pkce_needs_no_verifier_and_basic_auth_works(sandbox: Sandbox) -> None:
    code = sandbox.sf_authorize_code()
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": SF_REDIRECT_URI}
    answer = sandbox.http.post(
        f"{sandbox.sf_login_url}/services/oauth2/token",
        data=form,
        auth=(SF_CLIENT_ID, SF_CLIENT_SECRET),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["refresh_token"]


def test_no_refresh_token_without_the_refresh_token_scope(sandbox: Sandbox) -> None:
    code = sandbox.sf_authorize_code(scope="api id")
    body = sandbox.sf_exchange_code(code).json()
    assert "refresh_token" not in body
    assert body["scope"] == "api id"


def test_refresh_keeps_the_refresh_token_unless_rotation_is_configured(sandbox: Sandbox) -> None:
    first = sandbox.sf_exchange_code(sandbox.sf_authorize_code()).json()
    renewed = refresh(sandbox, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    assert set(body) == TOKEN_FIELDS - {"refresh_token"}
    assert body["access_token"] != first["access_token"]
    assert body["id"] == first["id"]
    # Both sessions work, and the same refresh token refreshes again.
    for token in (first["access_token"], body["access_token"]):
        assert sandbox.sf_client(token).query("SELECT Id FROM Contact")["totalSize"] == 0
    assert refresh(sandbox, first["refresh_token"]).status_code == 200
    sandbox.sf_config(rotate_refresh_tokens=True)
    rotated = refresh(sandbox, first["refresh_token"]).json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert refresh(sandbox, first["refresh_token"]).json() == {
        "error": "invalid_grant",
        "error_description": "expired access/refresh token",
    }
    grants = sandbox.counters()["token_grants"]
    assert grants["salesforce:authorization_code"] == 1
    assert grants["salesforce:refresh_token"] == 3
    assert (grants["authorization_code"], grants["refresh_token"]) == (0, 0)  # HubSpot's


def test_revoking_a_refresh_token_ends_its_sessions(sandbox: Sandbox) -> None:
    tokens = sandbox.sf_exchange_code(sandbox.sf_authorize_code()).json()
    other = sandbox.sf_mint_token("acme")
    revoke = f"{sandbox.sf_login_url}/services/oauth2/revoke"
    assert sandbox.http.post(revoke, data={"token": tokens["refresh_token"]}).status_code == 200
    with pytest.raises(SalesforceExpiredSession) as expired:
        sandbox.sf_client(tokens["access_token"]).Contact.create({"LastName": "Gone"})
    assert content(expired) == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert refresh(sandbox, tokens["refresh_token"]).json() == {
        "error": "invalid_grant",
        "error_description": "expired access/refresh token",
    }
    again = sandbox.http.post(revoke, data={"token": tokens["refresh_token"]})
    assert (again.status_code, again.json()["error"]) == (400, "invalid_token")
    # Revoking an access token ends that session only.
    assert sandbox.http.get(revoke, params={"token": other["access_token"]}).status_code == 200
    with pytest.raises(SalesforceExpiredSession):
        sandbox.sf_client(other["access_token"]).query("SELECT Id FROM Contact")
    assert refresh(sandbox, other["refresh_token"]).status_code == 200


def test_control_revocation_can_answer_authentication_failure(sandbox: Sandbox) -> None:
    tokens = sandbox.sf_mint_token("globex")
    assert sandbox.sf_revoke_tokens(tokens["refresh_token"], reason="authentication_failure") == 1
    assert refresh(sandbox, tokens["refresh_token"]).json() == {
        "error": "invalid_grant",
        "error_description": "authentication failure",
    }
    everyone = sandbox.sf_mint_token("acme", scope="api id")  # no refresh token
    assert sandbox.sf_revoke_tokens() == 0
    with pytest.raises(SalesforceExpiredSession):
        sandbox.sf_client(everyone["access_token"]).query("SELECT Id FROM Contact")


def test_identity_url_describes_the_user_and_org(sandbox: Sandbox) -> None:
    tokens = sandbox.sf_exchange_code(
        sandbox.sf_authorize_code(login_url=sandbox.sf_test_url), login_url=sandbox.sf_test_url
    ).json()
    acme = org_ids(sandbox)["acme"]
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    answer = sandbox.http.get(tokens["id"], headers=headers)
    assert answer.status_code == 200, answer.text
    who = answer.json()
    assert who["id"] == tokens["id"]
    assert tokens["id"].startswith(sandbox.sf_test_url + "/id/")
    assert (who["organization_id"], who["user_id"]) == (acme["id"], acme["user_id"])
    assert (who["username"], who["email"]) == ("admin@acme-sandbox.test",) * 2
    assert who["display_name"]
    assert who["nick_name"]
    assert (who["asserted_user"], who["active"], who["user_type"]) == (True, True, "STANDARD")
    assert who["urls"]["rest"] == f"{sandbox.sf_instance_url}/services/data/v62.0/"
    assert who["urls"]["sobjects"].endswith("/services/data/v62.0/sobjects/")
    assert who["language"]
    assert who["locale"]
    versioned = sandbox.http.get(tokens["id"], headers=headers, params={"version": "61.0"})
    assert versioned.json()["urls"]["query"].endswith("/services/data/v61.0/query/")
    short = f"{sandbox.sf_test_url}/id/{acme['id15']}/{acme['user_id'][:15]}"
    assert sandbox.http.get(short, params={"oauth_token": tokens["access_token"]}).is_success
    bad = sandbox.http.get(tokens["id"], headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.text) == (403, "Bad_OAuth_Token")
    globex = org_ids(sandbox)["globex"]
    other = f"{sandbox.sf_test_url}/id/{globex['id']}/{globex['user_id']}"
    assert sandbox.http.get(other, headers=headers).status_code == 403


def test_sandbox_settings_point_salesforce_at_the_sandbox(
    sandbox: Sandbox, sandbox_settings: Any
) -> None:
    provider = sandbox_settings.PROVIDERS["salesforce"]
    assert provider["client_id"] == SF_CLIENT_ID
    assert provider["client_secret"] == SF_CLIENT_SECRET
    assert provider["redirect_uri"] == SF_REDIRECT_URI
    assert provider["app_url"] == sandbox.sf_login_url == f"{sandbox.url}/salesforce/login"
    assert provider["sandbox_login_url"] == f"{sandbox.url}/salesforce/test"
    assert provider["my_domain_url"] == f"{sandbox.url}/salesforce/mydomain/{{domain}}"
    assert provider["api_version"] == "62.0"
    assert provider["ca_file"] == sandbox.ca_file == sandbox_settings.SWITCHBOARD_SANDBOX_CA_FILE
    assert sandbox_settings.PROVIDERS["hubspot"]["app_url"] == sandbox.hubspot_app_url
    with open(provider["ca_file"]) as pem:
        assert pem.read().startswith("-----BEGIN CERTIFICATE-----")
    login = provider["my_domain_url"].format(domain="acme.my.salesforce.com")
    code = sandbox.sf_authorize_code(login_url=login, redirect_uri=provider["redirect_uri"])
    form = {
        "grant_type": "authorization_code",
        "client_id": provider["client_id"],
        "client_secret": provider["client_secret"],
        "redirect_uri": provider["redirect_uri"],
        "code": code,
    }
    tokens = sandbox.http.post(f"{login}/services/oauth2/token", data=form).json()
    trust = ssl.create_default_context(cafile=provider["ca_file"])
    limits = httpx.get(
        f"{tokens['instance_url']}/services/data/v{provider['api_version']}/limits",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        verify=trust,
    )
    assert limits.status_code == 200


def test_the_instance_speaks_tls_with_the_sandbox_ca_only(sandbox: Sandbox) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{sandbox.sf_instance_url}/services/data")
    trust = ssl.create_default_context(cafile=sandbox.ca_file)
    port = urlsplit(sandbox.sf_instance_url).port
    for host in ("127.0.0.1", "localhost"):
        assert httpx.get(f"https://{host}:{port}/services/data", verify=trust).status_code == 200
    # The login hosts are not on the TLS listener's plain-HTTP twin, nor the API on HTTP.
    assert sandbox.http.get(f"{sandbox.url}/services/data").status_code == 404


# --- REST: records -----------------------------------------------------------------------------


def test_contact_crud_through_simple_salesforce(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    account = sf.Account.create({"Name": "Acme Widgets", "NumberOfEmployees": 12})
    assert account["success"] is True
    assert account["errors"] == []
    assert ids.normalize(account["id"]) == account["id"]
    assert account["id"].startswith("001")
    created = sf.Contact.create(
        {
            "FirstName": "Ada",
            "lastname": "Lovelace",  # field names are case-insensitive
            "Email": "ada@engines.test",
            "AccountId": account["id"][:15],  # the 15-character form is accepted
            "Favorite_Color__c": "green",
        }
    )
    contact_id = created["id"]
    assert contact_id.startswith("003")
    assert len(contact_id) == 18
    read = sf.Contact.get(contact_id)
    assert read["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v62.0/sobjects/Contact/{contact_id}",
    }
    assert read["Id"] == contact_id
    assert (read["Name"], read["LastName"], read["AccountId"]) == (
        "Ada Lovelace",
        "Lovelace",
        account["id"],
    )
    assert read["Favorite_Color__c"] == "green"
    assert read["Phone"] is None
    assert read["IsDeleted"] is False
    assert SF_DATETIME.match(read["CreatedDate"])
    assert read["OwnerId"] == read["CreatedById"] == org_ids(sandbox)["acme"]["user_id"]
    assert sf.Contact.get(contact_id[:15])["Id"] == contact_id
    assert sf.Contact.get(contact_id.lower())["Id"] == contact_id  # the suffix repairs case
    some = sf.Contact.get(contact_id, params={"fields": "lastname,Email"})
    assert list(some) == ["attributes", "LastName", "Email"]
    time.sleep(0.002)
    assert sf.Contact.update(contact_id, {"Title": "Countess", "FirstName": None}) == 204
    updated = sf.contact.get(contact_id)  # sObject names are case-insensitive too
    assert (updated["Title"], updated["FirstName"], updated["Name"]) == (
        "Countess",
        None,
        "Lovelace",
    )
    assert updated["LastModifiedDate"] > read["LastModifiedDate"]
    assert updated["CreatedDate"] == read["CreatedDate"]
    assert sf.Contact.delete(contact_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sf.Contact.get(contact_id)
    assert content(gone) == [
        {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}
    ]
    with pytest.raises(SalesforceResourceNotFound) as twice:
        sf.Contact.delete(contact_id)
    assert content(twice)[0]["errorCode"] == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.update(contact_id, {"Title": "Late"})


@pytest.mark.parametrize(
    ("sobject", "values", "code", "fields"),
    [
        ("Contact", {"FirstName": "No"}, "REQUIRED_FIELD_MISSING", ["LastName"]),
        (
            "Opportunity",
            {"Name": "Big", "Amount": 10},
            "REQUIRED_FIELD_MISSING",
            ["StageName", "CloseDate"],
        ),
        ("Contact", {"LastName": "X", "Foo__c": "1"}, "INVALID_FIELD", None),
        (
            "Account",
            {"Name": "A", "NumberOfEmployees": 12.5},
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            ["NumberOfEmployees"],
        ),
        (
            "Opportunity",
            {"Name": "D", "StageName": "Prospecting", "CloseDate": "next tuesday"},
            "JSON_PARSER_ERROR",
            None,
        ),
        (
            "Opportunity",
            {"Name": "D", "StageName": "Prospecting", "CloseDate": "2025-01-31", "Amount": "lots"},
            "JSON_PARSER_ERROR",
            None,
        ),
        ("Account", {"Name": "A", "Website": ["x"]}, "JSON_PARSER_ERROR", None),
        ("Contact", {"LastName": "X", "Email": "not-an-email"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
        ("Contact", {"LastName": "X" * 81}, "STRING_TOO_LONG", ["LastName"]),
        ("Contact", {"LastName": "X", "AccountId": "nope"}, "MALFORMED_ID", ["AccountId"]),
        (
            "Contact",
            {"LastName": "X", "AccountId": ids.make("001", 999)},
            "INVALID_CROSS_REFERENCE_KEY",
            ["AccountId"],
        ),
        (
            "Contact",
            {"LastName": "X", "AccountId": ids.make("003", 999)},
            "FIELD_INTEGRITY_EXCEPTION",
            ["AccountId"],
        ),
        (
            "Contact",
            {"LastName": "X", "CreatedDate": "2020-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["CreatedDate"],
        ),
        (
            "OpportunityContactRole",
            {"Role": "Evaluator"},
            "REQUIRED_FIELD_MISSING",
            ["OpportunityId", "ContactId"],
        ),
    ],
)
def test_invalid_writes_answer_salesforce_errors(
    sandbox: Sandbox, sobject: str, values: dict[str, Any], code: str, fields: list[str] | None
) -> None:
    sf = sandbox.sf_client()
    with pytest.raises(SalesforceMalformedRequest) as refused:
        getattr(sf, sobject).create(values)
    assert refused.value.status == 400
    [error] = content(refused)
    assert error["errorCode"] == code
    assert error["message"]
    assert error.get("fields") == fields
    assert sf.query(f"SELECT COUNT() FROM {sobject}")["totalSize"] == 0  # noqa: S608 - SOQL


def test_error_messages_read_as_salesforce_writes_them(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        sf.Contact.create({"LastName": "X", "Foo__c": 1})
    assert content(unknown) == [
        {
            "message": "No such column 'Foo__c' on sobject of type Contact",
            "errorCode": "INVALID_FIELD",
        }
    ]
    with pytest.raises(SalesforceMalformedRequest) as missing:
        sf.Contact.create({})
    assert content(missing) == [
        {
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName"],
        }
    ]
    contact = sf.Contact.create({"LastName": "Kept"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as cleared:
        sf.Contact.update(contact, {"LastName": ""})  # an empty string is null
    assert content(cleared)[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    with pytest.raises(SalesforceMalformedRequest) as bad_json:
        sf.restful(f"sobjects/Contact/{contact}", method="PATCH", data="{not json")
    assert content(bad_json)[0]["errorCode"] == "JSON_PARSER_ERROR"
    with pytest.raises(SalesforceMalformedRequest) as wrong_type:
        sf.Account.get(contact)
    assert content(wrong_type) == [
        {
            "message": f"Account ID: id value of incorrect type: {contact}",
            "errorCode": "MALFORMED_ID",
            "fields": ["Id"],
        }
    ]
    with pytest.raises(SalesforceResourceNotFound) as garbage:
        sf.Contact.get("not-an-id")
    assert "not-an-id" in content(garbage)[0]["message"]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.create({"LastName": "X"})


def test_records_belong_to_the_token_org(sandbox: Sandbox) -> None:
    acme, globex = sandbox.sf_client(org="acme"), sandbox.sf_client(org="globex")
    made = acme.Account.create({"Name": "Acme only"})["id"]
    assert acme.Account.get(made)["Name"] == "Acme only"
    with pytest.raises(SalesforceResourceNotFound):
        globex.Account.get(made)
    assert globex.query("SELECT Id FROM Account")["totalSize"] == 0
    with pytest.raises(SalesforceMalformedRequest) as cross:
        globex.Contact.create({"LastName": "X", "AccountId": made})
    assert content(cross)[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_organization_reads_and_refuses_writes(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client(org="globex")
    globex = org_ids(sandbox)["globex"]
    org = sf.Organization.get(globex["id"])
    assert (org["Id"], org["Name"], org["IsSandbox"]) == (globex["id"], "Globex (sandbox)", True)
    rows = sf.query("SELECT Id, Name, OrganizationType FROM Organization")["records"]
    assert [(r["Id"], r["Name"]) for r in rows] == [(globex["id"], "Globex (sandbox)")]
    with pytest.raises(SalesforceError) as refused:
        sf.Organization.create({"Name": "Mine"})
    assert refused.value.status == 405
    assert content(refused)[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_contact_roles_and_cascading_deletes(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    account = sf.Account.create({"Name": "Initech"})["id"]
    contact = sf.Contact.create({"LastName": "Lumbergh", "AccountId": account})["id"]
    deal = sf.Opportunity.create(
        {
            "Name": "TPS",
            "StageName": "Closed Won",
            "CloseDate": "2025-03-31",
            "Amount": "1500.5",
            "AccountId": account,
        }
    )["id"]
    role = sf.OpportunityContactRole.create(
        {"OpportunityId": deal, "ContactId": contact, "Role": "Decision Maker"}
    )["id"]
    assert role.startswith("00K")
    opportunity = sf.Opportunity.get(deal)
    assert (opportunity["Amount"], opportunity["CloseDate"]) == (1500.5, "2025-03-31")
    assert (opportunity["IsClosed"], opportunity["IsWon"]) == (True, True)
    assert sf.OpportunityContactRole.get(role)["IsPrimary"] is False
    with pytest.raises(SalesforceMalformedRequest) as fixed:
        sf.OpportunityContactRole.update(role, {"OpportunityId": deal})
    assert content(fixed)[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    sf.Account.delete(account)  # contacts, opportunities and their roles go with it
    everything = sf.query_all("SELECT Id, IsDeleted FROM Contact", include_deleted=True)
    everything = everything["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in everything] == [(contact, True)]
    roles = sf.query_all(
        "SELECT Id FROM OpportunityContactRole WHERE IsDeleted = TRUE", include_deleted=True
    )
    assert [r["Id"] for r in roles["records"]] == [role]
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 0


def test_describe_reports_fields_as_salesforce_does(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    described = sf.Contact.describe()
    assert (described["name"], described["keyPrefix"], described["createable"]) == (
        "Contact",
        "003",
        True,
    )
    fields = {f["name"]: f for f in described["fields"]}
    assert {"Id", "FirstName", "LastName", "Email", "Phone", "Title", "AccountId"} <= set(fields)
    assert {"CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted"} <= set(fields)
    last = fields["LastName"]
    assert (last["type"], last["nillable"], last["createable"], last["defaultedOnCreate"]) == (
        "string",
        False,
        True,
        False,
    )
    assert (fields["Id"]["type"], fields["Id"]["createable"]) == ("id", False)
    assert fields["AccountId"]["referenceTo"] == ["Account"]
    assert fields["AccountId"]["relationshipName"] == "Account"
    assert (fields["Favorite_Color__c"]["custom"], fields["Email"]["type"]) == (True, "email")
    assert fields["CreatedDate"]["type"] == "datetime"
    assert fields["CreatedDate"]["updateable"] is False
    account = {f["name"]: f for f in sf.Account.describe()["fields"]}
    assert (account["NumberOfEmployees"]["type"], account["Name"]["nillable"]) == ("int", False)
    deal = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert (deal["Amount"]["type"], deal["CloseDate"]["type"]) == ("currency", "date")
    assert "Closed Won" in [v["value"] for v in deal["StageName"]["picklistValues"]]
    role = {f["name"]: f for f in sf.OpportunityContactRole.describe()["fields"]}
    assert (role["IsPrimary"]["type"], role["ContactId"]["nillable"]) == ("boolean", False)
    names = {s["name"] for s in sf.describe()["sobjects"]}
    assert names == {
        "Account",
        "Contact",
        "Opportunity",
        "OpportunityContactRole",
        "Task",
        "Note",
        "Organization",
    }
    assert sf.Contact.metadata()["objectDescribe"]["keyPrefix"] == "003"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.describe()


# --- REST: SOQL ---------------------------------------------------------------------------------


@pytest.fixture
def people(sandbox: Sandbox) -> Any:
    sf = sandbox.sf_client()
    account = sf.Account.create({"Name": "Engines Ltd", "Industry": "Technology"})["id"]
    rows = [
        ("Ada", "Lovelace", "ada@engines.test", "1815-12-10", account),
        ("Charles", "Babbage", "charles@engines.test", "1791-12-26", account),
        ("Grace", "Hopper", None, "1906-12-09", None),
        (None, "O'Neil", "oneil@example.com", None, None),
    ]
    for first, last, email, born, company in rows:
        sf.Contact.create(
            {
                "FirstName": first,
                "LastName": last,
                "Email": email,
                "Birthdate": born,
                "AccountId": company,
            }
        )
    return sf


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("LastName = 'hopper'", ["Hopper"]),  # text comparisons ignore case
        ("LastName != 'Hopper'", ["Lovelace", "Babbage", "O'Neil"]),
        ("FirstName = null", ["O'Neil"]),
        ("FirstName != NULL", ["Lovelace", "Babbage", "Hopper"]),
        ("FirstName != 'Ada'", ["Babbage", "Hopper", "O'Neil"]),  # nulls included
        ("LastName = 'O\\'Neil'", ["O'Neil"]),
        ("Email LIKE '%@engines.test'", ["Lovelace", "Babbage"]),
        ("LastName LIKE 'h_pper'", ["Hopper"]),
        ("LastName IN ('Hopper', 'Babbage')", ["Babbage", "Hopper"]),
        ("LastName NOT IN ('Hopper', 'Babbage')", ["Lovelace", "O'Neil"]),
        ("Birthdate < 1900-01-01", ["Lovelace", "Babbage"]),
        ("Birthdate >= 1815-12-10 AND Birthdate <= 1906-12-09", ["Lovelace", "Hopper"]),
        ("(FirstName = 'Ada' OR FirstName = 'Grace') AND Email != null", ["Lovelace"]),
        ("NOT (LastName LIKE 'B%' OR LastName LIKE 'L%')", ["Hopper", "O'Neil"]),
        ("CreatedDate > 2000-01-01T00:00:00Z", ["Lovelace", "Babbage", "Hopper", "O'Neil"]),
        ("CreatedDate < 2000-01-01T00:00:00.000+01:00", []),
        ("IsDeleted = false AND AccountId != null", ["Lovelace", "Babbage"]),
    ],
)
def test_soql_where_clauses(people: Any, where: str, expected: list[str]) -> None:
    result = people.query(f"SELECT LastName FROM Contact WHERE {where}")  # noqa: S608
    assert result["done"] is True
    assert [r["LastName"] for r in result["records"]] == expected
    assert result["totalSize"] == len(expected)


def test_soql_select_order_limit_offset_and_count(people: Any) -> None:
    result = people.query(
        "select id, FIRSTNAME, lastname from contact order by firstname desc nulls last limit 3"
    )
    rows = result["records"]
    assert [list(r) for r in rows] == [["attributes", "Id", "FirstName", "LastName"]] * 3
    assert [r["FirstName"] for r in rows] == ["Grace", "Charles", "Ada"]
    assert rows[0]["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v62.0/sobjects/Contact/{rows[0]['Id']}",
    }
    nulls_first = people.query("SELECT FirstName FROM Contact ORDER BY FirstName")["records"]
    assert [r["FirstName"] for r in nulls_first] == [None, "Ada", "Charles", "Grace"]
    paged = people.query(
        "SELECT LastName FROM Contact ORDER BY Birthdate DESC NULLS LAST, LastName LIMIT 2 OFFSET 1"
    )
    assert [r["LastName"] for r in paged["records"]] == ["Lovelace", "Babbage"]
    assert people.query("SELECT COUNT() FROM Contact WHERE Email != null") == {
        "totalSize": 3,
        "done": True,
        "records": [],
    }
    account = people.query("SELECT Id, Name, Industry FROM Account")["records"][0]
    by_id = people.query(f"SELECT Name FROM Account WHERE Id = '{account['Id'][:15]}'")  # noqa: S608
    assert by_id["records"][0]["Name"] == "Engines Ltd"
    in_clause = f"AccountId IN ('{account['Id']}')"
    linked = people.query(f"SELECT LastName FROM Contact WHERE {in_clause}")  # noqa: S608
    assert linked["totalSize"] == 2


@pytest.mark.parametrize(
    ("soql", "code", "detail"),
    [
        ("SELECT Id FORM Contact", "MALFORMED_QUERY", "unexpected token: FORM"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY", "unexpected token: <EOF>"),
        ("SELECT FROM Contact", "MALFORMED_QUERY", "unexpected token: FROM"),
        (
            "SELECT Id FROM Contact WHERE LastName = 'a' AND Email = 'b' OR Title = 'c'",
            "MALFORMED_QUERY",
            "unexpected token: OR",
        ),
        (
            "SELECT Id, Foo__c FROM Contact",
            "INVALID_FIELD",
            "No such column 'Foo__c' on entity 'Contact'",
        ),
        (
            "SELECT Account.Name FROM Contact",
            "INVALID_FIELD",
            "Didn't understand relationship 'Account'",
        ),
        ("SELECT Id FROM Lead", "INVALID_TYPE", "sObject type 'Lead' is not supported"),
        (
            "SELECT Id FROM Account WHERE NumberOfEmployees > '10'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "must be of type integer and should not be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Contact WHERE LastName = 10",
            "INVALID_QUERY_FILTER_OPERATOR",
            "must be of type string and should be enclosed in quotes",
        ),
        (
            "SELECT Id FROM Contact WHERE Id = 'nope'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: nope",
        ),
        (
            "SELECT Id FROM Contact WHERE CreatedDate > 2024-01-01",
            "INVALID_QUERY_FILTER_OPERATOR",
            "dateTime",
        ),
        ("SELECT Id, Id FROM Contact", "MALFORMED_QUERY", "duplicate field selected: Id"),
        ("SELECT Id FROM Contact OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "2000"),
    ],
)
def test_soql_errors(sandbox: Sandbox, soql: str, code: str, detail: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sandbox.sf_client().query(soql)
    [error] = content(refused)
    assert error["errorCode"] == code
    assert detail in error["message"]


def test_soql_errors_point_at_the_token(sandbox: Sandbox) -> None:
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sandbox.sf_client().query("SELECT Id, Nope FROM Contact")
    assert content(refused)[0]["message"] == (
        "\nSELECT Id, Nope FROM Contact\n           ^\nERROR at Row:1:Column:12\n"
        "No such column 'Nope' on entity 'Contact'. If you are attempting to use a custom field, "
        "be sure to append the '__c' after the custom field name. Please reference your WSDL or "
        "the describe call for the appropriate names."
    )


def test_query_pages_with_next_records_url_and_batch_size(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    for start in range(0, 450, 200):
        records = [
            {"attributes": {"type": "Contact"}, "LastName": f"P{n:04d}"}
            for n in range(start, min(start + 200, 450))
        ]
        results = sf.restful("composite/sobjects", method="POST", json={"records": records})
        assert all(r["success"] for r in results)
    soql = "SELECT Id, LastName FROM Contact ORDER BY LastName"
    small = {"Sforce-Query-Options": "batchSize=100"}  # below Salesforce's minimum of 200
    first = sf.query(soql, headers=small)
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    assert re.fullmatch(
        r"/services/data/v62\.0/query/01g[A-Za-z0-9]{15}-200", first["nextRecordsUrl"]
    )
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert (second["done"], second["records"][0]["LastName"]) == (False, "P0200")
    everything = sf.query_all(soql, headers=small)
    assert [r["LastName"] for r in everything["records"]] == [f"P{n:04d}" for n in range(450)]
    whole = sf.query(soql)  # 2,000 a batch by default
    assert (whole["done"], len(whole["records"]), "nextRecordsUrl" not in whole) == (
        True,
        450,
        True,
    )
    requests_made = sandbox.counters()["requests"]
    assert requests_made["GET /services/data/vXX.X/query/{locator}"] == 3
    assert requests_made["POST /services/data/vXX.X/composite/sobjects"] == 3
    stranger = sandbox.sf_client(org="globex")
    with pytest.raises(SalesforceMalformedRequest) as foreign:
        stranger.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert content(foreign)[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_all_includes_deleted_records(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    kept = sf.Contact.create({"LastName": "Kept"})["id"]
    dropped = sf.Contact.create({"LastName": "Dropped"})["id"]
    sf.Contact.delete(dropped)
    assert [r["Id"] for r in sf.query("SELECT Id FROM Contact")["records"]] == [kept]
    everything = sf.query_all(
        "SELECT Id, IsDeleted FROM Contact ORDER BY LastName", include_deleted=True
    )["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in everything] == [(dropped, True), (kept, False)]
    raw = sf.restful("queryAll", params={"q": "SELECT Id FROM Contact WHERE IsDeleted = true"})
    assert [r["Id"] for r in raw["records"]] == [dropped]


# --- REST: sObject Collections -------------------------------------------------------------------


def collection(*records: dict[str, Any], all_or_none: bool = False) -> dict[str, Any]:
    return {"allOrNone": all_or_none, "records": list(records)}


def test_collections_create_per_record_results(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json=collection(
            {"attributes": {"type": "Account"}, "Name": "Globex"},
            {"attributes": {"type": "Contact"}, "FirstName": "No last name"},
            {"attributes": {"type": "Contact"}, "LastName": "Scorpio"},
        ),
    )
    assert results[0]["success"] is True
    assert results[0]["id"].startswith("001")
    assert results[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName]",
                "fields": ["LastName"],
            }
        ],
    }
    assert results[2]["success"] is True
    assert results[2]["errors"] == []
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 1


def test_collections_all_or_none_writes_nothing_on_a_failure(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    results = sf.restful(
        "composite/sobjects",
        method="POST",
        json=collection(
            {"attributes": {"type": "Contact"}, "LastName": "Fine"},
            {"attributes": {"type": "Contact"}, "LastName": "Bad", "Email": "nope"},
            all_or_none=True,
        ),
    )
    assert [r["success"] for r in results] == [False, False]
    assert "id" not in results[0]
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_collections_take_at_most_200_records(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    records = [{"attributes": {"type": "Contact"}, "LastName": f"N{n}"} for n in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("composite/sobjects", method="POST", json=collection(*records))
    assert content(refused)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    ids_201 = ",".join(ids.make("003", n) for n in range(201))
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/sobjects", method="DELETE", params={"ids": ids_201})
    with pytest.raises(SalesforceMalformedRequest) as untyped:
        sf.restful("composite/sobjects", method="POST", json=collection({"LastName": "X"}))
    assert content(untyped)[0]["errorCode"] == "INVALID_TYPE"


def test_collections_update_retrieve_and_delete(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    made = [sf.Contact.create({"LastName": name})["id"] for name in ("One", "Two", "Three")]
    updated = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json=collection(
            {"attributes": {"type": "Contact"}, "id": made[0], "Title": "CEO"},
            {"attributes": {"type": "Contact"}, "Title": "No id"},
            {"attributes": {"type": "Contact"}, "id": made[1], "Email": "bad"},
        ),
    )
    assert updated[0] == {"id": made[0], "success": True, "errors": []}
    assert updated[1]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert updated[2]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    read = sf.restful(
        "composite/sobjects/Contact",
        params={"ids": f"{made[0]},{made[1]},{ids.make('003', 5)}", "fields": "LastName,Title"},
    )
    assert [(r["LastName"], r["Title"]) for r in read[:2]] == [("One", "CEO"), ("Two", None)]
    assert read[2] is None
    deleted = sf.restful(
        "composite/sobjects",
        method="DELETE",
        params={"ids": f"{made[0]},garbage,{made[2]}", "allOrNone": "false"},
    )
    assert [r["success"] for r in deleted] == [True, False, True]
    assert deleted[1]["errors"] == [
        {"statusCode": "MALFORMED_ID", "message": "malformed id garbage", "fields": []}
    ]
    rolled_back = sf.restful(
        "composite/sobjects",
        method="DELETE",
        params={"ids": f"{made[1]},{made[0]}", "allOrNone": "true"},
    )
    assert rolled_back[1]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    assert rolled_back[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert [r["LastName"] for r in sf.query("SELECT LastName FROM Contact")["records"]] == ["Two"]


# --- REST: limits, sessions, faults, counters -------------------------------------------------


def test_every_answer_reports_api_usage_and_the_limit_refuses(sandbox: Sandbox) -> None:
    sf = sandbox.sf_client()
    sf.query("SELECT Id FROM Contact")
    assert sf.api_usage["api-usage"].used == 1
    assert sf.api_usage["api-usage"].total == 15000
    contacts = sf.Contact
    contacts.create({"LastName": "Counted"})
    assert contacts.api_usage["api-usage"] == (2, 15000)
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 15000, "Remaining": 14997}
    assert {"DailyBulkApiBatches", "DataStorageMB"} <= set(limits)
    assert sandbox.sf_limits(daily=5)["used"] == {"acme": 3, "globex": 0}
    sf.query("SELECT Id FROM Contact")
    sf.query("SELECT Id FROM Contact")
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.query("SELECT Id FROM Contact")
    assert refused.value.status == 403
    assert content(refused) == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    answer = requests.get(
        f"{sandbox.sf_instance_url}/services/data/v62.0/limits",
        headers={"Authorization": f"Bearer {sf.session_id}"},
        verify=sandbox.ca_file,
        timeout=10,
    )
    assert (answer.status_code, answer.headers["Sforce-Limit-Info"]) == (403, "api-usage=5/5")
    globex = sandbox.sf_client(org="globex")  # each org has its own budget
    globex.query("SELECT Id FROM Contact")
    assert globex.api_usage["api-usage"] == (1, 5)
    sandbox.sf_limits(daily=15000, used=14999, org="globex")
    globex.query("SELECT Id FROM Contact")
    with pytest.raises(SalesforceRefusedRequest):
        globex.query("SELECT Id FROM Contact")
    counters = sandbox.counters()
    assert counters["rate_limited"] == 3
    assert counters["rate_limited_by_account"] == {"salesforce:acme": 2, "salesforce:globex": 1}


def test_an_expired_session_answers_401_until_refreshed(sandbox: Sandbox) -> None:
    tokens = sandbox.sf_mint_token("acme")
    sf = sandbox.sf_client(tokens["access_token"])
    sf.Contact.create({"LastName": "Before"})
    assert sandbox.sf_expire_tokens() == 1
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.query("SELECT Id FROM Contact")
    assert expired.value.status == 401
    assert content(expired) == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    renewed = refresh(sandbox, tokens["refresh_token"]).json()
    rows = sandbox.sf_client(renewed["access_token"]).query("SELECT LastName FROM Contact")
    assert [r["LastName"] for r in rows["records"]] == ["Before"]
    stranger: Any = Salesforce(
        instance_url=sandbox.sf_instance_url,
        session_id="00Dnot-a-session",
        version=SF_API_VERSION,
        session=sandbox.sf_session(),
    )
    with pytest.raises(SalesforceExpiredSession):
        stranger.query("SELECT Id FROM Contact")


def test_faults_apply_to_rest_calls_not_to_oauth(sandbox: Sandbox) -> None:
    tokens = sandbox.sf_mint_token()
    sf = sandbox.sf_client(tokens["access_token"])
    sandbox.faults(fail_next=2, fail_status=503)
    assert refresh(sandbox, tokens["refresh_token"]).status_code == 200  # OAuth is not faulted
    with pytest.raises(SalesforceGeneralError) as failed:
        sf.query("SELECT Id FROM Contact")
    assert failed.value.status == 503
    assert content(failed)[0]["errorCode"] == "SERVER_UNAVAILABLE"
    with pytest.raises(SalesforceGeneralError):
        sf.Contact.create({"LastName": "Lost"})
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0
    sandbox.faults(rate_limit_next=1)
    with pytest.raises(SalesforceRefusedRequest) as throttled:
        sf.query("SELECT Id FROM Contact")
    assert content(throttled)[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    sandbox.faults(timeout_next=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.query("SELECT Id FROM Contact", timeout=0.3)
    sandbox.faults(latency_ms=200)
    started = time.monotonic()
    sf.query("SELECT Id FROM Contact")
    assert time.monotonic() - started >= 0.2
    counters = sandbox.counters()
    # An injected refusal is a fault, not limit enforcement.
    assert (counters["faults_injected"], counters["rate_limited"]) == (4, 0)
    assert counters["faults_by_kind"] == {
        "fail": 2,
        "timeout": 1,
        "timeout_after": 0,
        "rate_limit": 1,
        "slow": 0,
    }


def test_counters_key_rest_calls_by_route_template(sandbox: Sandbox) -> None:
    code = sandbox.sf_authorize_code(login_url=sandbox.sf_test_url)
    tokens = sandbox.sf_exchange_code(code, login_url=sandbox.sf_test_url).json()
    sf = sandbox.sf_client(tokens["access_token"])
    sf.session.get(
        tokens["id"], headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    contact = sf.contact.create({"LastName": "Counted"})["id"]
    sf.Contact.get(contact)
    sf.Contact.get(contact[:15])
    sf.Contact.update(contact, {"Title": "Counter"})
    sf.Contact.describe()
    sf.query("SELECT Id FROM Contact")
    sf.query_all("SELECT Id FROM Contact", include_deleted=True)
    sf.restful("composite/sobjects", method="DELETE", params={"ids": contact})
    old: Any = Salesforce(
        instance_url=sandbox.sf_instance_url,
        session_id=tokens["access_token"],
        version="58.0",
        session=sandbox.sf_session(),
    )
    old.limits()
    counters = sandbox.counters()
    assert counters["requests"] == {
        "DELETE /services/data/vXX.X/composite/sobjects": 1,
        "GET /id/{id}/{id}": 1,
        "GET /services/data/vXX.X/limits": 1,
        "GET /services/data/vXX.X/query": 1,
        "GET /services/data/vXX.X/queryAll": 1,
        "GET /services/data/vXX.X/sobjects/Contact/describe": 1,
        "GET /services/data/vXX.X/sobjects/Contact/{id}": 2,
        "PATCH /services/data/vXX.X/sobjects/Contact/{id}": 1,
        "POST /services/data/vXX.X/sobjects/Contact": 1,
        "POST /services/oauth2/authorize": 1,
        "POST /services/oauth2/token": 1,
    }
    assert counters["total"] == 12
    assert counters["token_grants"] == {
        "authorization_code": 0,
        "refresh_token": 0,
        "salesforce:authorization_code": 1,
    }
    sandbox.reset()
    assert sandbox.counters()["total"] == 0
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Contact")  # reset forgets tokens


def test_versions_resources_and_unknown_paths(sandbox: Sandbox) -> None:
    session = sandbox.sf_session()
    base = f"{sandbox.sf_instance_url}/services/data"
    versions = session.get(base + "/", timeout=10).json()  # needs no session
    assert {"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"} in versions
    sf = sandbox.sf_client()
    resources = sf.restful("")
    assert resources["sobjects"] == "/services/data/v62.0/sobjects"
    assert resources["query"] == "/services/data/v62.0/query"
    assert resources["limits"] == "/services/data/v62.0/limits"
    headers = {"Authorization": f"Bearer {sf.session_id}"}
    for path, status, code in [
        ("/v62/sobjects", 404, "NOT_FOUND"),
        ("/v62.0/nothing/here", 404, "NOT_FOUND"),
        ("/v62.0/sobjects/Unknown__c/describe", 404, "NOT_FOUND"),
    ]:
        answer = session.get(base + path, headers=headers, timeout=10)
        assert (answer.status_code, answer.json()[0]["errorCode"]) == (status, code), path
        assert answer.headers["Sforce-Limit-Info"].startswith("api-usage=")
    contact = sf.Contact.create({"LastName": "Put"})["id"]
    put = session.put(f"{base}/v62.0/sobjects/Contact/{contact}", headers=headers, timeout=10)
    assert put.status_code == 405
    assert put.json() == [
        {
            "message": "HTTP Method 'PUT' not allowed. Allowed are DELETE,GET,HEAD,PATCH",
            "errorCode": "METHOD_NOT_ALLOWED",
        }
    ]
    unauthenticated = session.get(f"{base}/v62.0/limits", timeout=10)
    assert unauthenticated.status_code == 401


def test_control_api_refuses_bad_input(sandbox: Sandbox) -> None:
    base = f"{sandbox.url}/_sandbox/salesforce"
    assert sandbox.http.post(f"{base}/tokens", json={"org": "initech"}).status_code == 404
    assert sandbox.http.post(f"{base}/tokens", json={"host": "evil.test"}).status_code == 400
    assert sandbox.http.post(f"{base}/limits", json={"daily": 0}).status_code == 400
    assert sandbox.http.post(f"{base}/limits", json={"per_10s": 5}).status_code == 400
    assert sandbox.http.post(f"{base}/tokens/revoke", json={"reason": "x"}).status_code == 400
    assert (
        sandbox.http.post(f"{base}/tokens/revoke", json={"refresh_token": "x"}).status_code == 404
    )
    assert sandbox.http.post(f"{base}/config", json={"nope": 1}).status_code == 400
    assert sandbox.sf_config(access_token_ttl=60)["access_token_ttl"] == 60
    assert sandbox.sf_mint_token(host="test")["id"].startswith(sandbox.sf_test_url + "/id/00D")
    orgs = sandbox.sf_orgs()
    assert [(o["key"], o["name"]) for o in orgs] == [
        ("acme", "Acme Corp (sandbox)"),
        ("globex", "Globex (sandbox)"),
    ]
    assert all(ids.normalize(o["id15"]) == o["id"] and o["id"].startswith("00D") for o in orgs)
    assert all(o["user_id"].startswith("005") for o in orgs)


# --- ids and the command -------------------------------------------------------------------------


def test_ids_are_case_safe() -> None:
    assert ids.normalize("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert ids.normalize("001a0000006vm9riac") == "001A0000006Vm9rIAC"
    assert ids.normalize("001A0000006Vm9rIAD") is None
    assert ids.normalize("001A0000006Vm9") is None
    made = ids.make("003", 123_456)
    assert (len(made), made[:3], ids.normalize(made[:15])) == (18, "003", made)
    assert ids.make("003", 1) != ids.make("003", 2)


def test_the_command_refuses_bad_ports() -> None:
    with pytest.raises(CommandError, match="must differ"):
        call_command("sandbox", port=8400, tls_port=8400)
    with pytest.raises(CommandError, match="loopback only"):
        call_command("sandbox", host="0.0.0.0", port=8400)  # noqa: S104 - the point of the test


def _start_sandbox(tmp_path: Path, name: str) -> tuple[Any, Sandbox, Path]:
    port, tls_port = free_port(), free_port()
    ca_file = tmp_path / name / "nested" / "ca.pem"  # the command makes the directories
    log = tmp_path / f"{name}.log"
    command = [sys.executable, "manage.py", "sandbox", "--port", str(port)]
    command += ["--tls-port", str(tls_port), "--ca-file", str(ca_file)]
    env = dict(os.environ) | {"SWITCHBOARD_VAR_DIR": str(tmp_path / name / "var")}
    proc = spawn(command, env=env, log=log)
    box = Sandbox(f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}", str(ca_file))
    return proc, box, log


def _wait_for_instance(proc: Any, box: Sandbox, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, tail(log)
        assert time.monotonic() < deadline, tail(log)
        try:
            if (
                Path(box.ca_file).exists()
                and box.sf_session().get(f"{box.sf_instance_url}/services/data", timeout=1).ok
            ):
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)


def test_both_listeners_stop_within_two_seconds_even_holding_a_request(tmp_path: Path) -> None:
    """SIGTERM stops one sandbox, SIGINT another (started side by side), each holding a request."""
    started = {sig: _start_sandbox(tmp_path, sig.name) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for proc, box, log in started.values():
            _wait_for_instance(proc, box, log)
        _signal_each(started)
    finally:
        for proc, box, _ in started.values():
            box.close()
            if proc.poll() is None:
                stop(proc, grace=5)


def _signal_each(started: dict[signal.Signals, Any]) -> None:
    for sig, (proc, box, _) in started.items():
        sf = box.sf_client()
        box.faults(timeout_next=1, timeout_seconds=60)
        outcome: list[BaseException] = []

        def held_query(sf: Salesforce = sf, outcome: list[BaseException] = outcome) -> None:
            try:
                sf.query("SELECT Id FROM Contact", timeout=30)
            except (requests.RequestException, SalesforceError) as exc:
                outcome.append(exc)

        held = threading.Thread(target=held_query, daemon=True)
        held.start()
        time.sleep(0.3)  # the request is being held
        assert box.counters()["faults_injected"] == 1
        signalled = time.monotonic()
        os.kill(proc.pid, sig)
        proc.wait(timeout=5)
        assert time.monotonic() - signalled < 2.0, sig
        held.join(timeout=5)
        assert not held.is_alive()
        assert outcome, sig  # the held request got no answer but a failure
