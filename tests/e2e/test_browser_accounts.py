"""Signing up, out and in with email and password in a real browser (Chromium)."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import ApiKey, Membership, Role, User
from tests.conftest import LiveServer

PASSWORD = "a-long pass phrase"


@pytest.mark.live
def test_sign_up_sign_in_and_use_the_api_from_the_browser(
    asgi_server: LiveServer, browser_page: Any
) -> None:
    page = browser_page
    base = asgi_server.url

    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=email]", "grace@example.com")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/")
    assert "grace's organisation" in page.inner_text("#organisations")
    user = User.objects.get(email="grace@example.com")
    assert Membership.objects.get(user=user).role == Role.OWNER

    # Sign out (allauth asks to confirm), then a wrong and a right password.
    page.goto(f"{base}/accounts/logout/")
    page.click("form button[type=submit]")
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=login]", "grace@example.com")
    page.fill("input[name=password]", "not the password")
    page.click("form button[type=submit]")
    assert "not correct" in page.content()
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/")
    assert "grace@example.com" in page.inner_text("header")

    # The signed-in session is an API credential; unsafe methods need the CSRF token.
    me = page.evaluate("() => fetch('/api/v1/me').then(r => r.json())")
    assert me["success"] is True
    assert me["data"]["user"]["email"] == "grace@example.com"
    assert me["data"]["auth_method"] == "session"
    created = page.evaluate(
        """async () => {
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken='))?.split('=')[1];
            const post = (headers) => fetch('/api/v1/api-keys', {method: 'POST',
                headers: {'Content-Type': 'application/json', ...headers},
                body: JSON.stringify({name: 'from the browser'})});
            const refused = await post({});
            const accepted = await post({'X-CSRFToken': token});
            return {refused: [refused.status, await refused.json()],
                    accepted: [accepted.status, await accepted.json()]};
        }"""
    )
    assert created["refused"][0] == 403
    assert created["refused"][1]["error"]["code"] == "csrf_failed"
    assert created["accepted"][0] == 201
    assert created["accepted"][1]["data"]["created_by"] == "grace@example.com"
    assert ApiKey.objects.filter(name="from the browser", created_by=user).count() == 1
