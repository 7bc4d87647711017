"""Shared rate-limit budgets (integrations.ratelimit) on real storage: Redis at $REDIS_URL and
the database (PostgreSQL in CI), each test on an account of its own.

Timing assertions use loose bounds: a wait must cover what the window needs (never less) and
not much more (never a whole extra window).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from limits import RateLimitItemPerSecond
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.storage import storage_from_string

from core.errors import ProviderRateLimited, ServiceUnavailable
from integrations.providers.base import CallKind, RateLimitPolicy, RateWindow
from integrations.providers.hubspot.provider import HubSpotProvider
from integrations.providers.salesforce.provider import SalesforceProvider
from integrations.ratelimit import budget_for, headroom
from integrations.ratelimit.budget import AccountBudget
from integrations.ratelimit.database import DatabaseStorage
from integrations.ratelimit.feedback import read_feedback
from integrations.ratelimit.stores import current_store, storage_choice

HUBSPOT = HubSpotProvider.rate_limit
SALESFORCE = SalesforceProvider.rate_limit


def run(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, **kwargs: Any) -> Any:
    """Run async code as the app's sync callers do (its database work stays on this thread)."""
    return async_to_sync(fn)(*args, **kwargs)


def most_in_any_window(stamps: list[float], seconds: float) -> int:
    """The largest number of ``stamps`` inside any window of ``seconds``."""
    ordered, best, first = sorted(stamps), 0, 0
    for last, stamp in enumerate(ordered):
        while ordered[first] <= stamp - seconds:
            first += 1
        best = max(best, last - first + 1)
    return best


def policy(*windows: RateWindow, **fields: Any) -> RateLimitPolicy:
    return RateLimitPolicy(windows=list(windows), **fields)


def fresh(
    rules: RateLimitPolicy, *, provider: str = "test", max_wait: float = 30.0
) -> AccountBudget:
    return AccountBudget(provider, uuid.uuid4().hex, rules, max_wait=max_wait)


@pytest.fixture(params=["redis", "database"])
def storage(request: pytest.FixtureRequest, settings: Any) -> str:
    """Each test twice: on Redis and on the database storage."""
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("REDIS_URL is not set")
    else:
        request.getfixturevalue("transactional_db")
    settings.RATE_LIMIT_STORAGE = request.param
    return str(request.param)


# --- the rules ---------------------------------------------------------------------------------


def test_headroom_leaves_at_least_95_percent_of_a_window(settings: Any) -> None:
    assert settings.RATE_LIMIT_HEADROOM == 0.02
    assert headroom(110) == 2  # HubSpot's ten seconds: 108 of 110
    assert headroom(190) == 3  # 187 of 190 (Professional and Enterprise)
    assert headroom(20) == 0  # too small for a whole call of headroom
    assert headroom(5) == 0  # HubSpot's five searches per second, all of them
    assert headroom(1) == 0
    assert (110 - headroom(110)) / 110 >= 0.95
    # Saturated, a client whose answers take 50 ms gets usable / (window + 0.05) per second:
    # still >= 95%, in the ten seconds and in the one second alike.
    assert (190 - headroom(190)) / (10 + 0.05) >= 0.95 * 190 / 10
    assert (5 - headroom(5)) / (1 + 0.05) >= 0.95 * 5


def test_answers_are_read_for_their_budget_facts() -> None:
    hubspot = read_feedback(
        "hubspot",
        {
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Max": "110",
            "X-HubSpot-RateLimit-Remaining": "97",
            "X-HubSpot-RateLimit-Daily": "250000",
            "X-HubSpot-RateLimit-Daily-Remaining": "249000",
            "Retry-After": "3",
        },
    )
    assert [(w.seconds, w.limit, w.remaining, w.used) for w in hubspot.windows] == [
        (10.0, 110, 97, 13)
    ]
    assert hubspot.daily is not None
    assert (hubspot.daily.used, hubspot.daily.limit) == (1000, 250000)
    assert hubspot.retry_after == 3
    salesforce = read_feedback("salesforce", {"Sforce-Limit-Info": "api-usage=4012/15000"})
    assert salesforce.daily is not None
    assert (salesforce.daily.used, salesforce.daily.limit) == (4012, 15000)
    assert salesforce.windows == []
    assert read_feedback("hubspot", {"X-HubSpot-RateLimit-Max": "nonsense"}).windows == []
    assert read_feedback("other", {"retry-after": "-5"}).retry_after == 0


def test_the_storage_follows_the_setting(settings: Any) -> None:
    settings.RATE_LIMIT_STORAGE = "auto"
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert storage_choice() == "redis"
    settings.REDIS_URL = ""
    assert storage_choice() == "database"
    settings.RATE_LIMIT_STORAGE = "redis"
    with pytest.raises(ImproperlyConfigured):
        storage_choice()
    settings.RATE_LIMIT_STORAGE = "memory"
    with pytest.raises(ImproperlyConfigured):
        storage_choice()
    settings.RATE_LIMIT_STORAGE = "database"
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert storage_choice() == "database"


# --- sharing and waiting -----------------------------------------------------------------------


def test_threads_never_exceed_a_window_and_reach_its_ceiling(storage: str) -> None:
    rules = policy(
        RateWindow(name="all", limit=10, seconds=1),  # no headroom in windows this small
        RateWindow(name="search", limit=4, seconds=2, kinds=["search"]),
    )
    account = uuid.uuid4().hex
    stamps: list[tuple[float, CallKind]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        async def go() -> None:
            budget = AccountBudget("test", account, rules, max_wait=60)

            async def one(i: int) -> None:
                kind: CallKind = "search" if i % 4 == 0 else "read"
                await budget.acquire(kind)
                with lock:
                    stamps.append((time.time(), kind))

            await asyncio.gather(*(one(i) for i in range(n)))

        try:
            async_to_sync(go)()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(8,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(stamps) == 32
    every = [s for s, _ in stamps]
    searches = [s for s, kind in stamps if kind == "search"]
    assert len(searches) == 8
    assert most_in_any_window(every, 1.0) == 10  # the ceiling, and never more
    assert most_in_any_window(searches, 2.0) <= 4


def test_a_call_waits_as_long_as_needed_and_no_longer(storage: str, settings: Any) -> None:
    settings.RATE_LIMIT_PACE_SECONDS = 0  # the window alone (pacing has its own test)
    budget = fresh(policy(RateWindow(name="w", limit=4, seconds=2)))  # no headroom

    async def go() -> tuple[list[float], float, float, float]:
        began = time.monotonic()
        first = [await budget.acquire() for _ in range(4)]
        started = time.monotonic()
        fifth = await budget.acquire()
        done = time.monotonic()
        return first, fifth, done - started, done - began

    first, fifth, elapsed, total = run(go)
    assert max(first) < 0.3
    needed = 2 + settings.RATE_LIMIT_MARGIN_SECONDS  # until the first call leaves the window
    # Measured from the first call (the storage may be slow under load), the fifth starts once
    # the first has left the window, and not much later.
    assert needed - 0.2 <= total <= needed + 0.6
    assert fifth > 1.0
    assert elapsed == pytest.approx(fifth, abs=0.05)


def test_an_answer_moves_its_call_to_when_it_came(storage: str, settings: Any) -> None:
    """A quick answer frees the call's place one window after the answer rather than a window
    and the margin after it was sent; a slow one holds it until one window after its answer;
    a call never answered (a timeout) keeps its place from when it was sent."""
    settings.RATE_LIMIT_PACE_SECONDS = 0
    settings.RATE_LIMIT_JITTER_SECONDS = 0
    settings.RATE_LIMIT_MARGIN_SECONDS = 0.5  # large, so that the three cases differ
    budget = fresh(policy(RateWindow(name="w", limit=1, seconds=1)))

    async def go() -> tuple[float, float, float]:
        await budget.acquire()
        await budget.observe(status=200, headers={})  # answered at once
        quick = await budget.acquire()
        await asyncio.sleep(0.8)  # answered later than the margin
        await budget.observe(status=200, headers={})
        slow = await budget.acquire()  # and this one is never answered
        unanswered = await budget.acquire()
        return quick, slow, unanswered

    quick, slow, unanswered = run(go)
    assert 0.85 <= quick <= 1.3  # not 1.5
    assert 0.95 <= slow <= 1.45  # not 1.5 - 0.8
    assert 1.4 <= unanswered <= 1.95  # the window and the margin


def test_past_the_longest_wait_acquire_refuses_at_once(storage: str, settings: Any) -> None:
    settings.RATE_LIMIT_PACE_SECONDS = 0
    budget = fresh(policy(RateWindow(name="w", limit=4, seconds=2)), max_wait=1.0)

    async def go() -> float:
        for _ in range(4):
            await budget.acquire("write")
        started = time.monotonic()
        with pytest.raises(ProviderRateLimited) as refused:
            await budget.acquire("write")
        assert refused.value.details["budget"] == "w"
        assert refused.value.details["sent"] is False
        assert refused.value.retry_after is not None
        assert 1.5 <= refused.value.retry_after <= 2 + settings.RATE_LIMIT_MARGIN_SECONDS + 0.1
        return time.monotonic() - started

    assert run(go) < 0.5  # no sleeping before refusing


def test_only_searches_count_in_the_search_window(storage: str, settings: Any) -> None:
    budget = fresh(HUBSPOT, provider="hubspot", max_wait=5)

    async def go() -> tuple[float, float, float]:
        started = time.monotonic()
        for _ in range(5):  # HubSpot's five per second
            assert await budget.acquire("search") < 0.3
        read = await budget.acquire("read")
        search = await budget.acquire("search")
        return read, search, time.monotonic() - started

    read, search, total = run(go)
    assert read < 0.3
    assert search > 0.3  # the sixth search waited for the first to leave the window...
    # ...until a second (plus the margin) after the first search, however slow the storage.
    assert 1 + settings.RATE_LIMIT_MARGIN_SECONDS - 0.2 <= total <= 2.5


# --- corrections from the provider ---------------------------------------------------------------


HEADERS_10S = {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}


def test_hubspot_headers_correct_the_budget(storage: str, settings: Any) -> None:
    budget = fresh(HUBSPOT, provider="hubspot", max_wait=1)

    async def window() -> Any:
        snapshot = await budget.snapshot()
        return next(w for w in snapshot.windows if w.name == "ten_secondly_rolling")

    async def go() -> None:
        # HubSpot counted 70 calls we never made (another process without this budget).
        limits = {"X-HubSpot-RateLimit-Max": "110", "X-HubSpot-RateLimit-Remaining": "40"}
        await budget.observe(status=200, headers=HEADERS_10S | limits)
        w = await window()
        assert (w.limit, w.usable, w.used, w.remaining) == (110, 108, 70, 38)
        # More left than we think changes nothing: we never spend what we cannot see.
        limits = {"X-HubSpot-RateLimit-Max": "110", "X-HubSpot-RateLimit-Remaining": "100"}
        await budget.observe(status=200, headers=HEADERS_10S | limits)
        assert (await window()).used == 70
        # A smaller limit reported is learned, for every process.
        limits = {"X-HubSpot-RateLimit-Max": "20", "X-HubSpot-RateLimit-Remaining": "19"}
        await budget.observe(status=200, headers=HEADERS_10S | limits)
        other = budget_for("hubspot", budget.account)
        shared = next(w for w in (await other.snapshot()).windows if w.name != "secondly")
        assert (shared.limit, shared.usable, shared.remaining, shared.source) == (
            20,
            20,
            0,
            "provider",
        )
        with pytest.raises(ProviderRateLimited) as refused:
            await budget.acquire()
        assert refused.value.details["budget"] == "ten_secondly_rolling"
        assert refused.value.retry_after is not None
        assert 9 <= refused.value.retry_after <= 10 + settings.RATE_LIMIT_MARGIN_SECONDS + 0.1

    run(go)
    # An override setting caps what the provider reports.
    settings.RATE_LIMIT_OVERRIDES = {"hubspot": {"ten_secondly_rolling": 15}}
    capped = run(window)
    assert (capped.limit, capped.source) == (15, "setting")


def test_a_429_blocks_every_call_until_retry_after(storage: str) -> None:
    budget = fresh(policy(RateWindow(name="w", limit=100, seconds=10)), max_wait=5)

    async def go() -> float:
        await budget.observe(status=429, headers={"Retry-After": "2"})
        snapshot = await budget.snapshot()
        assert snapshot.blocked_until is not None
        assert 1.5 <= snapshot.blocked_until.timestamp() - time.time() <= 2.1
        return await budget.acquire()

    assert 1.8 <= run(go) <= 2.7

    # Without Retry-After HubSpot's window length is the wait; past the longest wait: refused.
    hub = fresh(HUBSPOT, provider="hubspot", max_wait=1)

    async def refused() -> ProviderRateLimited:
        limits = {"X-HubSpot-RateLimit-Max": "110", "X-HubSpot-RateLimit-Remaining": "0"}
        await hub.observe(status=429, headers=HEADERS_10S | limits)
        with pytest.raises(ProviderRateLimited) as caught:
            await hub.acquire()
        return caught.value

    error = run(refused)
    assert error.details["budget"] == "blocked"
    assert error.retry_after is not None
    assert 9 <= error.retry_after <= 10.1


def test_hubspot_daily_allocation_keeps_its_reserve(storage: str) -> None:
    budget = fresh(HUBSPOT, provider="hubspot", max_wait=5)
    daily = {"X-HubSpot-RateLimit-Daily": "100", "X-HubSpot-RateLimit-Daily-Remaining": "10"}

    async def go() -> None:
        await budget.observe(status=200, headers=daily)
        for _ in range(5):  # 90 used; 95 usable (5% reserve)
            assert await budget.acquire() < 0.3
        with pytest.raises(ProviderRateLimited) as refused:
            await budget.acquire()
        assert refused.value.details["budget"] == "daily"
        assert refused.value.retry_after is not None
        assert refused.value.retry_after > 5  # midnight UTC, past the longest wait
        snapshot = await budget.snapshot()
        day = next(w for w in snapshot.windows if w.name == "daily")
        assert (day.limit, day.usable, day.used, day.remaining) == (100, 95, 95, 0)
        assert day.resets_in is not None
        assert 0 < day.resets_in <= 86_400
        assert (snapshot.provider_used, snapshot.provider_limit) == (90, 100)

    run(go)


def test_salesforce_allocation_stops_at_95_percent(storage: str, settings: Any) -> None:
    budget = fresh(SALESFORCE, provider="salesforce", max_wait=5)

    async def go() -> None:
        await budget.observe(status=200, headers={"Sforce-Limit-Info": "api-usage=93/100"})
        await budget.acquire()
        await budget.acquire()
        with pytest.raises(ProviderRateLimited) as refused:
            await budget.acquire()
        assert refused.value.details["budget"] == "daily_api_requests"
        assert refused.value.retry_after == pytest.approx(
            settings.RATE_LIMIT_DAILY_RECHECK_SECONDS, abs=5
        )
        # The rolling 24 hours freed calls: the next answer says so.
        await budget.observe(status=200, headers={"Sforce-Limit-Info": "api-usage=60/100"})
        await budget.acquire()
        # An old report no longer holds calls back: one call finds out where the org stands.
        old = time.time() - settings.RATE_LIMIT_DAILY_RECHECK_SECONDS - 60
        await current_store().update(
            budget.daily_key(time.time()),
            ttl=3600,
            put={"used": 99, "limit": 100, "at": old, "spent": 0},
        )
        await budget.acquire()

    run(go)


def test_a_configured_daily_limit_counts_our_own_calls(storage: str) -> None:
    budget = fresh(policy(daily_limit=3), max_wait=1)  # 3 minus a reserve of one

    async def go() -> None:
        await budget.acquire()
        await budget.acquire()
        with pytest.raises(ProviderRateLimited):
            await budget.acquire()

    run(go)


def test_without_storage_a_call_fails_as_unavailable(settings: Any) -> None:
    settings.RATE_LIMIT_STORAGE = "redis"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    budget = fresh(policy(RateWindow(name="w", limit=5, seconds=1)))

    async def go() -> None:
        with pytest.raises(ServiceUnavailable):
            await budget.acquire()
        # An answer is never lost because its correction could not be stored.
        await budget.observe(status=429, headers={"Retry-After": "1"})

    run(go)


# --- the database storage is a limits storage ---------------------------------------------------


def test_the_database_storage_works_with_the_limits_strategies(transactional_db: None) -> None:
    storage = storage_from_string("async+django://")
    assert isinstance(storage, DatabaseStorage)
    moving = MovingWindowRateLimiter(storage)
    fixed = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(3, 2)
    key = uuid.uuid4().hex

    async def go() -> None:
        assert await storage.check()
        assert [await moving.hit(item, key) for _ in range(4)] == [True, True, True, False]
        assert not await moving.test(item, key)
        stats = await moving.get_window_stats(item, key)
        assert stats.remaining == 0
        assert 1.5 <= stats.reset_time - time.time() <= 2.0
        await moving.clear(item, key)
        assert await moving.test(item, key)
        counted = [await fixed.hit(item, "fixed", key) for _ in range(4)]
        assert counted == [True, True, True, False]
        assert await storage.get(item.key_for("fixed", key)) == 4
        assert 1 <= await storage.get_expiry(item.key_for("fixed", key)) - time.time() <= 2

    run(go)


def test_calls_are_paced_evenly_through_a_long_window(storage: str, settings: Any) -> None:
    settings.RATE_LIMIT_PACE_SECONDS = 1
    settings.RATE_LIMIT_JITTER_SECONDS = 0
    budget = fresh(policy(RateWindow(name="w", limit=20, seconds=4)))  # no headroom: 20

    async def go() -> list[float]:
        started = time.monotonic()
        stamps = []
        for _ in range(12):
            await budget.acquire()
            stamps.append(time.monotonic() - started)
        return stamps

    stamps = run(go)
    # The window's steady rate per second: ceil(20 / (4 + margin)) = 5, never a burst of 20.
    per_second = math.ceil(20 / (4 + settings.RATE_LIMIT_MARGIN_SECONDS))
    assert stamps[0] < 0.3
    assert stamps[per_second] >= 0.8  # the next one waited for the pacing window
    for t in stamps:
        assert sum(1 for u in stamps if t <= u < t + 0.95) <= per_second
    assert stamps[-1] < 6  # paced, not held back by the long window (20 usable)
