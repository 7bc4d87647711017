"""What every provider stand-in shares: one lock, the request counters and injectable faults.

The sandbox runs in one process on one event loop. Handlers take ``SandboxState.lock`` around
every read-modify-write of state and never await while holding it, so concurrent requests see
consistent state; waits (latency, held requests) happen outside the lock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FaultKind = Literal["fail", "timeout", "rate_limit"]
FAIL_STATUSES = (500, 502, 503)


@dataclass
class Faults:
    """Faults applied to the providers' CRM calls (never to OAuth or the control API)."""

    latency_ms: int = 0  # added to every CRM call until changed
    fail_next: int = 0  # the next N CRM calls answer ``fail_status``
    fail_status: int = 503
    timeout_next: int = 0  # the next N CRM calls are held (then 504) until the client gives up
    timeout_seconds: float = 60.0
    rate_limit_next: int = 0  # the next N CRM calls answer the provider's 429

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Counters:
    # "METHOD /route/template" -> calls, e.g. "GET /crm/v3/objects/contacts/{id}" (HubSpot) or
    # "GET /services/data/vXX.X/sobjects/Contact/{id}" (Salesforce).
    requests: Counter[str] = field(default_factory=Counter)
    # Token grants by grant type: HubSpot's bare ("authorization_code", "refresh_token", always
    # reported), other providers' as "<provider>:<grant_type>" once they happen
    # ("salesforce:authorization_code", "salesforce:refresh_token").
    token_grants: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    faults_injected: int = 0

    def as_dict(self) -> dict[str, Any]:
        grants = {"authorization_code": 0, "refresh_token": 0} | dict(self.token_grants)
        return {
            "total": sum(self.requests.values()),
            "requests": dict(sorted(self.requests.items())),
            "token_grants": grants,
            "rate_limited": self.rate_limited,
            "faults_injected": self.faults_injected,
        }


class SandboxState:
    """Counters and faults of the whole sandbox, and the lock every handler shares."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.counters = Counters()
        self.faults = Faults()

    def reset(self) -> None:
        self.counters = Counters()
        self.faults = Faults()

    def count(self, key: str) -> None:
        self.counters.requests[key] += 1

    def set_faults(self, values: dict[str, Any]) -> Faults:
        """Replace the fault settings with ``values`` (omitted fields go back to defaults)."""
        faults = Faults()
        for name in ("latency_ms", "fail_next", "timeout_next", "rate_limit_next"):
            raw = values.get(name, 0)
            if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
                raise ValueError(f"{name} must be a non-negative integer")
            setattr(faults, name, raw)
        status = values.get("fail_status", 503)
        if status not in FAIL_STATUSES:
            raise ValueError(f"fail_status must be one of {list(FAIL_STATUSES)}")
        faults.fail_status = status
        seconds = values.get("timeout_seconds", 60.0)
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise ValueError("timeout_seconds must be a positive number")
        faults.timeout_seconds = float(seconds)
        self.faults = faults
        return faults

    def take_fault(self) -> FaultKind | None:
        """The fault this CRM call suffers, if any (each call takes at most one)."""
        faults = self.faults
        kind: FaultKind | None = None
        if faults.fail_next:
            faults.fail_next -= 1
            kind = "fail"
        elif faults.timeout_next:
            faults.timeout_next -= 1
            kind = "timeout"
        elif faults.rate_limit_next:
            faults.rate_limit_next -= 1
            kind = "rate_limit"
        if kind is not None:
            self.counters.faults_injected += 1
        return kind


def correlation_id() -> str:
    return str(uuid.uuid4())
