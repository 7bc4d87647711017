"""The shared budgets end to end: connections' CRM clients (``crm_client_for``) against the
sandbox, which enforces HubSpot's windows and Salesforce's daily allocation for real. No faults
are injected here: ``rate_limited`` counts only the sandbox's own limit enforcement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from accounts.models import Organization
from core.errors import ErrorCode
from integrations.models import Connection, ProviderCallLog
from integrations.providers.unified import SearchQuery
from integrations.ratelimit import budget_reset, budget_snapshot
from integrations.services.calls import crm_client_for
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok, new_key
from tests.factories import make_user
from tests.integrations.test_salesforce_connections import make_sf_connection
from tests.integrations.test_tokens import make_connection

HUB = "62515"  # the sandbox's acme portal (make_connection)


@pytest.fixture(autouse=True)
def clean_budgets(db: None, sandbox: Any, sandbox_settings: Any) -> Iterator[None]:
    """The sandbox's accounts start and end with empty budgets (other tests use them too;
    without Redis the budgets live in the database)."""
    accounts = [("hubspot", HUB)] + [("salesforce", o["id"]) for o in sandbox.sf_orgs()]

    def reset() -> None:
        for provider, account in accounts:
            async_to_sync(budget_reset)(provider, account)

    reset()
    yield
    reset()


def snapshot_window(connection: Connection, name: str) -> Any:
    snapshot = async_to_sync(budget_snapshot)(connection.provider, connection.external_account_id)
    return next(w for w in snapshot.windows if w.name == name)


def fire(connection: Connection, calls: int, searches: int = 0) -> list[Any]:
    """``calls`` list calls and ``searches`` searches, all at once, through the connection's
    client (its tokens, call log and shared budget)."""
    client = crm_client_for(connection)

    async def go() -> list[Any]:
        pending = [client.list("contact", limit=1) for _ in range(calls)]
        pending += [client.search("contact", SearchQuery(limit=1)) for _ in range(searches)]
        return list(await asyncio.gather(*pending))

    return list(async_to_sync(go)())


def test_concurrent_calls_stay_under_hubspots_limit(
    sandbox: Any, sandbox_settings: Any, org: Organization, settings: Any
) -> None:
    sandbox.limits(per_10s=20)
    settings.RATE_LIMIT_OVERRIDES = {"hubspot": {"ten_secondly_rolling": 20}}
    connection = make_connection(sandbox, org)
    started = time.monotonic()
    results = fire(connection, 40, searches=10)
    elapsed = time.monotonic() - started
    failed = [r.error for r in results if r.error is not None]
    assert failed == []
    counters = sandbox.counters()
    assert counters["rate_limited"] == 0
    assert counters["total"] == 50
    # 20 per ten seconds (no headroom in a window this small): the last calls waited for two
    # refills.
    assert elapsed >= 20
    logs = list(ProviderCallLog.objects.filter(connection=connection))
    assert len(logs) == 50
    waited = sorted(log.waited_ms for log in logs)
    assert sum(1 for w in waited if w > 0) >= 50 - 20
    assert waited[-1] >= 19_000
    connection.refresh_from_db()
    assert connection.budget_waited_ms == pytest.approx(sum(waited), rel=0.001)
    window = snapshot_window(connection, "ten_secondly_rolling")
    assert (window.limit, window.usable, window.source) == (20, 20, "setting")


def test_the_budget_learns_hubspots_limit_from_its_answers(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    sandbox.limits(per_10s=20)  # the policy says 110; HubSpot's headers say 20
    connection = make_connection(sandbox, org)
    assert fire(connection, 1)[0].error is None
    learned = snapshot_window(connection, "ten_secondly_rolling")
    assert (learned.limit, learned.usable, learned.used, learned.source) == (20, 20, 1, "provider")
    results = fire(connection, 30)
    assert [r.error for r in results if r.error is not None] == []
    assert sandbox.counters()["rate_limited"] == 0
    assert sandbox.counters()["total"] == 31


def test_a_refreshed_attempt_takes_budget_again(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    connection = make_connection(sandbox, org)
    sandbox.expire_tokens()
    assert fire(connection, 1)[0].error is None
    attempts = list(
        ProviderCallLog.objects.filter(connection=connection).values_list("attempt", "status")
    )
    assert sorted(attempts) == [(1, 401), (2, 200)]
    assert snapshot_window(connection, "ten_secondly_rolling").used == 2


def test_hubspots_daily_allocation_is_kept_with_a_reserve(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    sandbox.config(daily_headers=True)
    sandbox.limits(daily=20)
    connection = make_connection(sandbox, org)
    client = crm_client_for(connection)

    async def one_by_one() -> list[Any]:
        return [await client.list("contact", limit=1) for _ in range(21)]

    results = async_to_sync(one_by_one)()
    assert [r.error for r in results[:19]] == [None] * 19  # 20 less a 5% reserve of one
    for refused in results[19:]:
        assert refused.error is not None
        assert refused.error.code == ErrorCode.RATE_LIMITED
        assert refused.error.details["sent"] is False
        assert refused.error.retry_after > 0
    assert sandbox.counters()["total"] == 19
    assert sandbox.counters()["rate_limited"] == 0
    day = snapshot_window(connection, "daily")
    assert (day.limit, day.usable, day.remaining, day.source) == (20, 19, 0, "provider")


def test_salesforce_calls_stop_at_95_percent_of_the_allocation(
    sandbox: Any, sandbox_settings: Any, org: Organization, settings: Any
) -> None:
    sandbox.sf_limits(daily=100, used=88, org="acme")
    connection = make_sf_connection(sandbox, org)
    client = crm_client_for(connection)

    async def until_refused() -> list[Any]:
        results = []
        for _ in range(12):
            results.append(await client.list("contact", limit=1))
            if results[-1].error is not None:
                break
        return results

    results = async_to_sync(until_refused)()
    refused = results[-1].error
    assert refused is not None, "the budget never refused"
    assert refused.code == ErrorCode.RATE_LIMITED
    assert refused.details["sent"] is False
    assert refused.retry_after == pytest.approx(settings.RATE_LIMIT_DAILY_RECHECK_SECONDS, abs=5)
    assert all(r.error is None for r in results[:-1])
    assert sandbox.counters()["rate_limited"] == 0
    used = sandbox.sf_limits()["used"]["acme"]
    assert used == 95  # 5 of 100 left for the org's other apps
    snapshot = async_to_sync(budget_snapshot)("salesforce", connection.external_account_id)
    assert (snapshot.provider_used, snapshot.provider_limit) == (95, 100)


def test_the_budget_is_shown_in_the_api_and_the_admin(
    sandbox: Any, sandbox_settings: Any, org: Organization, other_org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    assert fire(connection, 3, searches=1)[0].error is None
    Connection.objects.filter(pk=connection.pk).update(budget_waited_ms=1500)
    shown = assert_envelope_ok(api.get(f"/api/v1/connections/{connection.pk}/budget"))
    assert shown["connection_id"] == str(connection.pk)
    assert shown["provider"] == "hubspot"
    assert shown["account"] == HUB
    assert shown["waited_seconds_total"] == 1.5
    assert shown["blocked_until"] is None
    windows = {w["name"]: w for w in shown["windows"]}
    assert windows["ten_secondly_rolling"]["used"] == 4
    assert windows["ten_secondly_rolling"]["limit"] == 110
    assert windows["ten_secondly_rolling"]["remaining"] == 108 - 4
    assert 0 < windows["ten_secondly_rolling"]["resets_in"] <= 10.5
    assert windows["secondly"]["kinds"] == ["search"]
    assert shown["storage"] in {"redis", "database"}
    outsider = Api(key=new_key(other_org))
    assert_envelope_error(
        outsider.get(f"/api/v1/connections/{connection.pk}/budget"), 404, "not_found"
    )

    staff = Client()
    staff.force_login(make_user(is_staff=True, is_superuser=True))
    page = staff.get(f"/admin/integrations/connection/{connection.pk}/change/").content.decode()
    assert "Rate-limit budget left" in page
    assert "ten_secondly_rolling: 104 of 108 left" in page
    assert "1.5 s" in page  # waited for budget
    listing = staff.get("/admin/integrations/connection/").content.decode()
    assert "1.5 s" in listing
