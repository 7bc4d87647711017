"""Throttles for our own API, per address and per caller: one atomic Redis round trip each,
failing open.

Ninja's stock throttles keep each caller's whole request history (a list of up to ``rate``
timestamps) in Django's cache and read-modify-write it on every request: with 6000/m that is
a pickle of thousands of floats each way, a race between concurrent requests, and, under ASGI,
a new cache client (and Redis connection) for every request. Here the ``limits`` library's
sliding-window counter does the counting in one Lua call on storage shared by every process
(Redis when ``REDIS_URL`` is set, process memory for the embedded stack), through one client
per process.

A throttle that cannot reach its storage lets the request through and says so in the log:
refusing every request would turn a Redis outage into an API outage (and hide it from /health).

Three counts, each a sliding window:

- per address, every request under ``/api/`` (``ip_throttle_middleware``,
  ``API_THROTTLE_IP_RATE``): counted before authentication, so one address cycling many keys,
  valid or not, is bounded, and so are 401s and 404s (Ninja runs its throttles only after
  authentication has succeeded);
- per API key or signed-in user and organisation (``CallerThrottle``, ``API_THROTTLE_AUTH_RATE``);
- per address for unauthenticated routes (``AnonThrottle``, ``API_THROTTLE_ANON_RATE``).

The address is ``REMOTE_ADDR`` (which uvicorn itself sets from ``X-Forwarded-For`` only for
connections from its ``--forwarded-allow-ips``), or, with ``TRUSTED_PROXY_COUNT`` = N > 0, the
address the Nth proxy from us saw in ``X-Forwarded-For``; never the header's caller-supplied
left end. IPv6 addresses count per /64, the block one subscriber usually holds.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from functools import cache
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.decorators import sync_and_async_middleware
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter
from ninja.throttling import BaseThrottle

from core.envelope import error_response
from core.errors import ErrorCode

logger = logging.getLogger("switchboard.throttle")
API_PREFIX = "/api/"

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


def client_ip(request: HttpRequest) -> str:
    """The caller's address: ``REMOTE_ADDR``, or with ``TRUSTED_PROXY_COUNT`` = N the entry our
    Nth proxy appended to ``X-Forwarded-For`` (entries further left are the caller's to write)."""
    remote = str(request.META.get("REMOTE_ADDR") or "")
    hops: int = settings.TRUSTED_PROXY_COUNT
    forwarded = [
        part.strip()
        for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if part.strip()
    ]
    if hops > 0 and forwarded:
        candidate = forwarded[-min(hops, len(forwarded))]
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            logger.warning("X-Forwarded-For entry is not an address; using REMOTE_ADDR")
    return remote or "unknown"


def address_key(address: str) -> str:
    """What one address counts as: itself (IPv4), or its /64 (IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


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

    def get_ident(self, request: HttpRequest) -> str | None:
        # Ninja's own reads X-Forwarded-For blindly unless NINJA_NUM_PROXIES is set.
        return address_key(client_ip(request))

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


class IpThrottle(_RateThrottle):
    """Every request, authenticated or not, per client address (see ip_throttle_middleware)."""

    scope = "api-ip"

    def identity(self, request: HttpRequest) -> str | None:
        return self.get_ident(request) or "unknown"


class CallerThrottle(_RateThrottle):
    """Authenticated requests, per API key or signed-in user and organisation."""

    scope = "api-caller"

    def identity(self, request: HttpRequest) -> str | None:
        auth = getattr(request, "auth", None)
        return None if auth is None else str(auth)


GetResponse = Callable[[HttpRequest], Any]


@sync_and_async_middleware
def ip_throttle_middleware(get_response: GetResponse) -> GetResponse:
    """``API_THROTTLE_IP_RATE`` per client address over every ``/api/`` request, before any
    authentication: the 429 envelope with ``Retry-After`` once an address is over."""
    throttle = IpThrottle(settings.API_THROTTLE_IP_RATE)

    def refused(request: HttpRequest) -> HttpResponseBase | None:
        if not request.path.startswith(API_PREFIX) or throttle.allow_request(request):
            return None
        wait = throttle.wait() or 1.0
        return error_response(
            ErrorCode.RATE_LIMITED,
            "Too many requests from this address; slow down.",
            status=429,
            details={"scope": "address"},
            headers={"Retry-After": str(math.ceil(wait))},
        )

    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            return refused(request) or await get_response(request)

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return refused(request) or get_response(request)

    return middleware
