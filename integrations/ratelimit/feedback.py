"""What a provider's answer says about the budget, read from its headers.

HubSpot reports its ten-second window on every answer (``X-HubSpot-RateLimit-Interval-
Milliseconds``, ``-Max``, ``-Remaining``) and, for private apps, the day
(``X-HubSpot-RateLimit-Daily``, ``-Daily-Remaining``); Salesforce reports the org's rolling
24-hour allocation (``Sforce-Limit-Info: api-usage=used/limit``). Any provider's 429 may carry
``Retry-After`` (seconds, or an HTTP date).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Final


@dataclass(frozen=True, slots=True)
class WindowReport:
    """The provider's count of one window: ``limit`` calls per ``seconds``, ``remaining`` left
    when it counted this call."""

    seconds: float
    limit: int
    remaining: int

    @property
    def used(self) -> int:
        return max(self.limit - self.remaining, 0)


@dataclass(frozen=True, slots=True)
class DailyReport:
    used: int
    limit: int


@dataclass(frozen=True, slots=True)
class Feedback:
    windows: list[WindowReport] = field(default_factory=list)
    daily: DailyReport | None = None
    retry_after: float | None = None  # seconds, from Retry-After


def _int(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); ``None`` when absent or bad."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(seconds, 0.0) if math.isfinite(seconds) else None


def hubspot(headers: Mapping[str, str]) -> Feedback:
    windows: list[WindowReport] = []
    interval = _int(headers, "x-hubspot-ratelimit-interval-milliseconds")
    limit = _int(headers, "x-hubspot-ratelimit-max")
    remaining = _int(headers, "x-hubspot-ratelimit-remaining")
    if interval and limit and remaining is not None:
        windows.append(WindowReport(interval / 1000, limit, min(remaining, limit)))
    daily: DailyReport | None = None
    day_limit = _int(headers, "x-hubspot-ratelimit-daily")
    day_remaining = _int(headers, "x-hubspot-ratelimit-daily-remaining")
    if day_limit and day_remaining is not None:
        daily = DailyReport(used=max(day_limit - day_remaining, 0), limit=day_limit)
    return Feedback(windows=windows, daily=daily, retry_after=retry_after(headers))


_API_USAGE: Final = re.compile(r"api-usage=(\d+)/(\d+)")


def salesforce(headers: Mapping[str, str]) -> Feedback:
    daily: DailyReport | None = None
    found = _API_USAGE.search(headers.get("sforce-limit-info", ""))
    if found and int(found.group(2)) > 0:
        daily = DailyReport(used=int(found.group(1)), limit=int(found.group(2)))
    return Feedback(daily=daily, retry_after=retry_after(headers))


def generic(headers: Mapping[str, str]) -> Feedback:
    return Feedback(retry_after=retry_after(headers))


READERS: Final[dict[str, Callable[[Mapping[str, str]], Feedback]]] = {
    "hubspot": hubspot,
    "salesforce": salesforce,
}


def read_feedback(provider: str, headers: Mapping[str, str]) -> Feedback:
    """The budget facts in an answer's headers (any case) from ``provider``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return READERS.get(provider, generic)(lowered)
