"""Per-caller throttles for our own API: one atomic Redis round trip per request, failing open.

Ninja's stock throttles keep each caller's whole request history (a list of up to ``rate``
timestamps) in Django's cache and read-modify-write it on every request: with 6000/m that is
a pickle of thousands of floats each way, a race between concurrent requests, and, under ASGI,
a new cache client (and Redis connection) for every request. Here the ``limits`` library's
sliding-window counter does the counting in one Lua call on storage shared by every process
(Redis when ``REDIS_URL`` is set, process memory for the embedded stack), through one client
per process.

A throttle that cannot reach its storage lets the request through and says so in the log:
refusing every request would turn a Redis outage into an API outage (and hide it from /health).
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from ninja.throttling import BaseThrottle

logger = logging.getLogger("switchboard.throttle")

_PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
# How long the refused caller should wait; per request (a context), never shared between them.
_wait: ContextVar[float | None] = ContextVar("throttle_wait", default=None)


def parse_rate(rate: str) -> RateLimitItem:
    """``"6000/m"``, ``"10/s"``, ``"100/5m"``: requests per period."""
    try:
        count, period = rate.split("/", 1)
        unit = period.lstrip("0123456789")
        multiple = int(period[: len(period) - len(unit)] or 1)
        return RateLimitItemPerSecond(int(count), multiple * _PERIODS[unit])
    except (ValueError, KeyError):
        raise ValueError(f"invalid rate {rate!r}: expected <count>/<s|m|h|d>") from None


@cache
def _limiter() -> SlidingWindowCounterRateLimiter:
    return SlidingWindowCounterRateLimiter(_storage())


def _storage() -> Storage:
    storage = storage_from_string(settings.API_THROTTLE_STORAGE)
    if not isinstance(storage, Storage):
        raise ImproperlyConfigured("API_THROTTLE_STORAGE must name a synchronous storage")
    return storage


class _RateThrottle(BaseThrottle):
    scope = ""

    def __init__(self, rate: str) -> None:
        self.rate = rate
        self.item = parse_rate(rate)

    def identity(self, request: HttpRequest) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: HttpRequest) -> bool:
        who = self.identity(request)
        if who is None:
            return True
        try:
            limiter = _limiter()
            if limiter.hit(self.item, self.scope, who):
                return True
            reset_at = limiter.get_window_stats(self.item, self.scope, who).reset_time
        except Exception as exc:  # the storage's own errors vary by backend
            logger.warning("throttle skipped: storage unavailable (%s)", type(exc).__name__)
            return True
        _wait.set(max(1.0, reset_at - time.time()))
        return False

    def wait(self) -> float | None:
        return _wait.get()


class AnonThrottle(_RateThrottle):
    """Unauthenticated requests, per client address."""

    scope = "api-anon"

    def identity(self, request: HttpRequest) -> str | None:
        if getattr(request, "auth", None) is not None:
            return None
        return self.get_ident(request) or "unknown"


class CallerThrottle(_RateThrottle):
    """Authenticated requests, per API key or signed-in user and organisation."""

    scope = "api-caller"

    def identity(self, request: HttpRequest) -> str | None:
        auth = getattr(request, "auth", None)
        return None if auth is None else str(auth)
