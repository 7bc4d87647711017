from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from accounts.audit import Actor
from accounts.models import Organization
from accounts.services import api_key_create
from tests.factories import make_organization
from tests.processes import ROOT, free_port, spawn, stop, tail

# The provider sandbox fixtures (sandbox_process, sandbox, sandbox_settings) for every test.
pytest_plugins = ["tests.sandbox_fixtures"]

TEST_ACTOR = Actor(label="test")


def new_key(organization: Organization, name: str = "test key") -> str:
    return api_key_create(
        organization_id=organization.pk, name=name, created_by_id=None, actor=TEST_ACTOR
    ).secret


@dataclass
class Api:
    """The real Django stack (middleware, URL conf, Ninja) as a caller holding one API key."""

    key: str | None
    client: Client = field(default_factory=Client)

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return headers | (extra or {})

    def get(
        self, path: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        return self.client.get(path, params or {}, headers=self._headers(headers))

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None, headers=None) -> Any:
        data = raw if raw is not None else orjson.dumps(body if body is not None else {})
        return self.client.post(
            path, data, content_type="application/json", headers=self._headers(headers)
        )

    def delete(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return self.client.delete(path, headers=self._headers(headers))

    def request(self, method: str, path: str) -> Any:
        return self.client.generic(method, path, headers=self._headers(None))


@pytest.fixture(autouse=True)
def _unpaced_budgets(settings: Any) -> None:
    """Calls in tests go out as fast as the budget's windows allow: pacing would only stretch
    every test's run (test_ratelimit.py turns it on where it is the subject)."""
    settings.RATE_LIMIT_PACE_SECONDS = 0


@pytest.fixture
def org(db: None) -> Organization:
    return make_organization()


@pytest.fixture
def other_org(db: None) -> Organization:
    return make_organization()


@pytest.fixture
def api(org: Organization) -> Api:
    return Api(key=new_key(org))


@pytest.fixture
def anon(db: None) -> Api:
    return Api(key=None)


def assert_envelope_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the error envelope with this status and code; returns the body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.has_header("X-Request-ID")
    body: dict[str, Any] = orjson.loads(response.content)
    assert set(body) == {"success", "data", "error", "meta"}
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["meta"]["request_id"] == response["X-Request-ID"]
    return body


def assert_envelope_ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.content
    body = orjson.loads(response.content)
    assert body["success"] is True
    assert body["error"] is None
    assert body["meta"]["request_id"] == response["X-Request-ID"]
    return body["data"]


@dataclass
class LiveServer:
    url: str
    log: Path

    def tail(self, lines: int = 40) -> str:
        return tail(self.log, lines, title="server output")


@pytest.fixture
def asgi_env() -> dict[str, str]:
    """Extra environment for ``asgi_server``; override it in a module to point at a sandbox."""
    return {}


@pytest.fixture
def asgi_server(
    transactional_db: None, tmp_path: Path, asgi_env: dict[str, str]
) -> Iterator[LiveServer]:
    """Switchboard under uvicorn (as in production), on this test run's database.

    The test's rows are committed (transactional_db), so the server sees them and the test
    sees the server's writes.
    """
    port = free_port()
    db_url = os.environ.get("DATABASE_URL", "")
    test_db = connection.settings_dict["NAME"]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if db_url:
        env["DATABASE_URL"] = db_url.rsplit("/", 1)[0] + f"/{test_db}"
    else:  # the embedded SQLite default: the test database is a file too
        env["DATABASE_URL"] = f"sqlite:///{test_db}"
    env |= {"SWITCHBOARD_VAR_DIR": str(tmp_path / "var"), "DEBUG": "false"}
    env |= {"SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false"}
    env |= {"PUBLIC_URL": f"http://127.0.0.1:{port}", **asgi_env}
    # The same secrets as this process: it reads the server's encrypted tokens and signs the
    # connect-session links the server checks.
    env |= {
        "SECRET_KEY": settings.SECRET_KEY,
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
    }
    log = tmp_path / "uvicorn.log"
    uvicorn = str(ROOT / ".venv/bin/uvicorn")
    host = ("--host", "127.0.0.1", "--port", str(port), "--lifespan", "off")
    proc = spawn([uvicorn, "config.asgi:application", *host], env=env, log=log)
    server = LiveServer(url=f"http://127.0.0.1:{port}", log=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"uvicorn exited ({proc.returncode}){server.tail()}"
            assert time.monotonic() < deadline, f"uvicorn not up within 30 s{server.tail()}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        yield server
    finally:
        stop(proc, grace=15)
