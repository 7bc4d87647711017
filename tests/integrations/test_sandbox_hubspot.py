"""The HubSpot sandbox over real HTTP: OAuth, CRM v3, v4 associations, limits, faults, counters.

Every CRM answer is also read through hubspot-api-client's own models, so the SDK that
Switchboard uses in production deserialises what the sandbox says.
"""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core.management import CommandError, call_command
from hubspot import HubSpot, oauth
from hubspot.crm import companies, contacts
from hubspot.crm import deals as deals_sdk
from hubspot.crm.associations import v4
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from urllib3.util.retry import Retry

from tests.sandbox_fixtures import (
    ACME_HUB_ID,
    DEFAULT_REDIRECT_URI,
    GLOBEX_HUB_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    Sandbox,
)

pytestmark = pytest.mark.live

# Each SDK package raises its own ApiException class.
ApiException = (
    contacts.ApiException,
    companies.ApiException,
    deals_sdk.ApiException,
    v4.ApiException,
    oauth.ApiException,
)


def sdk(sandbox: Sandbox, access_token: str | None = None) -> Any:
    # urllib3 would otherwise retry idempotent calls answered 429/503 with Retry-After.
    return HubSpot(access_token=access_token, host=sandbox.hubspot_api_url, retry=Retry(total=0))


def bearer(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


def api(sandbox: Sandbox, path: str) -> str:
    return f"{sandbox.hubspot_api_url}{path}"


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


# --- OAuth -------------------------------------------------------------------------------------


def authorize_url(sandbox: Sandbox, **params: str) -> str:
    query = {
        "client_id": SANDBOX_CLIENT_ID,
        "redirect_uri": DEFAULT_REDIRECT_URI,
        "scope": "oauth crm.objects.contacts.read",
        "optional_scope": "crm.objects.deals.read",
        "state": "s-1",
    } | params
    return str(httpx.URL(f"{sandbox.hubspot_app_url}/oauth/authorize", params=query))


def test_authorize_page_offers_both_portals_and_allow_or_deny(sandbox: Sandbox) -> None:
    page = sandbox.http.get(authorize_url(sandbox))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    form = Form()
    form.feed(page.text)
    portals = [i for i in form.inputs if i.get("name") == "portal" and i.get("type") == "radio"]
    assert [p["value"] for p in portals] == [str(ACME_HUB_ID), str(GLOBEX_HUB_ID)]
    assert sorted((b.get("name"), b.get("value")) for b in form.buttons) == [
        ("decision", "allow"),
        ("decision", "deny"),
    ]
    assert "acme-sandbox.hubspot.test" in page.text
    assert "crm.objects.deals.read" in page.text
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
            method, authorize_url(sandbox, **params), data={"decision": "allow"}
        )
        assert response.status_code == 400
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")


def test_deny_redirects_back_with_access_denied_and_state(sandbox: Sandbox) -> None:
    response = sandbox.http.post(
        authorize_url(sandbox), data={"portal": "62515", "decision": "deny"}
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == DEFAULT_REDIRECT_URI
    assert query["error"] == ["access_denied"]
    assert query["error_description"][0]
    assert query["state"] == ["s-1"]
    assert "code" not in query


def test_code_flow_issues_tokens_once_per_code(sandbox: Sandbox) -> None:
    code = sandbox.authorize_code(portal=GLOBEX_HUB_ID)
    answer = sandbox.exchange_code(code)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] in (1799, 1800)
    assert body["access_token"]
    assert body["refresh_token"]
    assert body["hub_id"] == GLOBEX_HUB_ID
    again = sandbox.exchange_code(code)
    assert again.status_code == 400
    error = again.json()
    assert error["status"] == "BAD_AUTH_CODE"
    assert error["error"] == "invalid_grant"
    assert error["message"]
    assert error["correlationId"]
    assert sandbox.counters()["token_grants"] == {"authorization_code": 1, "refresh_token": 0}


def test_token_endpoint_checks_redirect_uri_client_and_grant(sandbox: Sandbox) -> None:
    code = sandbox.authorize_code()
    wrong = sandbox.exchange_code(code, redirect_uri="http://127.0.0.1/elsewhere")
    assert (wrong.status_code, wrong.json()["status"]) == (400, "BAD_REDIRECT_URI")
    secret = sandbox.exchange_code(code, client_secret="nope")
    assert (secret.status_code, secret.json()["status"]) == (400, "BAD_CLIENT_SECRET")
    client = sandbox.exchange_code(code, client_id="nope")
    assert (client.status_code, client.json()["status"]) == (400, "BAD_CLIENT_ID")
    grant = sandbox.exchange_code(code, grant_type="password")
    assert (grant.status_code, grant.json()["status"]) == (400, "BAD_GRANT_TYPE")
    assert sandbox.exchange_code(code).status_code == 200  # refusals did not spend the code


def test_pkce_verifier_is_checked(sandbox: Sandbox) -> None:
    verifier = "v" * 64
    challenge = "w1TpKUdYE9hUAcNSeeSRFioHDxfUxuHho_JHAfZ_vDM"  # S256 of verifier, base64url
    code = sandbox.authorize_code(code_challenge=challenge, code_challenge_method="S256")
    assert sandbox.exchange_code(code).json()["status"] == "BAD_CODE_VERIFIER"
    assert sandbox.exchange_code(code, code_verifier="w" * 64).status_code == 400
    assert sandbox.exchange_code(code, code_verifier=verifier).status_code == 200


def test_refresh_rotates_the_refresh_token(sandbox: Sandbox) -> None:
    first = sandbox.exchange_code(sandbox.authorize_code()).json()
    client = sdk(sandbox)
    second = client.oauth.tokens_api.create(
        grant_type="refresh_token",
        refresh_token=first["refresh_token"],
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
    )
    assert second.token_type == "bearer"
    assert second.expires_in in (1799, 1800)
    assert second.refresh_token != first["refresh_token"]
    assert second.access_token != first["access_token"]
    with pytest.raises(ApiException) as refused:
        client.oauth.tokens_api.create(
            grant_type="refresh_token",
            refresh_token=first["refresh_token"],
            client_id=SANDBOX_CLIENT_ID,
            client_secret=SANDBOX_CLIENT_SECRET,
        )
    assert refused.value.status == 400
    assert json.loads(refused.value.body)["status"] == "BAD_REFRESH_TOKEN"
    contacts = sdk(sandbox, second.access_token).crm.contacts.basic_api.get_page()
    assert contacts.results == []
    assert sandbox.counters()["token_grants"] == {"authorization_code": 1, "refresh_token": 1}


def test_code_exchange_and_token_info_through_the_sdk(sandbox: Sandbox) -> None:
    client = sdk(sandbox)
    tokens = client.oauth.tokens_api.create(
        grant_type="authorization_code",
        code=sandbox.authorize_code(),
        redirect_uri=DEFAULT_REDIRECT_URI,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
    )
    info = client.oauth.access_tokens_api.get(tokens.access_token)
    assert (info.hub_id, info.hub_domain, info.user) == (
        ACME_HUB_ID,
        "acme-sandbox.hubspot.test",
        "owner@acme.test",
    )
    assert "crm.objects.contacts.write" in info.scopes
    assert 1700 < info.expires_in <= 1800
    assert info.user_id
    assert info.app_id
    assert info.token == tokens.access_token
    refresh = client.oauth.refresh_tokens_api.get(tokens.refresh_token)
    assert (refresh.hub_id, refresh.client_id) == (ACME_HUB_ID, SANDBOX_CLIENT_ID)
    client.oauth.refresh_tokens_api.archive(tokens.refresh_token)
    with pytest.raises(ApiException) as gone:
        client.oauth.refresh_tokens_api.get(tokens.refresh_token)
    assert gone.value.status == 404
    assert (
        sandbox.http.delete(
            api(sandbox, f"/oauth/v1/refresh-tokens/{tokens.refresh_token}")
        ).status_code
        == 404
    )


def test_sandbox_settings_point_the_provider_at_the_sandbox(
    sandbox: Sandbox, sandbox_settings: Any
) -> None:
    hubspot = sandbox_settings.PROVIDERS["hubspot"]
    assert sandbox.url == sandbox_settings.SWITCHBOARD_SANDBOX_URL
    assert hubspot["app_url"] == sandbox.hubspot_app_url
    assert hubspot["api_url"] == sandbox.hubspot_api_url
    assert hubspot["redirect_uri"] == DEFAULT_REDIRECT_URI
    code = sandbox.authorize_code(redirect_uri=hubspot["redirect_uri"])
    form = {
        "grant_type": "authorization_code",
        "client_id": hubspot["client_id"],
        "client_secret": hubspot["client_secret"],
        "redirect_uri": hubspot["redirect_uri"],
        "code": code,
    }
    assert sandbox.http.post(hubspot["api_url"] + "/oauth/v1/token", data=form).status_code == 200


# --- CRM objects -------------------------------------------------------------------------------


def test_contact_crud_reads_as_sdk_models(sandbox: Sandbox) -> None:
    contacts = sdk(sandbox, sandbox.mint_token()["access_token"]).crm.contacts
    created = contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
            properties={"email": "Ada@Example.com", "firstname": "Ada", "favorite_color": "green"}
        )
    )
    assert created.id.isdigit()
    assert created.properties["hs_object_id"] == created.id
    assert created.properties["email"] == "ada@example.com"
    assert created.properties["createdate"].endswith("Z")
    assert created.archived is False
    assert created.created_at.tzinfo is not None
    read = contacts.basic_api.get_by_id(
        created.id, properties=["favorite_color", "jobtitle", "nope"]
    )
    assert read.properties == {
        "createdate": created.properties["createdate"],
        "favorite_color": "green",
        "hs_object_id": created.id,
        "jobtitle": None,
        "lastmodifieddate": created.properties["lastmodifieddate"],
    }
    time.sleep(0.002)
    updated = contacts.basic_api.update(
        created.id,
        simple_public_object_input=SimplePublicObjectInput(properties={"jobtitle": "CTO"}),
    )
    assert updated.properties["jobtitle"] == "CTO"
    assert updated.updated_at > created.updated_at
    page = contacts.basic_api.get_page(limit=10, properties=["jobtitle"])
    assert [(r.id, r.properties["jobtitle"]) for r in page.results] == [(created.id, "CTO")]
    assert page.paging is None
    contacts.basic_api.archive(created.id)
    with pytest.raises(ApiException) as missing:
        contacts.basic_api.get_by_id(created.id)
    assert missing.value.status == 404
    archived = contacts.basic_api.get_by_id(created.id, archived=True)
    assert archived.archived is True
    assert archived.archived_at is not None
    assert contacts.basic_api.get_page().results == []
    assert [r.id for r in contacts.basic_api.get_page(archived=True).results] == [created.id]


def test_list_pages_by_after(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token())
    ids = []
    for n in range(5):
        made = sandbox.http.post(
            api(sandbox, "/crm/v3/objects/companies"),
            headers=headers,
            json={"properties": {"name": f"Co {n}"}},
        )
        ids.append(made.json()["id"])
    seen, after = [], None
    client = sdk(sandbox, headers["Authorization"].split()[1])
    while True:
        page = client.crm.companies.basic_api.get_page(limit=2, after=after, properties=["name"])
        seen += [r.id for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert seen == ids
    too_many = sandbox.http.get(
        api(sandbox, "/crm/v3/objects/companies?limit=101"), headers=headers
    )
    assert too_many.status_code == 400


def test_records_belong_to_the_token_portal(sandbox: Sandbox) -> None:
    acme, globex = (
        bearer(sandbox.mint_token(ACME_HUB_ID)),
        bearer(sandbox.mint_token(GLOBEX_HUB_ID)),
    )
    made = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/deals"),
        headers=acme,
        json={"properties": {"dealname": "Big"}},
    )
    deal = made.json()["id"]
    assert (
        sandbox.http.get(api(sandbox, f"/crm/v3/objects/deals/{deal}"), headers=acme).status_code
        == 200
    )
    assert (
        sandbox.http.get(api(sandbox, f"/crm/v3/objects/deals/{deal}"), headers=globex).status_code
        == 404
    )
    assert (
        sandbox.http.get(api(sandbox, "/crm/v3/objects/deals"), headers=globex).json()["results"]
        == []
    )


@pytest.mark.parametrize(
    ("path", "properties", "code", "name"),
    [
        ("contacts", {"favourite_colour": "red"}, "PROPERTY_DOESNT_EXIST", "favourite_colour"),
        ("deals", {"dealname": "X", "amount": "lots"}, "INVALID_DECIMAL", "amount"),
        ("companies", {"numberofemployees": "12.5"}, "INVALID_INTEGER", "numberofemployees"),
        ("contacts", {"lifecyclestage": "Lead"}, "INVALID_OPTION", "lifecyclestage"),
        ("contacts", {"email": "not-an-email"}, "INVALID_EMAIL", "email"),
        ("deals", {"closedate": "next tuesday"}, "INVALID_DATE", "closedate"),
    ],
)
def test_invalid_properties_answer_hubspot_validation_errors(
    sandbox: Sandbox, path: str, properties: dict[str, Any], code: str, name: str
) -> None:
    headers = bearer(sandbox.mint_token())
    response = sandbox.http.post(
        api(sandbox, f"/crm/v3/objects/{path}"), headers=headers, json={"properties": properties}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error"
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: ")
    assert [(e["code"], e["context"]["propertyName"]) for e in body["errors"]] == [(code, [name])]
    assert (
        sandbox.http.get(api(sandbox, f"/crm/v3/objects/{path}"), headers=headers).json()["results"]
        == []
    )


def test_sdk_raises_for_validation_errors_and_duplicate_emails(sandbox: Sandbox) -> None:
    contacts = sdk(sandbox, sandbox.mint_token()["access_token"]).crm.contacts.basic_api
    first = contacts.create(
        SimplePublicObjectInputForCreate(properties={"email": "dup@example.com"})
    )
    with pytest.raises(ApiException) as conflict:
        contacts.create(SimplePublicObjectInputForCreate(properties={"email": "DUP@example.com"}))
    assert conflict.value.status == 409
    body = json.loads(conflict.value.body)
    assert body["message"] == f"Contact already exists. Existing ID: {first.id}"
    assert body["category"] == "CONFLICT"
    with pytest.raises(ApiException) as invalid:
        contacts.update(first.id, SimplePublicObjectInput(properties={"hs_object_id": "1"}))
    assert invalid.value.status == 400


def test_scopes_are_enforced(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token(scopes=["oauth", "crm.objects.contacts.read"]))
    assert (
        sandbox.http.get(api(sandbox, "/crm/v3/objects/contacts"), headers=headers).status_code
        == 200
    )
    refused = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/contacts"), headers=headers, json={"properties": {}}
    )
    assert refused.status_code == 403
    assert refused.json()["category"] == "MISSING_SCOPES"
    assert refused.json()["errors"][0]["context"]["requiredGranularScopes"] == [
        "crm.objects.contacts.write"
    ]


def test_expired_and_unknown_tokens_answer_401(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    contacts = sdk(sandbox, token["access_token"]).crm.contacts.basic_api
    assert contacts.get_page().results == []
    assert sandbox.expire_tokens() == 1
    with pytest.raises(ApiException) as expired:
        contacts.get_page()
    assert expired.value.status == 401
    assert json.loads(expired.value.body)["category"] == "EXPIRED_AUTHENTICATION"
    unknown = sandbox.http.get(
        api(sandbox, "/crm/v3/objects/contacts"), headers={"Authorization": "Bearer nope"}
    )
    assert (unknown.status_code, unknown.json()["category"]) == (401, "INVALID_AUTHENTICATION")
    missing = sandbox.http.get(api(sandbox, "/crm/v3/objects/contacts"))
    assert missing.status_code == 401
    fresh = sandbox.mint_token(expires_in=0)
    assert (
        sandbox.http.get(
            api(sandbox, "/crm/v3/objects/contacts"), headers=bearer(fresh)
        ).status_code
        == 401
    )


def test_revoked_refresh_token_cannot_refresh(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    assert sandbox.revoke_tokens(token["refresh_token"]) == 1
    form = {
        "grant_type": "refresh_token",
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
        "refresh_token": token["refresh_token"],
    }
    refused = sandbox.http.post(api(sandbox, "/oauth/v1/token"), data=form)
    assert (refused.status_code, refused.json()["status"]) == (400, "BAD_REFRESH_TOKEN")
    assert (
        sandbox.http.get(
            api(sandbox, "/crm/v3/objects/contacts"), headers=bearer(token)
        ).status_code
        == 401
    )


# --- Batch -------------------------------------------------------------------------------------


def contact_inputs(count: int, start: int = 0) -> list[Any]:
    return [
        SimplePublicObjectBatchInputForCreate(
            properties={"email": f"p{n}@acme.test", "firstname": f"P{n}"}
        )
        for n in range(start, start + count)
    ]


def test_batch_create_takes_at_most_100_inputs(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    batch = sdk(sandbox, token["access_token"]).crm.contacts.batch_api
    with pytest.raises(ApiException) as too_many:
        batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=contact_inputs(250)))
    assert too_many.value.status == 400
    assert json.loads(too_many.value.body)["category"] == "VALIDATION_ERROR"
    done = batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=contact_inputs(100)))
    assert done.status == "COMPLETE"
    assert len(done.results) == 100
    assert done.started_at <= done.completed_at
    assert {r.properties["email"] for r in done.results} == {f"p{n}@acme.test" for n in range(100)}
    read = batch.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=done.results[0].id), SimplePublicObjectId(id="999999")],
            properties=["firstname"],
            properties_with_history=[],
        )
    )
    assert [r.id for r in read.results] == [done.results[0].id]
    assert read.num_errors == 1
    assert read.errors[0].category == "OBJECT_NOT_FOUND"
    assert read.errors[0].context == {"ids": ["999999"]}


def test_batch_with_trace_ids_reports_partial_failures(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token())
    inputs = [
        {"objectWriteTraceId": "a", "properties": {"email": "ok@acme.test"}},
        {"objectWriteTraceId": "b", "properties": {"missing": "1"}},
    ]
    response = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/contacts/batch/create"),
        headers=headers,
        json={"inputs": inputs},
    )
    assert response.status_code == 207
    body = response.json()
    assert body["status"] == "COMPLETE"
    assert body["numErrors"] == 1
    assert [r["properties"]["email"] for r in body["results"]] == ["ok@acme.test"]
    assert body["errors"][0]["context"] == {"objectWriteTraceId": ["b"]}
    assert "PROPERTY_DOESNT_EXIST" in body["errors"][0]["message"]
    atomic = [{"properties": {"email": "two@acme.test"}}, {"properties": {"missing": "1"}}]
    refused = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/contacts/batch/create"),
        headers=headers,
        json={"inputs": atomic},
    )
    assert refused.status_code == 400
    listed = sandbox.http.get(api(sandbox, "/crm/v3/objects/contacts"), headers=headers).json()[
        "results"
    ]
    assert len(listed) == 1


def test_batch_update_and_archive(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token())
    made = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/deals/batch/create"),
        headers=headers,
        json={"inputs": [{"properties": {"dealname": f"D{n}", "amount": "10"}} for n in range(3)]},
    ).json()["results"]
    ids = [d["id"] for d in made]
    updated = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/deals/batch/update"),
        headers=headers,
        json={"inputs": [{"id": i, "properties": {"amount": 99.5}} for i in ids]},
    )
    assert updated.status_code == 200
    assert {d["properties"]["amount"] for d in updated.json()["results"]} == {"99.5"}
    archived = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/deals/batch/archive"),
        headers=headers,
        json={"inputs": [{"id": ids[0]}]},
    )
    assert archived.status_code == 204
    remaining = sandbox.http.get(api(sandbox, "/crm/v3/objects/deals"), headers=headers).json()[
        "results"
    ]
    assert [d["id"] for d in remaining] == ids[1:]


# --- Search ------------------------------------------------------------------------------------


@pytest.fixture
def deals(sandbox: Sandbox) -> tuple[Any, list[str]]:
    """25 deals in Acme: amounts 100..2500, even ones closed won, every fifth without a stage."""
    sandbox.limits(search_per_second=0)
    token = sandbox.mint_token()
    inputs = [
        {
            "properties": {
                "dealname": f"Deal {n:02d} {'renewal' if n % 3 == 0 else 'new'}",
                "amount": str(100 * n),
                **(
                    {}
                    if n % 5 == 0
                    else {"dealstage": "closedwon" if n % 2 == 0 else "qualifiedtobuy"}
                ),
            }
        }
        for n in range(1, 26)
    ]
    made = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/deals/batch/create"),
        headers=bearer(token),
        json={"inputs": inputs},
    )
    assert made.status_code == 201
    return sdk(sandbox, token["access_token"]).crm.deals.search_api, [
        d["id"] for d in made.json()["results"]
    ]


def search(api_: Any, *groups: list[dict[str, Any]], **request: Any) -> Any:
    filter_groups = [FilterGroup(filters=[Filter(**f) for f in group]) for group in groups]
    return api_.do_search(
        public_object_search_request=PublicObjectSearchRequest(
            filter_groups=filter_groups, **request
        )
    )


def test_search_filters_sorts_and_pages(deals: tuple[Any, list[str]]) -> None:
    search_api, _ = deals
    first = search(
        search_api,
        [{"property_name": "amount", "operator": "GTE", "value": "1000"}],
        sorts=[{"propertyName": "amount", "direction": "DESCENDING"}],
        properties=["amount", "dealname"],
        limit=10,
    )
    assert first.total == 16
    assert [r.properties["amount"] for r in first.results] == [
        str(100 * n) for n in range(25, 15, -1)
    ]
    assert set(first.results[0].properties) == {
        "amount",
        "createdate",
        "dealname",
        "hs_lastmodifieddate",
        "hs_object_id",
    }
    assert first.paging.next.after == "10"
    second = search(
        search_api,
        [{"property_name": "amount", "operator": "GTE", "value": "1000"}],
        sorts=[{"propertyName": "amount", "direction": "DESCENDING"}],
        limit=10,
        after=first.paging.next.after,
    )
    assert [r.properties["amount"] for r in second.results] == [
        str(100 * n) for n in range(15, 9, -1)
    ]
    assert second.paging is None


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (
            [[{"property_name": "dealstage", "operator": "EQ", "value": "closedwon"}]],
            [2, 4, 6, 8, 12, 14, 16, 18, 22, 24],
        ),
        ([[{"property_name": "dealstage", "operator": "NOT_HAS_PROPERTY"}]], [5, 10, 15, 20, 25]),
        (
            [
                [
                    {
                        "property_name": "amount",
                        "operator": "BETWEEN",
                        "value": "200",
                        "high_value": "500",
                    }
                ]
            ],
            [2, 3, 4, 5],
        ),
        ([[{"property_name": "amount", "operator": "IN", "values": ["300", "700"]}]], [3, 7]),
        (
            [
                [{"property_name": "dealname", "operator": "CONTAINS_TOKEN", "value": "RENEWAL"}],
                [{"property_name": "amount", "operator": "LT", "value": "200"}],
            ],
            [1, 3, 6, 9, 12, 15, 18, 21, 24],
        ),
        (
            [
                [
                    {"property_name": "dealname", "operator": "CONTAINS_TOKEN", "value": "renew*"},
                    {"property_name": "dealstage", "operator": "NEQ", "value": "closedwon"},
                ]
            ],
            [3, 9, 15, 21],
        ),
    ],
)
def test_search_operators(
    deals: tuple[Any, list[str]], groups: list[list[dict[str, Any]]], expected: list[int]
) -> None:
    search_api, ids = deals
    found = search(search_api, *groups, limit=100)
    assert [r.id for r in found.results] == [ids[n - 1] for n in expected]
    assert found.total == len(expected)


def test_search_query_and_bad_requests(deals: tuple[Any, list[str]], sandbox: Sandbox) -> None:
    search_api, ids = deals
    assert [r.id for r in search(search_api, query="deal 07").results] == [ids[6]]
    requests: tuple[dict[str, Any], ...] = (
        {"limit": 201},
        {"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "1"}]}]},
        {
            "filterGroups": [
                {"filters": [{"propertyName": "amount", "operator": "LIKE", "value": "1"}]}
            ]
        },
        {"filterGroups": [{"filters": []}] * 6},
    )
    for request in requests:
        with pytest.raises(ApiException) as refused:
            search_api.do_search(public_object_search_request=request)
        assert refused.value.status == 400
        assert json.loads(refused.value.body)["category"] == "VALIDATION_ERROR"


def test_search_stops_at_10000_results(sandbox: Sandbox) -> None:
    sandbox.limits(per_10s=1000, search_per_second=0)
    headers = bearer(sandbox.mint_token())
    url = api(sandbox, "/crm/v3/objects/contacts/batch/create")
    for start in range(0, 10_050, 100):
        inputs = [{"properties": {"firstname": "Same"}} for _ in range(min(100, 10_050 - start))]
        assert sandbox.http.post(url, headers=headers, json={"inputs": inputs}).status_code == 201
    search_api = sdk(sandbox, headers["Authorization"].split()[1]).crm.contacts.search_api
    last = search(
        search_api,
        [{"property_name": "firstname", "operator": "EQ", "value": "same"}],
        limit=200,
        after="9900",
    )
    assert last.total == 10_050
    assert len(last.results) == 100
    assert last.paging.next.after == "10000"
    with pytest.raises(ApiException) as beyond:
        search(
            search_api,
            [{"property_name": "firstname", "operator": "EQ", "value": "same"}],
            after="10000",
        )
    assert beyond.value.status == 400
    assert json.loads(beyond.value.body)["category"] == "VALIDATION_ERROR"


# --- Associations ------------------------------------------------------------------------------


def test_v4_associations_through_the_sdk(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    client = sdk(sandbox, token["access_token"])
    contact = client.crm.contacts.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"email": "c@acme.test"})
    )
    company = client.crm.companies.basic_api.create(
        SimplePublicObjectInputForCreate(properties={"name": "Acme"})
    )
    associations = client.crm.associations.v4.basic_api
    made = associations.create_default("contacts", contact.id, "companies", company.id)
    assert made.status == "COMPLETE"
    assert [
        (r._from.id, r.to.id, r.association_spec.association_type_id) for r in made.results
    ] == [
        (contact.id, company.id, 279),
        (company.id, contact.id, 280),
    ]
    page = associations.get_page("contacts", contact.id, "companies")
    assert [(r.to_object_id, [t.type_id for t in r.association_types]) for r in page.results] == [
        (company.id, [279])
    ]
    labelled = associations.create(
        "contact",
        contact.id,
        "company",
        company.id,
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )
    assert labelled.labels == ["Primary"]
    assert labelled.from_object_type_id == "0-1"
    read = client.crm.contacts.basic_api.get_by_id(
        contact.id, properties=["associatedcompanyid"], associations=["companies"]
    )
    assert read.properties["associatedcompanyid"] == company.id
    assert sorted(a.type for a in read.associations["companies"].results) == [
        "contact_to_company",
        "contact_to_company_unlabeled",
    ]
    back = associations.get_page("companies", company.id, "contacts")
    assert [t.label for t in back.results[0].association_types] == ["Primary", None]
    associations.archive("contacts", contact.id, "companies", company.id)
    assert associations.get_page("contacts", contact.id, "companies").results == []
    cleared = client.crm.contacts.basic_api.get_by_id(
        contact.id, properties=["associatedcompanyid"]
    )
    assert cleared.properties["associatedcompanyid"] is None


def test_create_with_associations_and_batch_read(sandbox: Sandbox) -> None:
    headers = bearer(sandbox.mint_token())
    company = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/companies"),
        headers=headers,
        json={"properties": {"name": "Acme"}},
    ).json()
    deal = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/deals"),
        headers=headers,
        json={
            "properties": {"dealname": "With company"},
            "associations": [
                {
                    "to": {"id": company["id"]},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}],
                }
            ],
        },
    )
    assert deal.status_code == 201
    lonely = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/deals"), headers=headers, json={"properties": {}}
    ).json()
    read = sandbox.http.post(
        api(sandbox, "/crm/v4/associations/deals/companies/batch/read"),
        headers=headers,
        json={"inputs": [{"id": deal.json()["id"]}, {"id": lonely["id"]}]},
    )
    assert read.status_code == 207
    body = read.json()
    assert body["results"][0]["to"] == [
        {
            "toObjectId": int(company["id"]),
            "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"},
                {"category": "HUBSPOT_DEFINED", "typeId": 341, "label": None},
            ],
        }
    ]
    assert body["errors"][0]["context"] == {"fromObjectId": [lonely["id"]]}
    bad = sandbox.http.put(
        api(sandbox, f"/crm/v4/objects/deals/{lonely['id']}/associations/default/companies/999999"),
        headers=headers,
    )
    assert bad.status_code == 404


# --- Limits, faults, counters ------------------------------------------------------------------


def test_ten_second_limit_answers_429_with_hubspot_body_and_headers(sandbox: Sandbox) -> None:
    sandbox.limits(per_10s=3)
    token = sandbox.mint_token()
    url, headers = api(sandbox, "/crm/v3/objects/contacts"), bearer(token)
    remaining = [
        sandbox.http.get(url, headers=headers).headers["X-HubSpot-RateLimit-Remaining"]
        for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    refused = sandbox.http.get(url, headers=headers)
    assert refused.status_code == 429
    body = refused.json()
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert (body["status"], body["errorType"], body["policyName"]) == (
        "error",
        "RATE_LIMIT",
        "TEN_SECONDLY_ROLLING",
    )
    assert body["correlationId"] == refused.headers["X-HubSpot-Correlation-Id"]
    assert refused.headers["X-HubSpot-RateLimit-Max"] == "3"
    assert refused.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert refused.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    assert "X-HubSpot-RateLimit-Daily" not in refused.headers  # not sent to OAuth apps
    with pytest.raises(ApiException) as sdk_refused:
        sdk(sandbox, token["access_token"]).crm.contacts.basic_api.get_page()
    assert sdk_refused.value.status == 429
    other_portal = sandbox.http.get(url, headers=bearer(sandbox.mint_token(GLOBEX_HUB_ID)))
    assert other_portal.status_code == 200
    counters = sandbox.counters()
    assert counters["rate_limited"] == 2
    assert counters["rate_limited_by_account"] == {f"hubspot:{ACME_HUB_ID}": 2}
    assert counters["requests_by_account"] == {
        f"hubspot:{ACME_HUB_ID}": 5,
        f"hubspot:{GLOBEX_HUB_ID}": 1,
    }


def test_daily_and_search_limits(sandbox: Sandbox) -> None:
    sandbox.config(daily_headers=True)
    sandbox.limits(daily=3, search_per_second=1)
    headers = bearer(sandbox.mint_token())
    url = api(sandbox, "/crm/v3/objects/contacts")
    first = sandbox.http.post(url + "/search", headers=headers, json={})
    assert first.status_code == 200
    assert (
        first.headers["X-HubSpot-RateLimit-Daily"],
        first.headers["X-HubSpot-RateLimit-Daily-Remaining"],
    ) == ("3", "2")
    second = sandbox.http.post(url + "/search", headers=headers, json={})
    assert (second.status_code, second.json()["policyName"]) == (429, "SECONDLY")
    assert sandbox.http.get(url, headers=headers).status_code == 200
    assert sandbox.http.get(url, headers=headers).status_code == 200
    daily = sandbox.http.get(url, headers=headers)
    assert daily.status_code == 429
    assert daily.json()["policyName"] == "DAILY"
    assert daily.json()["message"] == "You have reached your daily limit."


def test_faults_fail_slow_down_hold_and_throttle_crm_calls_only(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    url, headers = api(sandbox, "/crm/v3/objects/contacts"), bearer(token)
    sandbox.faults(fail_next=2, fail_status=502)
    token_call = sandbox.http.post(
        api(sandbox, "/oauth/v1/token"), data={"grant_type": "refresh_token"}
    )
    assert token_call.status_code == 400  # OAuth is not faulted
    assert [sandbox.http.get(url, headers=headers).status_code for _ in range(3)] == [502, 502, 200]
    sandbox.faults(latency_ms=250)
    started = time.monotonic()
    assert sandbox.http.get(url, headers=headers).status_code == 200
    assert time.monotonic() - started >= 0.25
    sandbox.faults(timeout_next=1)
    with pytest.raises(httpx.ReadTimeout):
        sandbox.http.get(url, headers=headers, timeout=0.3)
    assert sandbox.http.get(url, headers=headers).status_code == 200
    sandbox.faults(rate_limit_next=1)
    throttled = sandbox.http.get(url, headers=headers)
    assert (throttled.status_code, throttled.json()["policyName"]) == (429, "TEN_SECONDLY_ROLLING")
    assert sandbox.http.get(url, headers=headers).status_code == 200
    counters = sandbox.counters()
    assert counters["faults_injected"] == 4
    assert counters["faults_by_kind"] == {
        "fail": 2,
        "timeout": 1,
        "timeout_after": 0,
        "rate_limit": 1,
        "slow": 0,
    }
    assert counters["rate_limited"] == 0  # an injected 429 is a fault, not limit enforcement
    assert counters["rate_limited_by_account"] == {}


def test_counters_key_calls_by_route_template(sandbox: Sandbox) -> None:
    token = sandbox.mint_token()
    headers = bearer(token)
    contact = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/contacts"), headers=headers, json={"properties": {}}
    ).json()
    company = sandbox.http.post(
        api(sandbox, "/crm/v3/objects/0-2"), headers=headers, json={"properties": {}}
    ).json()
    for _ in range(2):
        sandbox.http.get(api(sandbox, f"/crm/v3/objects/contact/{contact['id']}"), headers=headers)
    sandbox.http.put(
        api(
            sandbox,
            f"/crm/v4/objects/contacts/{contact['id']}/associations/default/companies/{company['id']}",
        ),
        headers=headers,
    )
    sandbox.http.get(api(sandbox, f"/oauth/v1/access-tokens/{token['access_token']}"))
    sandbox.exchange_code(sandbox.authorize_code())
    counters = sandbox.counters()
    assert counters["requests"] == {
        "GET /crm/v3/objects/contacts/{id}": 2,
        "GET /oauth/v1/access-tokens/{token}": 1,
        "POST /crm/v3/objects/companies": 1,
        "POST /crm/v3/objects/contacts": 1,
        "POST /oauth/authorize": 1,
        "POST /oauth/v1/token": 1,
        "PUT /crm/v4/objects/contacts/{id}/associations/default/companies/{id}": 1,
    }
    assert counters["total"] == 8
    assert counters["token_grants"] == {"authorization_code": 1, "refresh_token": 0}
    sandbox.reset()
    assert sandbox.counters()["total"] == 0


def test_control_api_refuses_bad_input(sandbox: Sandbox) -> None:
    base = f"{sandbox.url}/_sandbox"
    assert sandbox.http.post(f"{base}/faults", json={"fail_status": 404}).status_code == 400
    assert sandbox.http.post(f"{base}/hubspot/limits", json={"per_10s": 0}).status_code == 400
    assert sandbox.http.post(f"{base}/hubspot/tokens", json={"hub_id": 1}).status_code == 404
    assert sandbox.http.post(f"{base}/hubspot/config", json={"nope": 1}).status_code == 400
    assert sandbox.config(access_token_ttl=60)["access_token_ttl"] == 60
    assert sandbox.mint_token(expires_in=60)["expires_in"] in (59, 60)


def test_the_command_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(CommandError, match="loopback only"):
        call_command("sandbox", host="0.0.0.0", port=8400)  # noqa: S104 - the point of the test
