"""Per-caller throttles for our own API that fail open.

Ninja's throttles keep their history in the cache; when the cache is down, refusing every
request would turn a cache outage into an API outage (and hide it from /health), so a
throttle that cannot reach the cache lets the request through and says so in the log.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest
from ninja.throttling import AnonRateThrottle, AuthRateThrottle

logger = logging.getLogger("switchboard.throttle")


class _FailOpen:
    def allow_request(self, request: HttpRequest) -> bool:
        try:
            return bool(super().allow_request(request))  # type: ignore[misc]
        except Exception as exc:  # the cache backend's own errors vary by backend
            logger.warning("throttle skipped: cache unavailable (%s)", type(exc).__name__)
            return True


class AnonThrottle(_FailOpen, AnonRateThrottle):
    """Unauthenticated endpoints, per client IP."""


class CallerThrottle(_FailOpen, AuthRateThrottle):
    """Authenticated endpoints, per API key or signed-in user and organisation."""
