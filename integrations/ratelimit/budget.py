"""``AccountBudget``: the ``CallBudget`` of one provider account, shared by every process.

What it enforces, per (provider, external account id):

- every ``RateWindow`` of the provider's policy (those scoped to call kinds only for those
  kinds) as an exact rolling window (in the ``limits`` moving-window format), at the provider's
  limit minus a headroom (``RATE_LIMIT_HEADROOM``: a share of each window, rounded down);
- the daily allocation, when the policy or the provider's answers give one, minus a reserve
  (``RateLimitPolicy.daily_reserve``): past it ``acquire`` refuses at once;
- a block after the provider refused a call (429, or Salesforce's REQUEST_LIMIT_EXCEEDED),
  until its ``Retry-After``.

Why a margin, and stamps moved to the answer: the provider counts a call when it arrives, we
count it when we send it. Arrival comes later by a varying latency, so a call we counted as out
of the window may still be in the provider's. While a call is in flight a budget therefore looks
``RATE_LIMIT_MARGIN_SECONDS`` past each window before it lets another start (so a call counted
by the provider in the same window as an earlier one was counted by us too, as long as latency
stays under the margin). Once the answer is back (``observe``), the call arrived before it: its
stamp moves to the answer's time less the margin, so it holds its place in our window until one
window after the answer: never shorter than in the provider's, whatever the latency was, and
longer by no more than the latency (the margin only matters for calls still in flight, or never
answered). A budget also spends at most ``limit - headroom`` per window
(``RATE_LIMIT_HEADROOM``, a share of the window rounded down: other clients of the account,
clocks of other hosts; a window too small for a whole call of headroom keeps none). A saturated
client, one call after another, gets ``(limit - headroom) / (seconds + latency)``: for HubSpot's
190 per 10 s and 50 ms answers, 187 per 10.05 s, 98% of the ceiling; for its five searches per
second, 5 per 1.05 s, 95%.

Corrections come from the answers (``observe``): a window limit the provider reports replaces
the policy's (``RATE_LIMIT_OVERRIDES`` caps it), calls the provider counted that we did not are
added to our window, and the provider's daily figures replace ours.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from django.conf import settings
from django.db import DatabaseError
from limits.errors import StorageError
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from core.errors import ProviderRateLimited, ServiceUnavailable

from ..providers.base import CallKind, RateLimitPolicy, RateWindow
from .feedback import WindowReport, read_feedback
from .stores import BudgetStore, current_store

Source = Literal["policy", "setting", "provider"]

DAY: Final = 86_400.0
logger = logging.getLogger(__name__)

# What a budget storage raises when it is down (the call then fails, or goes uncorrected).
STORAGE_ERRORS: Final = (RedisError, DatabaseError, StorageError, OSError)

MIN_WAIT: Final = 0.005  # a lost race: look again almost at once
LEARNED_TTL: Final = 2 * DAY  # limits the provider reported are kept this long


@dataclass(frozen=True, slots=True)
class Window:
    """A policy window with the limits in force now."""

    name: str
    limit: int  # the provider's ceiling
    usable: int  # what we spend of it
    seconds: float
    kinds: tuple[CallKind, ...] | None
    source: Source
    # Pacing windows are our own smoothing, not a provider's limit: no latency margin.
    paced: bool = False

    def counts(self, kind: CallKind) -> bool:
        return self.kinds is None or kind in self.kinds


def pacing(windows: list[Window]) -> list[Window]:
    """A short window beside each long one, allowing that window's steady rate per
    ``RATE_LIMIT_PACE_SECONDS``: calls go out evenly instead of a whole window's worth at once
    followed by a long wait. Kinder to the provider, and a saturated client keeps the same
    throughput (the long window still decides it)."""
    pace = float(settings.RATE_LIMIT_PACE_SECONDS)
    margin = float(settings.RATE_LIMIT_MARGIN_SECONDS)
    paced: list[Window] = []
    for w in windows:
        if pace <= 0 or w.seconds < 2 * pace:
            continue
        limit = max(1, math.ceil(w.usable * pace / (w.seconds + margin)))
        paced.append(
            Window(
                name=f"{w.name}:pace",
                limit=limit,
                usable=limit,
                seconds=pace,
                kinds=w.kinds,
                source=w.source,
                paced=True,
            )
        )
    return paced


@dataclass(frozen=True, slots=True)
class Allocation:
    """The daily allocation in force now: the provider's count (``used``, when it reported one)
    plus ours since (``spent``), against ``usable`` (limit minus the reserve)."""

    name: str
    limit: int
    usable: int
    used: int
    spent: int
    reported_at: float | None
    resets_at: float | None  # midnight UTC, for allocations that reset then
    source: Source

    @property
    def remaining(self) -> int:
        return max(self.usable - self.used - self.spent, 0)

    def frees_in(self, now: float) -> float:
        """Seconds until the allocation may allow calls again."""
        if self.resets_at is not None:
            return max(self.resets_at - now, MIN_WAIT)
        recheck = float(settings.RATE_LIMIT_DAILY_RECHECK_SECONDS)
        since = now - self.reported_at if self.reported_at is not None else 0.0
        return max(recheck - since, MIN_WAIT)


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float
    reason: str  # the window, the allocation, or "blocked"


@dataclass(frozen=True, slots=True)
class Sent:
    """A call counted and not answered yet: its stamp in each provider window (not the pacing
    ones), moved to the answer's time by ``observe``."""

    budget: str  # the budget's state key
    stamp: float
    windows: tuple[tuple[str, float], ...]  # (window key, seconds)


# The call this task last took budget for (a transport observes its answer in the same task;
# concurrent calls run in tasks of their own, each with its own copy of the context).
_sent: ContextVar[Sent | None] = ContextVar("ratelimit_sent", default=None)


class WindowBudget(BaseModel):
    name: str
    limit: int = Field(description="The provider's ceiling for this window.")
    usable: int = Field(description="What Switchboard spends of it (limit minus headroom).")
    used: int = Field(description="Calls counted in it now.")
    remaining: int = Field(description="Calls that may start now.")
    seconds: float = Field(description="The window's length.")
    resets_in: float | None = Field(
        description="Seconds until the oldest counted call leaves it (one more call may "
        "start); for a daily allocation that resets at midnight, until then."
    )
    kinds: list[CallKind] | None = Field(description="The call kinds it counts; null: all.")
    source: Source = Field(description="Where the limit comes from.")


class BudgetSnapshot(BaseModel):
    """One provider account's rate-limit budget as every process sees it."""

    provider: str
    account: str = Field(description="The provider's account id (HubSpot hub, Salesforce org).")
    storage: str = Field(description="Where budgets live: redis or database.")
    windows: list[WindowBudget]
    blocked_until: datetime | None = Field(
        description="No call starts before this (the provider refused one and said when)."
    )
    provider_used: int | None = Field(description="The provider's own count of the day's calls.")
    provider_limit: int | None = Field(description="The daily allocation the provider reported.")
    reported_at: datetime | None = Field(description="When the provider last reported it.")


def headroom(limit: int) -> int:
    """Calls of a window left unspent: ``RATE_LIMIT_HEADROOM`` of it, rounded down (answers
    move each call's stamp to when it was surely counted, so a small window needs no spare
    call; see the module docstring)."""
    return max(0, math.floor(limit * float(settings.RATE_LIMIT_HEADROOM)))


def _jitter(wait: float) -> float:
    """A little randomness on every sleep, so waiters do not all wake in the same instant."""
    cap = min(float(settings.RATE_LIMIT_JITTER_SECONDS), max(0.01, wait * 0.1))
    return random.uniform(0, cap)  # noqa: S311 - spreading wake-ups, not security


def _when(unix: float | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix else None


def _next_midnight(now: float) -> float:
    today = datetime.fromtimestamp(now, UTC).date()
    return datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC).timestamp()


class AccountBudget:
    """The rate-limit budget of one provider account (see the module docstring).

    ``max_wait``: the longest ``acquire`` waits before it raises ``ProviderRateLimited``
    (default ``RATE_LIMIT_MAX_WAIT_SECONDS``)."""

    def __init__(
        self,
        provider: str,
        account: str,
        policy: RateLimitPolicy,
        *,
        max_wait: float | None = None,
    ) -> None:
        self.provider = provider
        self.account = str(account)
        self.policy = policy
        self.max_wait = max_wait
        self.state_key = f"state:{provider}:{self.account}"

    def __repr__(self) -> str:
        return f"AccountBudget({self.provider!r}, {self.account!r})"

    # --- keys and limits in force -----------------------------------------------------------

    def window_key(self, name: str) -> str:
        return f"{self.provider}/{self.account}/{name}"

    def daily_key(self, now: float) -> str:
        key = f"daily:{self.provider}:{self.account}"
        if self.policy.daily_reset == "midnight_utc":
            key += ":" + datetime.fromtimestamp(now, UTC).date().isoformat()
        return key

    def _overrides(self) -> Mapping[str, int]:
        found: Mapping[str, int] = settings.RATE_LIMIT_OVERRIDES.get(self.provider, {})
        return found

    def windows(self, state: Mapping[str, float]) -> list[Window]:
        """The policy's windows with the limits in force: the provider's (learned from its
        answers) over the policy's; an override setting caps both."""
        overrides = self._overrides()
        found: list[Window] = []
        source: Source
        for w in self.policy.windows:
            limit, source = w.limit, "policy"
            if w.name in overrides:
                limit, source = overrides[w.name], "setting"
            learned = int(state.get(f"limit:{w.name}", 0))
            if learned > 0 and (source != "setting" or learned < limit):
                limit, source = learned, "provider"
            found.append(
                Window(
                    name=w.name,
                    limit=limit,
                    usable=max(1, limit - headroom(limit)),
                    seconds=w.seconds,
                    kinds=tuple(w.kinds) if w.kinds is not None else None,
                    source=source,
                )
            )
        return found

    def allocation(self, daily: Mapping[str, float], now: float) -> Allocation | None:
        """The daily allocation in force, or ``None`` when neither the policy, a setting nor
        the provider gave one."""
        policy = self.policy
        overrides = self._overrides()
        configured = overrides.get(policy.daily_name, overrides.get("daily", policy.daily_limit))
        overridden = policy.daily_name in overrides or "daily" in overrides
        source: Source = "setting" if overridden else "policy"
        reported = int(daily.get("limit", 0))
        limit = configured
        if reported > 0 and (source != "setting" or configured is None or reported < configured):
            limit, source = reported, "provider"
        if not limit:
            return None
        reported_at = daily.get("at")
        used = int(daily.get("used", 0)) if reported > 0 else 0
        spent = max(int(daily.get("spent", 0)), 0)
        resets_at = _next_midnight(now) if policy.daily_reset == "midnight_utc" else None
        recheck = float(settings.RATE_LIMIT_DAILY_RECHECK_SECONDS)
        if resets_at is None and reported_at is not None and now - reported_at > recheck:
            # Rolling: an old report no longer says where the org stands; let a call find out.
            used = spent = 0
        reserve = max(1, math.ceil(limit * policy.daily_reserve)) if limit > 1 else 0
        return Allocation(
            name=policy.daily_name,
            limit=limit,
            usable=max(limit - reserve, 1),
            used=used,
            spent=spent,
            reported_at=reported_at,
            resets_at=resets_at,
            source=source,
        )

    def _match(self, seconds: float) -> RateWindow | None:
        """The policy window a provider report describes (same length; all calls first)."""
        same = [w for w in self.policy.windows if abs(w.seconds - seconds) < 1e-6]
        same.sort(key=lambda w: w.kinds is not None)
        return same[0] if same else None

    # --- acquire --------------------------------------------------------------------------------

    async def acquire(self, kind: CallKind = "read") -> float:
        """Wait until every window that counts ``kind`` (and the day) has room, count the call
        in each, and return the seconds waited. Raises ``ProviderRateLimited`` with
        ``retry_after`` instead of waiting past the longest wait."""
        store = current_store()
        longest = self.max_wait
        if longest is None:
            longest = float(settings.RATE_LIMIT_MAX_WAIT_SECONDS)
        started = time.monotonic()
        _sent.set(None)  # a call of this task that was never answered keeps its send stamp
        while True:
            try:
                wait = await self._take(store, kind)
            except STORAGE_ERRORS as exc:
                logger.warning(
                    "rate-limit storage unavailable",
                    extra={"provider": self.provider, "storage": store.name, "error": repr(exc)},
                )
                raise ServiceUnavailable(
                    "The rate-limit budget storage is unavailable; retry later.",
                    details={"provider": self.provider, "storage": store.name},
                ) from exc
            elapsed = time.monotonic() - started
            if isinstance(wait, Sent):
                _sent.set(wait)
                return elapsed
            if elapsed + wait.seconds > longest:
                raise self._refusal(wait)
            await asyncio.sleep(wait.seconds + _jitter(wait.seconds))

    def _refusal(self, wait: Wait) -> ProviderRateLimited:
        seconds = round(wait.seconds, 3)
        return ProviderRateLimited(
            f"The {self.provider} rate-limit budget ({wait.reason}) has no room for "
            f"{seconds:g} s; retry later.",
            retry_after=seconds,
            details={
                "provider": self.provider,
                "budget": wait.reason,
                "retry_after": seconds,
                "sent": False,
            },
        )

    async def _take(self, store: BudgetStore, kind: CallKind) -> Wait | Sent:
        """One try: the call as counted, else how long to wait."""
        now = time.time()
        daily_key = self.daily_key(now)
        state, daily = await store.read([self.state_key, daily_key])
        blocked = state.get("blocked_until", 0.0)
        if blocked > now:
            return Wait(blocked - now, "blocked")
        windows = [w for w in self.windows(state) if w.counts(kind)]
        windows += pacing(windows)
        waits: list[Wait] = []
        for w in windows:
            margin = 0.0 if w.paced else float(settings.RATE_LIMIT_MARGIN_SECONDS)
            oldest, used = await store.count(self.window_key(w.name), w.usable, w.seconds + margin)
            if used >= w.usable:
                waits.append(Wait(max(oldest + w.seconds + margin - now, MIN_WAIT), w.name))
        if waits:
            return max(waits, key=lambda w: w.seconds)
        allocation = self.allocation(daily, now)
        if allocation is not None and allocation.remaining <= 0:
            return Wait(allocation.frees_in(now), allocation.name)
        # Every window had room a moment ago; each count below is atomic, the shortest window
        # first (if another process won the race for a slot, look again). It looks past the
        # window by the margin too: calls there may still be in the provider's window.
        stamp = time.time()
        for w in sorted(windows, key=lambda w: w.seconds):
            margin = 0.0 if w.paced else float(settings.RATE_LIMIT_MARGIN_SECONDS)
            key = self.window_key(w.name)
            if not await store.hit(key, w.usable, w.seconds + margin, at=stamp):
                return Wait(MIN_WAIT, w.name)
        if allocation is not None:
            ttl = 2 * DAY if allocation.resets_at is not None else DAY
            spent = (await store.update(daily_key, ttl=ttl, add={"spent": 1}))["spent"]
            if allocation.used + spent > allocation.usable:
                await store.update(daily_key, ttl=ttl, add={"spent": -1})
                return Wait(allocation.frees_in(now), allocation.name)
        counted = tuple((self.window_key(w.name), w.seconds) for w in windows if not w.paced)
        return Sent(self.state_key, stamp, counted)

    # --- observe ------------------------------------------------------------------------------

    async def observe(self, *, status: int | None, headers: Mapping[str, str]) -> None:
        """Correct the budget from an answer (see the module docstring). A refusal (429;
        transports report Salesforce's REQUEST_LIMIT_EXCEEDED as one) blocks every call of
        the account until ``Retry-After`` (else the reported window's length, else
        ``RATE_LIMIT_BLOCK_SECONDS``)."""
        if status is None:
            return
        store = current_store()
        sent = _sent.get()
        try:
            if sent is not None and sent.budget == self.state_key:
                _sent.set(None)
                await self._answered(store, sent)
            await self._observe(store, status, headers)
        except STORAGE_ERRORS as exc:  # the answer stands; only the correction is lost
            logger.warning(
                "rate-limit budget not corrected",
                extra={"provider": self.provider, "storage": store.name, "error": repr(exc)},
            )

    async def _answered(self, store: BudgetStore, sent: Sent) -> None:
        """The call's answer is here, so the provider counted it by now: it holds its place in
        each window until one window from now, however long it took (module docstring)."""
        stamp = time.time() - float(settings.RATE_LIMIT_MARGIN_SECONDS)
        for key, seconds in sent.windows:
            await store.restamp(key, sent.stamp, stamp, seconds)

    async def _observe(self, store: BudgetStore, status: int, headers: Mapping[str, str]) -> None:
        feedback = read_feedback(self.provider, headers)
        now = time.time()
        learned: dict[str, float] = {}
        for report in feedback.windows:
            window = self._match(report.seconds)
            if window is not None:
                learned[f"limit:{window.name}"] = float(report.limit)
        blocked: dict[str, float] = {}
        ttl = LEARNED_TTL
        if status == 429:
            wait = feedback.retry_after
            if wait is None and feedback.windows:
                wait = max(r.seconds for r in feedback.windows)
            if wait is None:
                wait = float(settings.RATE_LIMIT_BLOCK_SECONDS)
            blocked["blocked_until"] = now + wait
            ttl = max(ttl, wait + 60)
        if learned or blocked:
            await store.update(self.state_key, ttl=ttl, put=learned, maximum=blocked)
        if status != 429 and feedback.windows:
            await self._correct(store, feedback.windows, learned)
        if feedback.daily is not None:
            await store.update(
                self.daily_key(now),
                ttl=2 * DAY,
                put={
                    "used": float(feedback.daily.used),
                    "limit": float(feedback.daily.limit),
                    "at": now,
                    "spent": 0.0,
                },
            )

    async def _correct(
        self, store: BudgetStore, reports: list[WindowReport], learned: Mapping[str, float]
    ) -> None:
        """Count the calls the provider counted and we did not (someone else's, or ours
        that we already let go of): our window then holds at least the provider's count."""
        margin = float(settings.RATE_LIMIT_MARGIN_SECONDS)
        windows = {w.name: w for w in self.windows(learned)}
        for report in reports:
            matched = self._match(report.seconds)
            if matched is None:
                continue
            w = windows[matched.name]
            key = self.window_key(w.name)
            _, ours = await store.count(key, w.usable, w.seconds + margin)
            missing = min(report.used, w.usable) - ours
            if missing > 0:
                await store.hit(key, w.usable, w.seconds, amount=missing)

    # --- visibility ---------------------------------------------------------------------------

    async def snapshot(self) -> BudgetSnapshot:
        store = current_store()
        now = time.time()
        state, daily = await store.read([self.state_key, self.daily_key(now)])
        margin = float(settings.RATE_LIMIT_MARGIN_SECONDS)
        shown: list[WindowBudget] = []
        for w in self.windows(state):
            oldest, used = await store.count(self.window_key(w.name), w.usable, w.seconds + margin)
            shown.append(
                WindowBudget(
                    name=w.name,
                    limit=w.limit,
                    usable=w.usable,
                    used=used,
                    remaining=max(w.usable - used, 0),
                    seconds=w.seconds,
                    resets_in=round(max(oldest + w.seconds + margin - now, 0), 3) if used else None,
                    kinds=list(w.kinds) if w.kinds is not None else None,
                    source=w.source,
                )
            )
        allocation = self.allocation(daily, now)
        if allocation is not None:
            shown.append(
                WindowBudget(
                    name=allocation.name,
                    limit=allocation.limit,
                    usable=allocation.usable,
                    used=allocation.used + allocation.spent,
                    remaining=allocation.remaining,
                    seconds=DAY,
                    resets_in=round(allocation.resets_at - now, 3)
                    if allocation.resets_at is not None
                    else None,
                    kinds=None,
                    source=allocation.source,
                )
            )
        blocked = state.get("blocked_until", 0.0)
        reported = daily.get("limit")
        return BudgetSnapshot(
            provider=self.provider,
            account=self.account,
            storage=store.name,
            windows=shown,
            blocked_until=_when(blocked) if blocked > now else None,
            provider_used=int(daily["used"]) if reported and "used" in daily else None,
            provider_limit=int(reported) if reported else None,
            reported_at=_when(daily.get("at")) if reported else None,
        )

    async def reset(self) -> None:
        """Forget everything counted and learned for this account (tests, operators)."""
        store = current_store()
        for w in self.policy.windows:
            await store.clear_window(self.window_key(w.name))
        now = time.time()
        days = {self.daily_key(now + offset) for offset in (-DAY, 0.0, DAY)}
        await store.delete([self.state_key, *sorted(days)])
