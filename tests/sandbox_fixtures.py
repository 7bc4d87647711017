"""Pytest plugin (registered in tests/conftest.py): the provider sandbox as a real process (``manage.py sandbox``), and helpers for its control API.

``sandbox_server`` (session) starts it once on two free ports (HTTP, and TLS for Salesforce's
instance API) with its test CA written to a pytest temporary directory; ``sandbox_process`` is its
HTTP base URL; ``sandbox`` (per test) resets it and hands out typed helpers (HubSpot's and, with an
``sf_`` prefix, Salesforce's); ``sandbox_settings`` points ``settings.PROVIDERS["hubspot"]``,
``settings.PROVIDERS["salesforce"]``, ``settings.SWITCHBOARD_SANDBOX_URL`` and
``settings.SWITCHBOARD_SANDBOX_CA_FILE`` at it. Override the ``sandbox_redirect_uri`` (HubSpot) or
``sandbox_sf_redirect_uri`` (Salesforce) fixture, or parametrize it, for another redirect URI.
"""

from __future__ import annotations

import os
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis
import requests
from django.conf import settings
from simple_salesforce.api import Salesforce

from tests.processes import free_port, spawn, stop, tail

SANDBOX_CLIENT_ID = "sandbox-hubspot-client"
SANDBOX_CLIENT_SECRET = "sandbox-hubspot-secret"
DEFAULT_REDIRECT_URI = "http://127.0.0.1/connect/hubspot/callback"
ACME_HUB_ID, GLOBEX_HUB_ID = 62515, 62516
HUBSPOT_SCOPES = "oauth crm.objects.contacts.read crm.objects.contacts.write"
SF_CLIENT_ID = "sandbox-salesforce-client"
SF_CLIENT_SECRET = "sandbox-salesforce-secret"
SF_REDIRECT_URI = "http://127.0.0.1/connect/salesforce/callback"
SF_API_VERSION = "62.0"
SF_SCOPES = "api refresh_token id"
SF_ORGS = ("acme", "globex")


@dataclass(frozen=True)
class SandboxServer:
    """The running ``manage.py sandbox``: its HTTP base URL, its TLS (instance) base URL and the
    CA file it wrote."""

    url: str
    tls_url: str
    ca_file: str


@dataclass
class Sandbox:
    """The running sandbox, freshly reset, and its control API."""

    url: str
    tls_url: str = ""
    ca_file: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    sessions: list[requests.Session] = field(default_factory=list)

    def close(self) -> None:
        self.http.close()
        for session in self.sessions:
            session.close()

    @property
    def hubspot_app_url(self) -> str:
        return f"{self.url}/hubspot/app"

    @property
    def hubspot_api_url(self) -> str:
        return f"{self.url}/hubspot/api"

    def _control(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        response = self.http.request(method, f"{self.url}/_sandbox{path}", json=body, params=params)
        assert response.status_code == 200, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json()

    def reset(self) -> None:
        self._control("POST", "/reset", {})

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "/counters")
        return result

    def faults(self, **values: Any) -> dict[str, Any]:
        """Replace the faults on CRM calls (omitted ones are cleared): latency_ms, fail_next,
        fail_status, timeout_next, timeout_after_next, timeout_seconds, rate_limit_next, and the
        drawn ones: fault_rate (0..1), fault_mix ({"fail", "timeout", "timeout_after",
        "rate_limit", "slow"}: weight), seed, slow_ms, burst."""
        result: dict[str, Any] = self._control("POST", "/faults", values)
        return result

    def hubspot_seed(
        self,
        count: int,
        *,
        hub_id: int = ACME_HUB_ID,
        object_type: str = "contacts",
        prefix: str = "seed",
        start: int = 1,
    ) -> dict[str, Any]:
        """Create ``count`` records in a portal at once (no API calls, no webhooks): emails
        ``{prefix}-{i}@example.com`` / domains ``{prefix}-{i}.example.com`` / deal names
        ``{prefix} deal {i}``; answers ``{"created", "ids": [first, last]}``."""
        body = {
            "hub_id": hub_id,
            "object_type": object_type,
            "count": count,
            "prefix": prefix,
            "start": start,
        }
        result: dict[str, Any] = self._control("POST", "/hubspot/seed", body)
        return result

    def hubspot_stats(
        self, *, hub_id: int = ACME_HUB_ID, object_type: str = "contacts"
    ) -> dict[str, Any]:
        """``{"live", "archived", "duplicates": {key: values held by >1 live record}}`` (keys:
        email / domain / dealname, and switchboard_write_id)."""
        params = {"hub_id": hub_id, "object_type": object_type}
        result: dict[str, Any] = self._control("GET", "/hubspot/stats", params=params)
        return result

    def hubspot_webhooks(self, **settings: Any) -> dict[str, Any]:
        """Change the webhook subscription: target_url (None unsubscribes), max_batch,
        max_attempts, backoff_ms, flush_ms; answers the settings and delivery counts."""
        result: dict[str, Any] = self._control("POST", "/hubspot/webhooks", settings)
        return result

    def hubspot_webhook_status(self) -> dict[str, Any]:
        """Settings and counts: delivered, failed (events), pending, in_flight, requests,
        retries, last_status, last_error."""
        result: dict[str, Any] = self._control("GET", "/hubspot/webhooks")
        return result

    def wait_for_webhooks(self, settled: int, timeout: float = 10.0) -> dict[str, Any]:
        """Poll until ``settled`` events were delivered or given up on and nothing is pending
        or in flight; the status then (fails the test on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.hubspot_webhook_status()
            done = status["delivered"] + status["failed"]
            if done >= settled and not status["pending"] and not status["in_flight"]:
                return status
            assert time.monotonic() < deadline, f"webhooks did not settle: {status}"
            time.sleep(0.02)

    def limits(self, **values: int) -> dict[str, Any]:
        """Set HubSpot's per_10s, daily and search_per_second limits (0 turns search's off)."""
        result: dict[str, Any] = self._control("POST", "/hubspot/limits", values)
        return result

    def mint_token(
        self, hub_id: int = ACME_HUB_ID, expires_in: int = 1800, **extra: Any
    ) -> dict[str, Any]:
        """A token pair for a portal without the browser flow (the token endpoint's body)."""
        body = {"hub_id": hub_id, "expires_in": expires_in} | extra
        result: dict[str, Any] = self._control("POST", "/hubspot/tokens", body)
        return result

    def expire_tokens(self) -> int:
        return int(self._control("POST", "/hubspot/tokens/expire", {})["expired"])

    def issued_tokens(self, provider: str = "hubspot") -> dict[str, list[str]]:
        """Every token the provider's stand-in issued since the reset: ``{"access": [...],
        "refresh": [...]}`` (tests that look for leaked secrets)."""
        result: dict[str, list[str]] = self._control("GET", f"/{provider}/tokens/issued")
        return result

    def revoke_tokens(self, refresh_token: str | None = None) -> int:
        body = {} if refresh_token is None else {"refresh_token": refresh_token}
        return int(self._control("POST", "/hubspot/tokens/revoke", body)["revoked"])

    def config(self, **values: Any) -> dict[str, Any]:
        """Change access_token_ttl, code_ttl, rotate_refresh_tokens, daily_headers; read all."""
        result: dict[str, Any] = self._control("POST", "/hubspot/config", values)
        return result

    def authorize_code(
        self,
        *,
        portal: int = ACME_HUB_ID,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        scope: str = HUBSPOT_SCOPES,
        state: str = "state-1",
        **params: str,
    ) -> str:
        """Consent on the authorize page as a browser would (Allow) and return the code."""
        query = {
            "client_id": SANDBOX_CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
        } | params
        url = f"{self.hubspot_app_url}/oauth/authorize"
        response = self.http.post(
            url, params=query, data={"portal": str(portal), "decision": "allow"}
        )
        assert response.status_code == 302, response.text
        location = parse_qs(urlsplit(response.headers["location"]).query)
        assert location["state"] == [state]
        return location["code"][0]

    def exchange_code(
        self, code: str, *, redirect_uri: str = DEFAULT_REDIRECT_URI, **extra: str
    ) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "redirect_uri": redirect_uri,
            "code": code,
        } | extra
        return self.http.post(f"{self.hubspot_api_url}/oauth/v1/token", data=form)

    # --- Salesforce ----------------------------------------------------------------------------

    @property
    def sf_login_url(self) -> str:
        """The production login host (``https://login.salesforce.com``)."""
        return f"{self.url}/salesforce/login"

    @property
    def sf_test_url(self) -> str:
        """The sandbox-org login host (``https://test.salesforce.com``)."""
        return f"{self.url}/salesforce/test"

    def sf_my_domain_url(self, domain: str = "acme.my.salesforce.com") -> str:
        """A My Domain login host (``https://acme.my.salesforce.com``)."""
        return f"{self.url}/salesforce/mydomain/{domain}"

    @property
    def sf_instance_url(self) -> str:
        """Every org's ``instance_url``: the REST API, over TLS (trust ``ca_file``)."""
        return self.tls_url

    def sf_mint_token(self, org: str = "acme", **extra: Any) -> dict[str, Any]:
        """A token answer for an org without the browser flow (the token endpoint's body, with
        a refresh token). ``scope`` and ``host`` (login, test or a My Domain) may be given."""
        result: dict[str, Any] = self._control("POST", "/salesforce/tokens", {"org": org} | extra)
        return result

    def sf_expire_tokens(self) -> int:
        """End every session now (REST calls answer 401 INVALID_SESSION_ID until a refresh)."""
        return int(self._control("POST", "/salesforce/tokens/expire", {})["expired"])

    def sf_revoke_tokens(self, refresh_token: str | None = None, reason: str = "expired") -> int:
        """Revoke one refresh token (or all, and every session) with its access tokens; a later
        refresh answers invalid_grant with ``reason``'s description (``expired``: "expired
        access/refresh token", ``authentication_failure``: "authentication failure")."""
        body: dict[str, Any] = {"reason": reason}
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return int(self._control("POST", "/salesforce/tokens/revoke", body)["revoked"])

    def sf_limits(self, **values: Any) -> dict[str, Any]:
        """Set the daily API budget (``daily``) and pretend calls were made (``used``, for
        ``org`` or every org); returns ``{"daily", "used": {org: n}}``."""
        result: dict[str, Any] = self._control("POST", "/salesforce/limits", values)
        return result

    def sf_orgs(self) -> list[dict[str, Any]]:
        """The seeded orgs: key, id (18), id15, name, user_id, username, instance_url."""
        result: list[dict[str, Any]] = self._control("GET", "/salesforce/orgs")["orgs"]
        return result

    def sf_config(self, **values: Any) -> dict[str, Any]:
        """Change access_token_ttl, code_ttl, rotate_refresh_tokens; read all."""
        result: dict[str, Any] = self._control("POST", "/salesforce/config", values)
        return result

    def sf_seed(
        self,
        count: int,
        *,
        org: str = "acme",
        sobject: str = "Contact",
        prefix: str = "seed",
        start: int = 1,
    ) -> dict[str, Any]:
        """Create ``count`` Contact / Account / Opportunity records in an org at once (no API
        calls); answers ``{"created", "ids": [first, last]}``."""
        body = {"org": org, "sobject": sobject, "count": count, "prefix": prefix, "start": start}
        result: dict[str, Any] = self._control("POST", "/salesforce/seed", body)
        return result

    def sf_stats(self, *, org: str = "acme", sobject: str = "Contact") -> dict[str, Any]:
        """``{"live", "deleted", "archived", "duplicates": {key: values held by >1 live
        record}}`` (keys: Email or Name, and Switchboard_Write_Id__c)."""
        params = {"org": org, "sobject": sobject}
        result: dict[str, Any] = self._control("GET", "/salesforce/stats", params=params)
        return result

    def sf_empty_recycle_bin(self, org: str | None = None) -> int:
        """Empty the recycle bin (of ``org``, or every org): queryAll stops seeing those rows."""
        body = {} if org is None else {"org": org}
        return int(self._control("POST", "/salesforce/recycle-bin/empty", body)["emptied"])

    def sf_session(self) -> requests.Session:
        """A requests session that trusts the sandbox's CA."""
        session = requests.Session()
        session.verify = self.ca_file
        # Else REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment override session.verify.
        session.trust_env = False
        self.sessions.append(session)  # closed with the fixture
        return session

    def sf_client(self, access_token: str | None = None, *, org: str = "acme") -> Any:
        """simple-salesforce's ``Salesforce`` on the instance, trusting the sandbox CA (a token
        is minted for ``org`` when none is given). Typed ``Any``: simple-salesforce types
        ``sf.<SObject>`` as a union with its bulk handlers, which no call type-checks against."""
        token = access_token or self.sf_mint_token(org)["access_token"]
        return Salesforce(
            instance_url=self.sf_instance_url,
            session_id=token,
            version=SF_API_VERSION,
            session=self.sf_session(),
        )

    def sf_authorize_code(
        self,
        *,
        org: str = "acme",
        login_url: str | None = None,
        redirect_uri: str = SF_REDIRECT_URI,
        state: str = "state-1",
        **params: str,
    ) -> str:
        """Consent on a login host's authorize page as a browser would (Allow); the code."""
        query = {
            "response_type": "code",
            "client_id": SF_CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": SF_SCOPES,
            "state": state,
        } | params
        url = f"{login_url or self.sf_login_url}/services/oauth2/authorize"
        response = self.http.post(url, params=query, data={"org": org, "decision": "allow"})
        assert response.status_code == 302, response.text
        location = parse_qs(urlsplit(response.headers["location"]).query)
        assert location["state"] == [state]
        return location["code"][0]

    def sf_exchange_code(
        self,
        code: str,
        *,
        login_url: str | None = None,
        redirect_uri: str = SF_REDIRECT_URI,
        **extra: str,
    ) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "client_id": SF_CLIENT_ID,
            "client_secret": SF_CLIENT_SECRET,
            "redirect_uri": redirect_uri,
            "code": code,
        } | extra
        return self.http.post(f"{login_url or self.sf_login_url}/services/oauth2/token", data=form)


def _answers(url: str, verify: ssl.SSLContext | bool = True) -> bool:
    try:
        return httpx.get(url, timeout=1, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_until_up(server: SandboxServer, proc: Any, log: Path) -> None:
    """Until both listeners answer (the CA file is written before either starts)."""
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"the sandbox exited ({proc.returncode}){tail(log)}"
        assert time.monotonic() < deadline, f"the sandbox did not answer within 30 s{tail(log)}"
        if _answers(f"{server.url}/_sandbox/health") and Path(server.ca_file).exists():
            trust = ssl.create_default_context(cafile=server.ca_file)
            if _answers(f"{server.tls_url}/services/data", trust):
                return
        time.sleep(0.1)


def clear_budgets() -> None:
    """Forget every rate-limit budget kept in Redis (the database's roll back with the test)."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"{settings.RATE_LIMIT_KEY_PREFIX}*", count=500):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """``manage.py sandbox`` on two free loopback ports for the whole run (HTTP, and TLS for
    Salesforce's instance API), its CA written to a temporary directory."""
    port, tls_port = free_port(), free_port()
    while tls_port == port:
        tls_port = free_port()
    workdir = tmp_path_factory.mktemp("sandbox")
    log = workdir / "sandbox.log"
    ca_file = workdir / "ca" / "sandbox-ca.pem"
    env = dict(os.environ) | {"SWITCHBOARD_VAR_DIR": str(workdir / "var")}
    command = [sys.executable, "manage.py", "sandbox", "--port", str(port)]
    command += ["--tls-port", str(tls_port), "--ca-file", str(ca_file)]
    proc = spawn(command, env=env, log=log)
    server = SandboxServer(
        url=f"http://127.0.0.1:{port}",
        tls_url=f"https://127.0.0.1:{tls_port}",
        ca_file=str(ca_file),
    )
    try:
        _wait_until_up(server, proc, log)
        yield server
    finally:
        stop(proc, grace=10)


@pytest.fixture(scope="session")
def sandbox_process(sandbox_server: SandboxServer) -> str:
    """The sandbox's HTTP base URL (started once for the whole run)."""
    return sandbox_server.url


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[Sandbox]:
    """The sandbox, reset (no records, tokens or faults; default limits) for this test, and
    our rate-limit budgets of its accounts emptied with it (they live in Redis, beyond the
    test's transaction)."""
    box = Sandbox(sandbox_server.url, sandbox_server.tls_url, sandbox_server.ca_file)
    box.reset()
    clear_budgets()
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def sandbox_redirect_uri() -> str:
    return DEFAULT_REDIRECT_URI


@pytest.fixture
def sandbox_sf_redirect_uri() -> str:
    return SF_REDIRECT_URI


@pytest.fixture
def sandbox_settings(
    sandbox: Sandbox, settings: Any, sandbox_redirect_uri: str, sandbox_sf_redirect_uri: str
) -> Any:
    """Django settings pointing the HubSpot and Salesforce providers at the sandbox (restored
    after the test)."""
    settings.PROVIDERS = dict(settings.PROVIDERS) | {
        "hubspot": {
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "redirect_uri": sandbox_redirect_uri,
            "app_url": sandbox.hubspot_app_url,
            "api_url": sandbox.hubspot_api_url,
        },
        "salesforce": {
            "client_id": SF_CLIENT_ID,
            "client_secret": SF_CLIENT_SECRET,
            "redirect_uri": sandbox_sf_redirect_uri,
            "app_url": sandbox.sf_login_url,
            "api_url": "",  # each org's API lives on its own instance_url
            "sandbox_login_url": sandbox.sf_test_url,
            "my_domain_url": f"{sandbox.url}/salesforce/mydomain/{{domain}}",
            "api_version": SF_API_VERSION,
            "ca_file": sandbox.ca_file,
        },
    }
    settings.SWITCHBOARD_SANDBOX_URL = sandbox.url
    settings.SWITCHBOARD_SANDBOX_CA_FILE = sandbox.ca_file
    return settings
