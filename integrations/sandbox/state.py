"""What every provider stand-in shares: one lock, the request counters and injectable faults.

The sandbox runs in one process on one event loop. Handlers take ``SandboxState.lock`` around
every read-modify-write of state and never await while holding it, so concurrent requests see
consistent state; waits (latency, held requests) happen outside the lock.

Faults hit the providers' CRM calls (never OAuth or the control API; ``oauth_faults.py`` makes
the OAuth endpoints answer garbage). Deterministic ones come
first (``fail_next``, ``timeout_next``, ``timeout_after_next``, ``rate_limit_next``: the next N
calls), then a 429 burst still owed to the caller's account, then a draw: with probability
``fault_rate`` the call suffers one fault, its kind drawn from the weights of ``fault_mix``:

- ``fail``: a 5xx (500, 502 or 503, drawn) and nothing happens;
- ``timeout``: held before the handler runs (nothing happens) until the client gives up;
- ``timeout_after``: the handler runs and its effect is committed, then the answer is held until
  the client gives up (an uncertain write);
- ``rate_limit``: the provider's 429 (Salesforce: 403 ``REQUEST_LIMIT_EXCEEDED``), and the next
  ``burst`` calls of the same account are refused too;
- ``slow``: answered normally after ``slow_ms``.

``seed`` makes the draws reproducible. Counters keep injected faults (``faults_injected``,
``faults_by_kind``) apart from real limit enforcement (``rate_limited``).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from .oauth_faults import OAuthFaults

FaultKind = Literal["fail", "timeout", "timeout_after", "rate_limit", "slow"]
FAULT_KINDS: tuple[FaultKind, ...] = ("fail", "timeout", "timeout_after", "rate_limit", "slow")
FAIL_STATUSES = (500, 502, 503)
COUNT_FIELDS = ("latency_ms", "fail_next", "timeout_next", "timeout_after_next", "rate_limit_next")
NEXT_FIELDS: tuple[tuple[str, FaultKind], ...] = (
    ("fail_next", "fail"),
    ("timeout_next", "timeout"),
    ("timeout_after_next", "timeout_after"),
    ("rate_limit_next", "rate_limit"),
)
KNOWN_FIELDS = frozenset(COUNT_FIELDS) | {
    "fail_status",
    "timeout_seconds",
    "fault_rate",
    "fault_mix",
    "seed",
    "slow_ms",
    "burst",
}


def _default_mix() -> dict[str, float]:
    return dict.fromkeys(FAULT_KINDS, 1.0)


@dataclass
class Faults:
    """Faults applied to the providers' CRM calls (never to OAuth or the control API)."""

    latency_ms: int = 0  # added to every CRM call until changed
    fail_next: int = 0  # the next N CRM calls answer ``fail_status``
    fail_status: int = 503
    timeout_next: int = 0  # the next N CRM calls are held (then 504) until the client gives up
    timeout_after_next: int = 0  # the next N CRM calls run, then their answer is held
    timeout_seconds: float = 60.0
    rate_limit_next: int = 0  # the next N CRM calls answer the provider's 429
    fault_rate: float = 0.0  # the share of CRM calls that suffer a drawn fault
    fault_mix: dict[str, float] = field(default_factory=_default_mix)  # kind -> weight
    seed: int | None = None
    slow_ms: int = 1500
    burst: int = 3  # a drawn 429 refuses this many more calls of the same account

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "fail_next": self.fail_next,
            "fail_status": self.fail_status,
            "timeout_next": self.timeout_next,
            "timeout_after_next": self.timeout_after_next,
            "timeout_seconds": self.timeout_seconds,
            "rate_limit_next": self.rate_limit_next,
            "fault_rate": self.fault_rate,
            "fault_mix": dict(self.fault_mix),
            "seed": self.seed,
            "slow_ms": self.slow_ms,
            "burst": self.burst,
        }


@dataclass(frozen=True)
class Fault:
    """The fault one CRM call suffers, with the settings it needs (read under the lock)."""

    kind: FaultKind
    status: int = 503  # fail: the 5xx to answer
    hold_seconds: float = 60.0  # timeout, timeout_after: the longest hold
    slow_ms: int = 0  # slow: the delay before answering


@dataclass
class Counters:
    # "METHOD /route/template" -> calls, e.g. "GET /crm/v3/objects/contacts/{id}" (HubSpot) or
    # "GET /services/data/vXX.X/sobjects/Contact/{id}" (Salesforce).
    requests: Counter[str] = field(default_factory=Counter)
    # Token grants by grant type: HubSpot's bare ("authorization_code", "refresh_token", always
    # reported), other providers' as "<provider>:<grant_type>" once they happen
    # ("salesforce:authorization_code", "salesforce:refresh_token").
    token_grants: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0  # calls refused by a real limit (never an injected fault)
    faults_injected: int = 0
    faults_by_kind: Counter[str] = field(default_factory=Counter)
    # "hubspot:<hub_id>" / "salesforce:<org>" -> CRM calls whose token names that account
    requests_by_account: Counter[str] = field(default_factory=Counter)
    rate_limited_by_account: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        grants = {"authorization_code": 0, "refresh_token": 0} | dict(self.token_grants)
        return {
            "total": sum(self.requests.values()),
            "requests": dict(sorted(self.requests.items())),
            "token_grants": grants,
            "rate_limited": self.rate_limited,
            "faults_injected": self.faults_injected,
            "faults_by_kind": {kind: self.faults_by_kind[kind] for kind in FAULT_KINDS},
            "requests_by_account": dict(sorted(self.requests_by_account.items())),
            "rate_limited_by_account": dict(sorted(self.rate_limited_by_account.items())),
        }


def _count(values: dict[str, Any], name: str, default: int) -> int:
    raw = values.get(name, default)
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return raw


def _number(values: dict[str, Any], name: str, default: float) -> float:
    raw = values.get(name, default)
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        raise ValueError(f"{name} must be a number")
    return float(raw)


def _mix(raw: Any) -> dict[str, float]:
    if raw is None:
        return _default_mix()
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"fault_mix must be an object of weights over {list(FAULT_KINDS)}")
    unknown = set(raw) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"Unknown fault kind(s) {sorted(unknown)}; use {list(FAULT_KINDS)}")
    mix: dict[str, float] = {}
    for kind, weight in raw.items():
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
            raise ValueError(f"fault_mix.{kind} must be a non-negative number")
        mix[str(kind)] = float(weight)
    if sum(mix.values()) <= 0:
        raise ValueError("fault_mix needs at least one positive weight")
    return mix


class SandboxState:
    """Counters and faults of the whole sandbox, and the lock every handler shares."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.counters = Counters()
        self.faults = Faults()
        self.random = random.Random()  # noqa: S311 - fault draws, not cryptography
        self.bursts: dict[str, int] = {}  # account -> 429s still owed by a drawn burst
        self.oauth_faults = OAuthFaults()  # garbage answers of the OAuth endpoints

    def reset(self) -> None:
        self.counters = Counters()
        self.faults = Faults()
        self.random = random.Random()  # noqa: S311 - fault draws, not cryptography
        self.bursts = {}
        self.oauth_faults = OAuthFaults()

    def count(self, key: str, account: str | None = None) -> None:
        self.counters.requests[key] += 1
        if account is not None:
            self.counters.requests_by_account[account] += 1

    def count_rate_limited(self, account: str | None) -> None:
        """A call refused because a real limit was exceeded (not an injected fault)."""
        self.counters.rate_limited += 1
        if account is not None:
            self.counters.rate_limited_by_account[account] += 1

    def set_faults(self, values: dict[str, Any]) -> Faults:
        """Replace the fault settings with ``values`` (omitted fields go back to defaults)."""
        unknown = set(values) - KNOWN_FIELDS
        if unknown:
            raise ValueError(f"Unknown fault setting(s): {sorted(unknown)}")
        faults = Faults()
        for name in COUNT_FIELDS:
            setattr(faults, name, _count(values, name, 0))
        status = values.get("fail_status", 503)
        if status not in FAIL_STATUSES or isinstance(status, bool):
            raise ValueError(f"fail_status must be one of {list(FAIL_STATUSES)}")
        faults.fail_status = status
        seconds = _number(values, "timeout_seconds", 60.0)
        if seconds <= 0:
            raise ValueError("timeout_seconds must be a positive number")
        faults.timeout_seconds = seconds
        rate = _number(values, "fault_rate", 0.0)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        faults.fault_rate = rate
        faults.fault_mix = _mix(values.get("fault_mix"))
        seed = values.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError("seed must be an integer")
        faults.seed = seed
        faults.slow_ms = _count(values, "slow_ms", 1500)
        faults.burst = _count(values, "burst", 3)
        self.faults = faults
        self.random = random.Random(seed)  # noqa: S311 - fault draws, not cryptography
        self.bursts = {}
        return faults

    def _fault(self, kind: FaultKind, status: int | None = None) -> Fault:
        self.counters.faults_injected += 1
        self.counters.faults_by_kind[kind] += 1
        faults = self.faults
        return Fault(
            kind,
            status=status if status is not None else faults.fail_status,
            hold_seconds=faults.timeout_seconds,
            slow_ms=faults.slow_ms,
        )

    def take_fault(self, account: str | None = None) -> Fault | None:
        """The fault this CRM call suffers, if any (each call takes at most one)."""
        faults = self.faults
        for name, kind in NEXT_FIELDS:
            left = getattr(faults, name)
            if left:
                setattr(faults, name, left - 1)
                return self._fault(kind)
        if account is not None and self.bursts.get(account):
            self.bursts[account] -= 1
            return self._fault("rate_limit")
        if faults.fault_rate <= 0 or self.random.random() >= faults.fault_rate:
            return None
        kinds = [kind for kind in FAULT_KINDS if faults.fault_mix.get(kind, 0.0) > 0]
        weights = [faults.fault_mix[kind] for kind in kinds]
        drawn = self.random.choices(kinds, weights)[0]
        if drawn == "fail":
            return self._fault("fail", self.random.choice(FAIL_STATUSES))
        if drawn == "rate_limit" and account is not None and faults.burst:
            self.bursts[account] = faults.burst
        return self._fault(drawn)


def correlation_id() -> str:
    return str(uuid.uuid4())
