"""The connect wizard in Chromium: HubSpot through the sandbox's consent page, as a person."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.audit import Actor
from accounts.connect_sessions import EndUser, connect_session_issue
from accounts.models import Organization, Role
from integrations.models import Connection, OAuthAttempt
from tests.conftest import LiveServer
from tests.factories import PASSWORD, make_membership, make_user

pytestmark = pytest.mark.live


@pytest.fixture
def asgi_env(sandbox: Any) -> dict[str, str]:
    return {"SWITCHBOARD_SANDBOX_URL": sandbox.url}


def sign_in(page: Any, base: str, email: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/")


def consent(page: Any, decision: str, portal: str = "62515") -> None:
    page.click("#connect-hubspot")
    page.wait_for_selector('input[name="portal"]')  # the sandbox's consent page
    page.check(f'input[name="portal"][value="{portal}"]')
    page.click(f'button[name="decision"][value="{decision}"]')


def test_a_member_connects_hubspot_and_sees_it_in_the_admin(
    asgi_server: LiveServer, browser_page: Any, org: Organization
) -> None:
    page, base = browser_page, asgi_server.url
    user = make_user(is_staff=True, is_superuser=True)
    make_membership(organization=org, user=user, role=Role.OWNER)
    sign_in(page, base, user.email)

    page.goto(f"{base}/connect/")
    consent(page, "allow")
    page.wait_for_selector("#connected")
    assert page.inner_text("#account") == "acme-sandbox.hubspot.test"
    connection = Connection.objects.get(organization=org)
    assert connection.connected_by == user

    page.goto(f"{base}/admin/integrations/connection/")
    assert "acme-sandbox.hubspot.test" in page.inner_text("#result_list")
    assert connection.access_token not in page.content()

    # Deny ends on the wizard's error page.
    page.goto(f"{base}/connect/")
    consent(page, "deny")
    page.wait_for_selector("#connect-error")
    assert page.inner_text("#code") == "consent_denied"
    assert OAuthAttempt.objects.filter(error_code="consent_denied").count() == 1


def test_an_end_customer_connects_with_a_link_and_no_sign_in(
    asgi_server: LiveServer, browser_page: Any, org: Organization
) -> None:
    page, base = browser_page, asgi_server.url
    token = connect_session_issue(
        organization_id=org.pk,
        providers=["hubspot"],
        end_user=EndUser(id="cust-9"),
        ttl_seconds=900,
        actor=Actor(label="test"),
    ).token
    page.goto(f"{base}/connect/?session={token}")
    assert org.name in page.inner_text("h2")
    consent(page, "allow", portal="62516")
    page.wait_for_selector("#connected")
    assert page.inner_text("#account") == "globex-sandbox.hubspot.test"
    connection = Connection.objects.get(organization=org)
    assert connection.end_user is not None
    assert connection.end_user["id"] == "cust-9"
