"""Each org's API request budget, as Salesforce counts and reports it.

Every authenticated REST call of an org counts in a rolling 24-hour window (``DailyApiRequests``,
15,000 by default here). Past it the call is refused with 403 ``REQUEST_LIMIT_EXCEEDED`` (refused
calls do not count). Every answer carries ``Sforce-Limit-Info: api-usage=<used>/<max>``; ``GET
/limits`` (``resources.py``) reports ``{"Max", "Remaining"}`` for ``DailyApiRequests`` and more.
"""

from __future__ import annotations

import time

from .state import DAY_SECONDS, Limits, OrgData


def _prune(data: OrgData, now: float) -> None:
    while data.calls and data.calls[0] <= now - DAY_SECONDS:
        data.calls.popleft()


def used(data: OrgData) -> int:
    _prune(data, time.monotonic())
    return len(data.calls)


def admit(data: OrgData, limits: Limits) -> bool:
    """Count this call, or refuse it when the org's budget is spent."""
    now = time.monotonic()
    _prune(data, now)
    if len(data.calls) >= limits.daily:
        return False
    data.calls.append(now)
    return True


def fill(data: OrgData, count: int) -> None:
    """Pretend ``count`` calls were made just now (the control API's ``used``)."""
    now = time.monotonic()
    data.calls.clear()
    data.calls.extend([now] * count)


def header(data: OrgData, limits: Limits) -> str:
    return f"api-usage={used(data)}/{limits.daily}"
