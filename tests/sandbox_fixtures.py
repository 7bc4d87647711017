"""Pytest plugin (registered in tests/conftest.py): the provider sandbox as a real process (``manage.py sandbox``), and helpers for its control API.

``sandbox_process`` (session) starts it once on a free port; ``sandbox`` (per test) resets it and
hands out typed helpers; ``sandbox_settings`` points ``settings.PROVIDERS["hubspot"]`` and
``settings.SWITCHBOARD_SANDBOX_URL`` at it. Override the ``sandbox_redirect_uri`` fixture (or
parametrize it) for another redirect URI.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.processes import free_port, spawn, stop, tail

SANDBOX_CLIENT_ID = "sandbox-hubspot-client"
SANDBOX_CLIENT_SECRET = "sandbox-hubspot-secret"
DEFAULT_REDIRECT_URI = "http://127.0.0.1/connect/hubspot/callback"
ACME_HUB_ID, GLOBEX_HUB_ID = 62515, 62516
HUBSPOT_SCOPES = "oauth crm.objects.contacts.read crm.objects.contacts.write"


@dataclass
class Sandbox:
    """The running sandbox, freshly reset, and its control API."""

    url: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @property
    def hubspot_app_url(self) -> str:
        return f"{self.url}/hubspot/app"

    @property
    def hubspot_api_url(self) -> str:
        return f"{self.url}/hubspot/api"

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"{self.url}/_sandbox{path}", json=body)
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
        """Replace the faults on CRM calls: latency_ms, fail_next, fail_status, timeout_next,
        timeout_seconds, rate_limit_next (omitted ones are cleared)."""
        result: dict[str, Any] = self._control("POST", "/faults", values)
        return result

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


def _wait_until_up(url: str, proc: Any, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, f"the sandbox exited ({proc.returncode}){tail(log)}"
        assert time.monotonic() < deadline, f"the sandbox did not answer within 30 s{tail(log)}"
        try:
            if httpx.get(f"{url}/_sandbox/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)


@pytest.fixture(scope="session")
def sandbox_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``manage.py sandbox`` on a free loopback port for the whole run; yields its base URL."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("sandbox")
    log = workdir / "sandbox.log"
    env = dict(os.environ) | {"SWITCHBOARD_VAR_DIR": str(workdir / "var")}
    command = [sys.executable, "manage.py", "sandbox", "--port", str(port)]
    proc = spawn(command, env=env, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield url
    finally:
        stop(proc, grace=10)


@pytest.fixture
def sandbox(sandbox_process: str) -> Iterator[Sandbox]:
    """The sandbox, reset (no records, tokens or faults; default limits) for this test."""
    box = Sandbox(sandbox_process)
    box.reset()
    try:
        yield box
    finally:
        box.http.close()


@pytest.fixture
def sandbox_redirect_uri() -> str:
    return DEFAULT_REDIRECT_URI


@pytest.fixture
def sandbox_settings(sandbox: Sandbox, settings: Any, sandbox_redirect_uri: str) -> Any:
    """Django settings pointing the HubSpot provider at the sandbox (restored after the test)."""
    settings.PROVIDERS = dict(settings.PROVIDERS) | {
        "hubspot": {
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "redirect_uri": sandbox_redirect_uri,
            "app_url": sandbox.hubspot_app_url,
            "api_url": sandbox.hubspot_api_url,
        }
    }
    settings.SWITCHBOARD_SANDBOX_URL = sandbox.url
    return settings
