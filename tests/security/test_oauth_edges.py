"""OAuth edges of the connect wizard, for HubSpot and for Salesforce, each through the real flow:
Django's whole stack with the test client as the browser on one side, the provider sandbox over
HTTP on the other (its consent page, token endpoint, identity lookup and OAuth fault injection).

Every edge must end (a) on a clear page: a 4xx, the wizard's error page with the message naming
what went wrong and what to do, no traceback, nothing secret echoed; (b) with nothing stored: no
connection created or changed, and the attempt's state refused if it comes back; (c) recorded:
the attempt failed with a reason code, an audit row and a log line carrying the reason (a state
we never issued has no attempt and no organisation: a log line only).

Where the browser may be sent by a parameter of the request (open redirects): the wizard takes
no redirect target at all (the provider's authorize URL and our callback come from settings),
and the sign-in pages (allauth, the admin) fall back to their default for off-site targets.
"""

from __future__ import annotations

import html
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from freezegun import freeze_time

from accounts.audit import Actor
from accounts.connect_sessions import EndUser, connect_session_issue
from accounts.models import AuditEvent, Membership, Organization, Role
from integrations.models import AttemptStatus, Connection, OAuthAttempt
from integrations.services.oauth import FAILURES, failure_message
from tests.factories import PASSWORD, make_membership, make_user
from tests.integrations.test_salesforce_connections import make_sf_connection
from tests.integrations.test_tokens import make_connection as make_hubspot_connection
from tests.sandbox_fixtures import (
    SANDBOX_CLIENT_SECRET,
    SF_CLIENT_SECRET,
    Sandbox,
)

pytestmark = pytest.mark.live

CODE = re.compile(r'<code id="code">([^<]*)</code>')
MESSAGE = re.compile(r'<p id="message">([^<]*)</p>')
WHAT_TO_DO = re.compile(r"start again|try again|ask |open the connect link", re.IGNORECASE)
SECRETS = (SANDBOX_CLIENT_SECRET, SF_CLIENT_SECRET)


@dataclass(frozen=True)
class Flow:
    """One provider's side of the flow, as a person's browser drives it."""

    key: str
    name: str
    start_query: str
    account_field: str  # the consent page's account radio
    account: str
    revoke_route: str  # the sandbox counter of the provider's revocation endpoint

    def consent(self, authorize_url: str, decision: str = "allow") -> str:
        """Answer the consent page as a person would; where the provider redirects."""
        page = httpx.get(authorize_url, timeout=10)
        assert page.status_code == 200, page.text
        assert f'name="{self.account_field}"' in page.text
        form = {self.account_field: self.account, "decision": decision}
        answer = httpx.post(authorize_url, data=form, timeout=10)
        assert answer.status_code in (302, 303), answer.text
        return str(answer.headers["location"])


HUBSPOT = Flow(
    "hubspot", "HubSpot", "", "portal", "62515", "DELETE /oauth/v1/refresh-tokens/{token}"
)
SALESFORCE = Flow(
    "salesforce",
    "Salesforce",
    "?environment=production",
    "org",
    "acme",
    "POST /services/oauth2/revoke",
)


@pytest.fixture(params=[HUBSPOT, SALESFORCE], ids=lambda f: f.key)
def flow(request: pytest.FixtureRequest, sandbox_settings: Any) -> Flow:
    param: Flow = request.param
    return param


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="switchboard")


@pytest.fixture
def member(org: Organization) -> Client:
    client = Client()
    client.force_login(make_membership(organization=org, role=Role.ADMIN).user)
    return client


@pytest.fixture
def existing(flow: Flow, sandbox: Sandbox, org: Organization) -> Connection:
    """The organisation already has the account the person consents to (so "changed" can be
    seen too)."""
    if flow is HUBSPOT:
        return make_hubspot_connection(sandbox, org)
    return make_sf_connection(sandbox, org)


def link(org: Organization, ttl: int = 900) -> str:
    """A connect-session link's token for ``org``."""
    return connect_session_issue(
        organization_id=org.pk,
        providers=[],
        end_user=EndUser(id=f"cust-{uuid.uuid4().hex[:6]}"),
        ttl_seconds=ttl,
        actor=Actor(label="test"),
    ).token


def start(client: Client, flow: Flow, extra: str = "") -> str:
    """Start in this browser; the provider's authorize URL."""
    query = flow.start_query + (("&" if flow.start_query else "?") + extra if extra else "")
    response = client.get(f"/connect/{flow.key}/start{query}")
    assert response.status_code == 302, response.content
    return str(response["Location"])


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def callback_url(flow: Flow, redirect: str) -> str:
    """The provider's redirect, as a path on our host."""
    parts = urlsplit(redirect)
    assert parts.path == f"/connect/{flow.key}/callback", redirect
    return f"{parts.path}?{parts.query}"


def forged_callback(flow: Flow, **params: str) -> str:
    return f"/connect/{flow.key}/callback?{urlencode(params)}"


def snapshot() -> dict[uuid.UUID, tuple[Any, ...]]:
    """Every connection and what a flow could change of it."""
    return {
        c.pk: (
            c.organization_id,
            c.external_account_id,
            c.access_token,
            c.refresh_token,
            c.token_expires_at,
            c.token_extra,
            c.scopes,
            c.status,
            c.updated_at,
        )
        for c in Connection.objects.all()
    }


def assert_clear_page(
    response: Any, flow: Flow, code: str, *, secrets: tuple[str, ...] = ()
) -> None:
    """(a): a 4xx wizard error page saying what went wrong and what to do, nothing leaked."""
    assert 400 <= response.status_code < 500, response.status_code
    page = response.content.decode()
    assert 'id="connect-error"' in page
    found = CODE.search(page)
    assert found is not None, page
    assert found.group(1) == code, page
    message = MESSAGE.search(page)
    assert message is not None
    text = html.unescape(message.group(1))
    assert text == failure_message(code, flow.name)
    assert WHAT_TO_DO.search(text), text
    assert "Traceback" not in page
    assert 'File "' not in page
    for secret in (*SECRETS, *secrets):
        assert secret not in page


def assert_recorded(attempt: OAuthAttempt, code: str, caplog: pytest.LogCaptureFixture) -> None:
    """(c): the attempt failed with the reason, an audit row and a log line say so."""
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.FAILED
    assert attempt.error_code == code
    assert attempt.completed_at is not None
    assert attempt.code_verifier == ""
    assert attempt.connection_id is None
    audit = AuditEvent.objects.get(action="oauth_attempt.failed", entity_id=str(attempt.pk))
    assert audit.organization_id == attempt.organization_id
    assert audit.changes == {"provider": attempt.provider, "reason": code}
    assert any(getattr(r, "reason", None) == code for r in caplog.records)


def assert_spent(client: Client, flow: Flow, url: str, attempt: OAuthAttempt) -> None:
    """(b): the attempt's state is refused when it comes back, and the outcome stays."""
    attempt.refresh_from_db()
    outcome = (attempt.status, attempt.error_code, attempt.connection_id)
    again = client.get(url)
    assert_clear_page(again, flow, "state_reused")
    attempt.refresh_from_db()
    assert (attempt.status, attempt.error_code, attempt.connection_id) == outcome
    assert AuditEvent.objects.filter(
        action="oauth_attempt.reuse_refused", entity_id=str(attempt.pk)
    ).exists()


def refused_edge(
    client: Client,
    flow: Flow,
    url: str,
    code: str,
    caplog: pytest.LogCaptureFixture,
    *,
    secrets: tuple[str, ...] = (),
    replay: Client | None = None,
) -> OAuthAttempt:
    """Open ``url`` (a callback naming this browser's latest attempt) and check (a), (b), (c)."""
    before = snapshot()
    attempt = OAuthAttempt.objects.latest("created_at")
    response = client.get(url)
    assert_clear_page(response, flow, code, secrets=secrets)
    assert snapshot() == before
    assert_recorded(attempt, code, caplog)
    assert_spent(replay or client, flow, url, attempt)
    assert snapshot() == before
    return attempt


# --- the edges ----------------------------------------------------------------------------------


def test_consent_denied(
    flow: Flow, member: Client, existing: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    redirect = flow.consent(start(member, flow), decision="deny")
    assert parse_qs(urlsplit(redirect).query)["error"] == ["access_denied"]
    refused_edge(member, flow, callback_url(flow, redirect), "consent_denied", caplog)


@pytest.mark.parametrize("error", ["server_error", "made_up_error"])
def test_a_provider_error_is_named_not_echoed(
    flow: Flow, member: Client, existing: Connection, caplog: pytest.LogCaptureFixture, error: str
) -> None:
    state = state_of(start(member, flow))
    said = "Call +1 555 0100 now to unlock your account"  # a forger's text
    url = forged_callback(flow, state=state, error=error, error_description=said)
    attempt = refused_edge(member, flow, url, "provider_error", caplog, secrets=(said, error))
    # The provider's words are kept for operators, bounded; the page never shows them.
    assert said in attempt.error_message
    assert ("server_error" if error == "server_error" else "unknown") in attempt.error_message


def test_a_callback_without_a_code(
    flow: Flow, member: Client, existing: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    state = state_of(start(member, flow))
    refused_edge(member, flow, forged_callback(flow, state=state), "missing_code", caplog)


def test_an_expired_attempt(
    flow: Flow, member: Client, existing: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    redirect = flow.consent(start(member, flow))
    OAuthAttempt.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    refused_edge(member, flow, callback_url(flow, redirect), "expired", caplog, secrets=(code,))


def test_a_callback_in_another_browser(
    flow: Flow,
    member: Client,
    org: Organization,
    existing: Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redirect = flow.consent(start(member, flow))
    other = Client()  # a colleague in the same organisation, handed the callback URL
    other.force_login(make_membership(organization=org).user)
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    url = callback_url(flow, redirect)
    refused_edge(other, flow, url, "state_not_bound", caplog, secrets=(code,), replay=member)


def _opens_a_link_of_the_other(client: Client, org: Organization, other: Organization) -> None:
    client.get(f"/connect/?session={link(other)}")  # the wizard now acts for the other org


def _member_removed(client: Client, org: Organization, other: Organization) -> None:
    Membership.objects.filter(organization=org).delete()
    Membership.objects.create(organization=other, user_id=client.session["_auth_user_id"])


def _signed_in_as_someone_else(client: Client, org: Organization, other: Organization) -> None:
    states = client.session["oauth_states"]
    client.force_login(make_membership(organization=other).user)
    session = client.session
    session["oauth_states"] = states  # a shared computer: the same browser session
    session.save()


Switch = Callable[[Client, Organization, Organization], None]


@pytest.mark.parametrize(
    ("started_with_link", "switch"),
    [
        (False, _opens_a_link_of_the_other),
        (True, _opens_a_link_of_the_other),
        (False, _member_removed),
        (False, _signed_in_as_someone_else),
    ],
    ids=["member-then-link-B", "link-A-then-link-B", "member-removed", "signed-in-as-B"],
)
def test_a_callback_for_another_organisation(
    flow: Flow,
    org: Organization,
    other_org: Organization,
    existing: Connection,
    caplog: pytest.LogCaptureFixture,
    started_with_link: bool,
    switch: Switch,
) -> None:
    browser = Client()
    if started_with_link:
        browser.get(f"/connect/?session={link(org)}")
    else:
        browser.force_login(make_membership(organization=org, role=Role.ADMIN).user)
    redirect = flow.consent(start(browser, flow))
    switch(browser, org, other_org)
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    url = callback_url(flow, redirect)
    refused_edge(browser, flow, url, "organization_mismatch", caplog, secrets=(code,))
    assert not Connection.objects.filter(organization=other_org).exists()


def test_a_link_that_expired_during_consent(
    flow: Flow, org: Organization, existing: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    browser = Client()
    browser.get(f"/connect/?session={link(org, ttl=60)}")
    redirect = flow.consent(start(browser, flow))
    with freeze_time(timezone.now() + timedelta(minutes=2)):  # the attempt itself has 10
        refused_edge(browser, flow, callback_url(flow, redirect), "connect_link_expired", caplog)


def test_a_link_cannot_start_a_flow_unseen(
    flow: Flow, org: Organization, other_org: Organization
) -> None:
    """A connect link opens the wizard's page, which names the organisation; sent straight to
    ``start`` (a drive-by into someone else's organisation) it starts nothing."""
    query = urlencode({"session": link(other_org)})
    drive_by = Client().get(f"/connect/{flow.key}/start?{query}")
    assert drive_by.status_code == 401
    assert not OAuthAttempt.objects.exists()
    browser = Client()
    assert browser.get(f"/connect/?session={link(org)}").status_code == 200
    assert browser.get(f"/connect/{flow.key}/start?{query}").status_code == 302
    assert OAuthAttempt.objects.get().organization_id == org.pk  # the link it opened


@pytest.mark.parametrize("variant", ["forged", "missing", "other-provider"])
def test_a_state_we_never_issued(
    flow: Flow,
    member: Client,
    existing: Connection,
    caplog: pytest.LogCaptureFixture,
    variant: str,
) -> None:
    pending = state_of(start(member, flow))  # the browser's own attempt, in flight
    before = snapshot()
    if variant == "forged":
        url, code = (
            forged_callback(flow, state="forged-" + uuid.uuid4().hex, code="abc"),
            "unknown_state",
        )
    elif variant == "missing":
        url, code = forged_callback(flow, code="abc"), "missing_state"
    else:  # a real state, presented at the other provider's callback
        other = "salesforce" if flow is HUBSPOT else "hubspot"
        url, code = f"/connect/{other}/callback?{urlencode({'state': pending})}", "unknown_state"
        flow = SALESFORCE if flow is HUBSPOT else HUBSPOT
    response = member.get(url)
    assert_clear_page(response, flow, code, secrets=("abc",))
    assert snapshot() == before
    assert any(getattr(r, "reason", None) == code for r in caplog.records)
    assert not AuditEvent.objects.filter(action__startswith="oauth_attempt.").exists()
    # The browser's real attempt is untouched by the forgery.
    assert OAuthAttempt.objects.get(state=pending).status == AttemptStatus.PENDING


def test_the_same_callback_twice(flow: Flow, member: Client, org: Organization) -> None:
    redirect = flow.consent(start(member, flow))
    url = callback_url(flow, redirect)
    assert member.get(url).status_code == 200
    attempt = OAuthAttempt.objects.get()
    assert attempt.status == AttemptStatus.SUCCEEDED
    before = snapshot()
    assert_spent(member, flow, url, attempt)  # refused; the success stays
    assert snapshot() == before


@pytest.mark.parametrize("variant", ["used", "forged"])
def test_a_code_that_is_not_good_any_more(
    flow: Flow, member: Client, caplog: pytest.LogCaptureFixture, variant: str
) -> None:
    """A code replayed under a new state (the first flow spent it), or one made up. (That the
    sandbox refuses a used code with ``invalid_grant`` as HubSpot and Salesforce do is checked by
    test_sandbox_hubspot.py and test_sandbox_salesforce.py.)"""
    first = flow.consent(start(member, flow))
    assert member.get(callback_url(flow, first)).status_code == 200
    used = parse_qs(urlsplit(first).query)["code"][0]
    code = used if variant == "used" else "x" + used
    state = state_of(start(member, flow))  # a new flow in the same browser
    url = forged_callback(flow, state=state, code=code)
    refused_edge(member, flow, url, "code_exchange_failed", caplog, secrets=(code,))
    assert "invalid_grant" in OAuthAttempt.objects.get(state=state).error_message


def test_a_code_issued_for_another_verifier(
    flow: Flow, member: Client, existing: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """PKCE: a code obtained through one attempt (challenge A) presented with another attempt's
    state (verifier B) is refused by the provider; the code itself stays good for its own."""
    authorize_a = start(member, flow)
    state_b = state_of(start(member, flow))
    redirect_a = flow.consent(authorize_a)
    code_a = parse_qs(urlsplit(redirect_a).query)["code"][0]
    url = forged_callback(flow, state=state_b, code=code_a)
    attempt = refused_edge(member, flow, url, "code_exchange_failed", caplog, secrets=(code_a,))
    assert attempt.state == state_b
    assert ("invalid_grant" if flow is HUBSPOT else "invalid_request") in attempt.error_message
    # The refusal was the verifier's: the same code finishes its own attempt.
    done = member.get(callback_url(flow, redirect_a))
    assert done.status_code == 200, done.content.decode()


GARBAGE = ["html", "not_json", "empty", "wrong_shape", "wrong_types", "server_error"]


@pytest.mark.parametrize("kind", GARBAGE)
@pytest.mark.parametrize("point", ["token", "identity"])
def test_the_provider_answers_garbage(
    flow: Flow,
    member: Client,
    sandbox: Sandbox,
    existing: Connection,
    caplog: pytest.LogCaptureFixture,
    point: str,
    kind: str,
) -> None:
    redirect = flow.consent(start(member, flow))
    queued = sandbox.http.post(f"{sandbox.url}/_sandbox/oauth-faults", json={point: [kind]})
    assert queued.status_code == 200, queued.text
    if point == "identity":
        expected = "identity_failed"
    else:
        expected = "provider_unavailable" if kind == "server_error" else "provider_bad_answer"
    code = parse_qs(urlsplit(redirect).query)["code"][0]
    refused_edge(member, flow, callback_url(flow, redirect), expected, caplog, secrets=(code,))
    assert sandbox.http.get(f"{sandbox.url}/_sandbox/oauth-faults").json()[point] == []  # used
    # Tokens issued for the failed flow were handed back to the provider.
    revoked = sandbox.counters()["requests"].get(flow.revoke_route, 0)
    assert revoked == (1 if point == "identity" else 0)


def test_a_provider_unconfigured_mid_flow(
    flow: Flow,
    member: Client,
    existing: Connection,
    sandbox_settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    redirect = flow.consent(start(member, flow))
    providers = sandbox_settings.PROVIDERS
    sandbox_settings.PROVIDERS = providers | {flow.key: {**providers[flow.key], "client_id": ""}}
    refused_edge(member, flow, callback_url(flow, redirect), "not_configured", caplog)


def test_every_failure_says_what_to_do() -> None:
    for code, (what, todo) in FAILURES.items():
        assert what.endswith("."), code
        assert WHAT_TO_DO.search(todo), code


# --- open redirects -----------------------------------------------------------------------------

OFF_SITE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https:evil.example",
    "javascript:alert(document.domain)",
    "http://evil.example\\@testserver/",
]
REDIRECT_PARAMS = ("next", "return_to", "return_url", "redirect", "redirect_uri", "continue")


def _with_all(target: str) -> str:
    return urlencode(dict.fromkeys(REDIRECT_PARAMS, target))


def assert_not_sent_off_site(response: Any) -> None:
    location = response.get("Location", "")
    assert "evil.example" not in location
    assert not location.lower().startswith("javascript:")
    assert b"evil.example" not in response.content
    assert b"javascript:alert" not in response.content


@pytest.mark.parametrize("target", OFF_SITE)
def test_the_wizard_takes_no_redirect_target_from_the_request(
    flow: Flow, member: Client, sandbox: Sandbox, target: str
) -> None:
    assert_not_sent_off_site(member.get(f"/connect/?{_with_all(target)}"))
    started = member.get(f"/connect/{flow.key}/start?{_with_all(target)}")
    assert started.status_code == 302
    assert_not_sent_off_site(started)
    authorize = urlsplit(started["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == sandbox.url  # the provider, from settings
    redirect_uri = parse_qs(authorize.query)["redirect_uri"][0]
    assert redirect_uri == f"http://127.0.0.1/connect/{flow.key}/callback"
    done = member.get(
        f"{callback_url(flow, flow.consent(started['Location']))}&{_with_all(target)}"
    )
    assert done.status_code == 200
    assert_not_sent_off_site(done)
    refused = member.get(forged_callback(flow, state="forged") + "&" + _with_all(target))
    assert refused.status_code == 400
    assert_not_sent_off_site(refused)


@pytest.mark.parametrize(
    "domain",
    [
        "evil.example/x.my.salesforce.com",
        "acme.my.salesforce.com.evil.example",
        "acme.my.salesforce.com@evil.example",
        "evil.example#.my.salesforce.com",
        "evil.example?.my.salesforce.com",
        "evil.example\\.my.salesforce.com",
        "acme.my.salesforce.com:443",
        "//evil.example",
    ],
)
def test_the_salesforce_login_host_stays_on_salesforce(
    member: Client, sandbox_settings: Any, domain: str
) -> None:
    response = member.get(
        f"/connect/salesforce/start?{urlencode({'environment': 'my_domain', 'domain': domain})}"
    )
    assert response.status_code == 422
    assert "Location" not in response
    assert not OAuthAttempt.objects.exists()


@pytest.fixture
def person(db: None, settings: Any) -> Any:
    # Sign-ins are the subject, not password hashing: the fastest hasher keeps these quick.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return make_user()


def _sign_in(client: Client, email: str, query: str, **form: str) -> Any:
    return client.post(f"/accounts/login/?{query}", {"login": email, "password": PASSWORD} | form)


@pytest.mark.parametrize("target", OFF_SITE)
def test_signing_in_never_leaves_the_site(person: Any, target: str) -> None:
    client = Client()
    page = client.get(f"/accounts/login/?{urlencode({'next': target})}")
    assert page.status_code == 200
    assert "Location" not in page  # (allauth keeps the value in its form: inert, checked on POST)
    for signed in (
        _sign_in(client, person.email, urlencode({"next": target})),  # next in the URL
        _sign_in(Client(), person.email, "", next=target),  # next in the form
    ):
        assert signed.status_code == 302, signed.content
        assert signed["Location"] == "/"
    out = client.post("/accounts/logout/", {"next": target})
    assert out.status_code == 302
    assert out["Location"] == "/"
    joined = Client().post(
        "/accounts/signup/",
        {
            "email": f"new-{uuid.uuid4().hex[:8]}@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "next": target,
        },
    )
    assert joined.status_code == 302, joined.content
    assert joined["Location"] == "/"
    staff = make_user(is_staff=True, is_superuser=True)
    admin = Client().post(
        f"/admin/login/?{urlencode({'next': target})}",
        {"username": staff.email, "password": PASSWORD, "next": target},
    )
    assert admin.status_code == 302
    assert admin["Location"] == "/"


def test_an_on_site_next_is_still_followed(person: Any) -> None:
    """The positive control of the above: a local target is honoured."""
    signed = _sign_in(Client(), person.email, urlencode({"next": "/connect/"}))
    assert signed["Location"] == "/connect/"
