"""Per-portal rate limits as HubSpot enforces and reports them.

Every CRM call of a portal counts in a rolling ten-second window (``TEN_SECONDLY_ROLLING``,
110 by default for OAuth apps) and a daily count (``DAILY``, reset at midnight UTC); search calls
also count in a one-second window (``SECONDLY``, five per second). Calls refused with a 429 do
not count. Answers carry ``X-HubSpot-RateLimit-Interval-Milliseconds``, ``-Max`` and
``-Remaining``; the ``-Daily`` pair only when ``daily_headers`` is on, since HubSpot leaves it
out of answers to OAuth-authorised calls.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from starlette.responses import JSONResponse

from ..state import correlation_id
from .errors import respond
from .state import Limits, PortalData

WINDOW_SECONDS = 10.0
MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}


@dataclass
class Decision:
    policy: str | None  # the policy that refused the call; None when allowed
    retry_after: int = 0
    headers: dict[str, str] = field(default_factory=dict)


def _prune(window: deque[float], now: float, seconds: float) -> None:
    while window and window[0] <= now - seconds:
        window.popleft()


def admit(
    data: PortalData, limits: Limits, *, search: bool, daily_headers: bool, force: bool = False
) -> Decision:
    """Count this call against the portal's budgets, or refuse it (``force``: refuse anyway)."""
    now = time.monotonic()
    today = datetime.now(UTC).date()
    if data.day != today:
        data.day, data.day_count = today, 0
    _prune(data.calls, now, WINDOW_SECONDS)
    _prune(data.searches, now, 1.0)
    policy: str | None = None
    retry_after = 0
    if force:
        policy, retry_after = "TEN_SECONDLY_ROLLING", 1
    elif data.day_count >= limits.daily:
        midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
        policy = "DAILY"
        retry_after = math.ceil((midnight - datetime.now(UTC)).total_seconds())
    elif len(data.calls) >= limits.per_10s:
        policy = "TEN_SECONDLY_ROLLING"
        retry_after = math.ceil(data.calls[0] + WINDOW_SECONDS - now) if data.calls else 1
    elif search and limits.search_per_second and len(data.searches) >= limits.search_per_second:
        policy, retry_after = "SECONDLY", 1
    if policy is None:
        data.calls.append(now)
        data.day_count += 1
        if search:
            data.searches.append(now)
    remaining = 0 if force else max(limits.per_10s - len(data.calls), 0)
    headers = _headers(data, limits, remaining, daily_headers=daily_headers)
    if policy is not None:
        headers["Retry-After"] = str(max(retry_after, 1))
    return Decision(policy, max(retry_after, 1) if policy else 0, headers)


def _headers(
    data: PortalData, limits: Limits, remaining: int, *, daily_headers: bool
) -> dict[str, str]:
    headers = {
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(WINDOW_SECONDS * 1000)),
        "X-HubSpot-RateLimit-Max": str(limits.per_10s),
        "X-HubSpot-RateLimit-Remaining": str(remaining),
    }
    if daily_headers:
        headers["X-HubSpot-RateLimit-Daily"] = str(limits.daily)
        headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(limits.daily - data.day_count, 0))
    return headers


def peek(data: PortalData, limits: Limits, *, daily_headers: bool) -> dict[str, str]:
    """The portal's limit headers now, without charging a call (for injected 5xx answers)."""
    now = time.monotonic()
    _prune(data.calls, now, WINDOW_SECONDS)
    remaining = max(limits.per_10s - len(data.calls), 0)
    return _headers(data, limits, remaining, daily_headers=daily_headers)


def refusal(decision: Decision) -> JSONResponse:
    """HubSpot's 429 body (developers.hubspot.com, API usage guidelines)."""
    policy = decision.policy or "TEN_SECONDLY_ROLLING"
    cid = correlation_id()
    body = {
        "status": "error",
        "message": MESSAGES[policy],
        "errorType": "RATE_LIMIT",
        "correlationId": cid,
        "policyName": policy,
        "requestId": uuid.uuid4().hex,
    }
    response = respond(body, 429, correlation=cid)
    response.headers.update(decision.headers)
    return response
