"""The Content Security Policy in Chromium: every kind of page works under it with no violation.

The live server runs production settings (DEBUG off) with its static files collected, so the
admin's and Swagger UI's scripts really load and run under the policy. Violations are caught two
ways: the ``securitypolicyviolation`` event, recorded in every document from its first script
on, and Chromium's console ("Refused to ... Content Security Policy"), which also reports a
blocked navigation (form-action) after the document that made it is gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from accounts.models import Organization, Role
from integrations.models import Connection
from tests.conftest import LiveServer
from tests.e2e.conftest import browser_page  # noqa: F401 - the fixture, for this package too
from tests.e2e.test_connect_wizard import consent, sign_in
from tests.factories import PASSWORD, make_membership, make_user
from tests.processes import ROOT
from workflows.services import workflow_ensure_defaults

pytestmark = pytest.mark.live

RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(
    `${e.effectiveDirective} blocked ${e.blockedURI || 'inline'} in ${e.sourceFile}:${e.lineNumber} ${e.sample}`));
"""


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``collectstatic`` once per run: production settings serve only collected files."""
    var = tmp_path_factory.mktemp("collected")
    env = os.environ | {
        "SWITCHBOARD_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    static = var / "static"
    assert (static / "admin/js/actions.js").exists()
    assert (static / "ninja/swagger-ui-bundle.js").exists()
    return static


@pytest.fixture
def asgi_env(sandbox: Any, collected_static: Path, tmp_path: Path) -> dict[str, str]:
    # asgi_server runs the server with SWITCHBOARD_VAR_DIR=tmp_path/var.
    shutil.copytree(collected_static, tmp_path / "var" / "static")
    return {"SWITCHBOARD_SANDBOX_URL": sandbox.url, "SWITCHBOARD_SANDBOX_CA_FILE": sandbox.ca_file}


class Violations:
    """CSP violations seen by the pages of one browser context."""

    def __init__(self, page: Any) -> None:
        self.console: list[str] = []
        page.context.add_init_script(RECORD_VIOLATIONS)
        self.watch(page)

    def watch(self, page: Any) -> None:
        def on_console(message: Any) -> None:
            if "Content Security Policy" in message.text:
                self.console.append(f"{page.url}: {message.text}")

        page.on("console", on_console)

    def of(self, page: Any) -> list[str]:
        found = [*self.console, *page.evaluate("() => window.__cspViolations || []")]
        self.console.clear()
        return found

    def assert_none(self, page: Any, where: str) -> None:
        found = self.of(page)
        assert found == [], f"CSP violations on {where}: {found}"


@pytest.fixture
def browser(browser_page: Any) -> tuple[Any, Violations]:  # noqa: F811
    return browser_page, Violations(browser_page)


def test_wizard_accounts_admin_and_docs_work_with_no_violation(
    asgi_server: LiveServer, browser: tuple[Any, Violations], org: Organization
) -> None:
    page, violations = browser
    base = asgi_server.url
    admin_user = make_user(is_staff=True, is_superuser=True)
    make_membership(organization=org, user=admin_user, role=Role.OWNER)

    # The control: an inline script on one of our pages is refused, and reported.
    page.goto(f"{base}/accounts/login/")
    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__ran = true'; document.body.appendChild(s); }"""
    )
    page.evaluate("() => new Promise((done) => setTimeout(done, 100))")
    assert page.evaluate("() => window.__ran === true") is False
    assert any("script-src" in v for v in violations.of(page))

    # Account pages (allauth), signed out.
    for path in ("/", "/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"):
        response = page.goto(f"{base}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
        violations.assert_none(page, path)
    # The base layout's <style> carries the nonce: the page is styled.
    assert page.evaluate("() => getComputedStyle(document.body).maxWidth") == "704px"

    sign_in(page, base, admin_user.email)
    violations.assert_none(page, "signing in")
    for path in ("/accounts/password/change/", "/accounts/email/", "/accounts/logout/"):
        assert page.goto(f"{base}{path}").status == 200, path
        violations.assert_none(page, path)

    # The wizard: HubSpot through a link, Salesforce through a form whose answer is a redirect
    # to the consent page on another origin (form-action).
    page.goto(f"{base}/connect/")
    violations.assert_none(page, "/connect/")
    consent(page, "allow")
    page.wait_for_selector("#connected")
    violations.assert_none(page, "the HubSpot connection")
    page.goto(f"{base}/connect/")
    page.check('#form-salesforce input[name="environment"][value="sandbox"]')
    page.click("#connect-salesforce")
    page.wait_for_selector('input[name="org"]')  # the sandbox's Salesforce consent page
    page.click('button[name="decision"][value="allow"]')
    page.wait_for_selector("#connected")
    violations.assert_none(page, "the Salesforce connection")
    assert Connection.objects.filter(organization=org).count() == 2

    # The admin: sign-in, index, lists with and without actions, forms with their scripts.
    page.goto(f"{base}/accounts/logout/")
    page.click("form button[type=submit]")
    page.goto(f"{base}/admin/login/")
    violations.assert_none(page, "/admin/login/")
    page.fill("input[name=username]", admin_user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    violations.assert_none(page, "/admin/")

    page.goto(f"{base}/admin/integrations/connection/")
    page.check("#action-toggle")  # actions.js counts the selection
    assert page.inner_text(".action-counter") == "2 of 2 selected"
    # Status badges are classes of core/admin.css, loaded on every admin page (no style
    # attribute may be used): an active connection's badge is green.
    badge = "#result_list .sb-badge.sb-green"
    assert page.eval_on_selector(badge, "b => getComputedStyle(b).backgroundColor") == (
        "rgb(31, 136, 61)"
    )
    violations.assert_none(page, "the connections list")

    page.goto(f"{base}/admin/accounts/auditevent/?q=connection")  # search, filters, dates
    violations.assert_none(page, "the audit events list")

    page.goto(f"{base}/admin/workflows/workflowrun/")  # our changelist template's nonce'd <style>
    styles = page.eval_on_selector_all("style", "nodes => nodes.map(n => n.textContent)")
    assert any("#result_list td span" in style for style in styles)
    violations.assert_none(page, "the workflow runs list")

    workflow = workflow_ensure_defaults(org)[0]
    page.goto(f"{base}/admin/workflows/workflow/{workflow.pk}/change/")  # recent runs' table
    assert page.eval_on_selector("#recent-runs table", "t => t.className") == "sb-wide"
    violations.assert_none(page, "a workflow's page")

    page.goto(f"{base}/admin/accounts/organization/add/")
    page.locator("#id_name").press_sequentially("Wonka Industries")  # prepopulate.js: the slug
    assert page.input_value("#id_slug") == "wonka-industries"
    violations.assert_none(page, "the organisation add form")

    page.goto(f"{base}/admin/accounts/organization/{org.pk}/change/")
    page.click(".add-row a")  # inlines.js adds a membership row
    page.click("#memberships-1 .select2-selection")  # the user autocomplete (select2)
    page.fill(".select2-search__field", admin_user.email[:6])
    page.wait_for_selector(f'.select2-results__option:has-text("{admin_user.email}")')
    page.keyboard.press("Escape")
    with page.expect_popup() as popup_info:
        page.click("#add_id_memberships-1-user")
    popup = popup_info.value
    violations.watch(popup)
    popup.wait_for_selector("#user_form")
    violations.assert_none(popup, "the add-a-person popup")
    popup.close()
    violations.assert_none(page, "the organisation change form")

    # The API's docs: Swagger UI from our static files, under its own policy.
    response = page.goto(f"{base}/api/v1/docs")
    assert "img-src 'self' data:" in response.headers["content-security-policy"]
    health = page.locator(".opblock", has=page.locator('[data-path="/api/v1/health"]'))
    health.locator(".opblock-summary").click()
    health.locator("button.try-out__btn").click()
    health.locator("button.execute").click()  # a fetch to our own origin
    status = health.locator(".live-responses-table tbody .response-col_status").first
    assert status.inner_text().strip() in ("200", "503")
    violations.assert_none(page, "/api/v1/docs")
