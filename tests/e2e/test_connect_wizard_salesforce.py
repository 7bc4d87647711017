"""Salesforce in Chromium: a sandbox org connected through the wizard (PKCE), then used by the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accounts.models import Organization, Role
from integrations.models import Connection, OAuthAttempt
from tests.conftest import LiveServer, new_key
from tests.e2e.test_connect_wizard import sign_in
from tests.factories import make_membership, make_user

pytestmark = pytest.mark.live


@pytest.fixture
def asgi_env(sandbox: Any) -> dict[str, str]:
    return {"SWITCHBOARD_SANDBOX_URL": sandbox.url, "SWITCHBOARD_SANDBOX_CA_FILE": sandbox.ca_file}


def test_a_sandbox_org_connects_with_pkce_and_the_api_uses_it(
    asgi_server: LiveServer,
    browser_page: Any,
    sandbox: Any,
    sandbox_settings: Any,
    org: Organization,
) -> None:
    page, base = browser_page, asgi_server.url
    user = make_user(is_staff=True, is_superuser=True)
    make_membership(organization=org, user=user, role=Role.OWNER)
    sign_in(page, base, user.email)

    page.goto(f"{base}/connect/")
    assert "five" in page.inner_text("#note-salesforce").lower()
    page.check('#form-salesforce input[name="environment"][value="sandbox"]')
    page.click("#connect-salesforce")
    page.wait_for_selector('input[name="org"]')  # the sandbox's Salesforce consent page
    assert "/salesforce/test/" in page.url
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#connected")
    connection = Connection.objects.get(organization=org, provider="salesforce")
    assert page.inner_text("#account") == connection.display_name
    attempt = OAuthAttempt.objects.get(connection=connection)
    assert attempt.code_verifier == ""  # the PKCE verifier was spent and wiped

    page.goto(f"{base}/admin/integrations/connection/{connection.pk}/change/")
    text = page.inner_text("#content")
    assert connection.token_extra["instance_url"] in text
    assert connection.external_account_id in text
    assert connection.access_token not in page.content()

    # The API over HTTP, against the same uvicorn server.
    key = new_key(org)
    http = httpx.Client(
        base_url=f"{base}/api/v1/connections/{connection.pk}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )

    def ok(response: httpx.Response, status: int = 200) -> Any:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["success"] is True
        return body["data"]

    company = ok(http.post("/companies", json={"name": "Initech"}), 201)
    contact = ok(
        http.post("/contacts", json={"last_name": "Lumbergh", "company_id": company["id"]}), 201
    )
    deal = ok(
        http.post(
            "/deals",
            json={
                "name": "TPS",
                "stage": "Prospecting",
                "close_date": "2027-01-15",
                "company_id": company["id"],
            },
        ),
        201,
    )
    assert (
        ok(http.patch(f"/contacts/{contact['id']}", json={"job_title": "VP"}))["job_title"] == "VP"
    )
    found = ok(
        http.post(
            "/contacts/search",
            json={
                "filter_groups": [[{"field": "last_name", "operator": "eq", "value": "Lumbergh"}]]
            },
        )
    )
    assert [r["id"] for r in found["results"]] == [contact["id"]]
    for plural, record in (("contacts", contact), ("deals", deal), ("companies", company)):
        assert ok(http.get(f"/{plural}/{record['id']}"))["id"] == record["id"]
        assert ok(http.delete(f"/{plural}/{record['id']}"))["archived"] is True
    batch = ok(
        http.post(
            "/contacts/batch", json={"create": [{"last_name": f"Temp {n}"} for n in range(450)]}
        )
    )
    assert len(batch["results"]) == 450
    assert batch["errors"] == []
    composite = [
        k
        for k in sandbox.counters()["requests"]
        if "composite/sobjects" in k and k.startswith("POST")
    ]
    assert sum(sandbox.counters()["requests"][k] for k in composite) == 3
