from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from django.test import Client

from accounts.audit import Actor
from accounts.models import Organization
from accounts.services import api_key_create
from tests.factories import make_organization

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
