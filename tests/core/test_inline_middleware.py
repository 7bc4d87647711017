"""Django's middleware run inline on the event loop (core.inline_middleware), through Django's
async request path (AsyncClient loads the middleware in async mode, as uvicorn does)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from django.contrib.sessions.models import Session
from django.core.checks import run_checks
from django.db import connections
from django.test import AsyncClient, override_settings

from accounts.models import Organization
from core import inline_middleware
from tests.conftest import new_key
from tests.factories import PASSWORD, make_user

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest_asyncio.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    # The ORM calls above ran in asgiref's worker thread: close its connection there, or the
    # test database cannot be dropped at the end.
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.asyncio
async def test_api_answers_carry_the_security_headers(org: Organization) -> None:
    key = await _key(org)
    response = await AsyncClient().get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.asyncio
async def test_hooks_run_on_the_event_loop_thread(
    org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    original = inline_middleware.SecurityMiddleware.process_request

    def spy(self: Any, request: Any) -> Any:
        seen.append(threading.get_ident())
        return original(self, request)

    monkeypatch.setattr(inline_middleware.SecurityMiddleware, "process_request", spy)
    key = await _key(org)
    await AsyncClient().get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert seen == [threading.get_ident()]


@pytest.mark.asyncio
async def test_a_sign_in_saves_the_session_and_a_failed_one_shows_a_message() -> None:
    user = await sync_to_async(make_user)(email="inline@example.com", is_staff=True)
    client = AsyncClient()
    response = await client.post(
        "/admin/login/?next=/admin/", {"username": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302, response.content[:500]
    session_key = client.cookies["sessionid"].value
    assert await Session.objects.filter(session_key=session_key).aexists()
    followed = await client.get("/admin/")
    assert followed.status_code == 200


@pytest.mark.asyncio
async def test_csrf_is_enforced_on_unsafe_requests() -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    response = await client.post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403
    page = await client.get("/admin/login/")
    token = page.cookies["csrftoken"].value
    accepted = await client.post(
        "/admin/login/", {"username": "x", "password": "y", "csrfmiddlewaretoken": token}
    )
    assert accepted.status_code == 200  # the form again, with its error


@pytest.mark.parametrize("missing", ["SecurityMiddleware", "CsrfViewMiddleware"])
def test_deploy_check_notices_missing_security_middleware(missing: str) -> None:
    from django.conf import settings

    trimmed = [m for m in settings.MIDDLEWARE if not m.endswith(missing)]
    with override_settings(MIDDLEWARE=trimmed):
        ids = [m.id for m in run_checks(include_deployment_checks=True)]
    assert "switchboard.W005" in ids
    assert "switchboard.W005" not in [m.id for m in run_checks(include_deployment_checks=True)]


async def _key(org: Organization) -> str:
    return await sync_to_async(new_key)(org)
