"""The HubSpot stand-in's state: the app, two seeded portals, codes, tokens, records, limits,
webhook subscriptions."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..modlog import ModLog
from .webhooks import Webhooks

DEFAULT_CLIENT_ID = "sandbox-hubspot-client"
DEFAULT_CLIENT_SECRET = "sandbox-hubspot-secret"  # noqa: S105 - the demo app, sandbox only
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FULL_SCOPES = (
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
)


@dataclass(frozen=True)
class Portal:
    hub_id: int
    domain: str
    name: str
    user: str
    user_id: int


PORTALS: tuple[Portal, ...] = (
    Portal(62515, "acme-sandbox.hubspot.test", "Acme (sandbox)", "owner@acme.test", 4100001),
    Portal(62516, "globex-sandbox.hubspot.test", "Globex (sandbox)", "owner@globex.test", 4100002),
)


@dataclass
class HubSpotConfig:
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    app_id: int = 3100001
    access_token_ttl: int = 1800
    code_ttl: int = 600
    rotate_refresh_tokens: bool = True
    # HubSpot leaves the daily headers out of answers to OAuth-authorised calls.
    daily_headers: bool = False

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("client_secret")
        return values


@dataclass
class Limits:
    per_10s: int = 110
    daily: int = 250_000
    search_per_second: int = 5  # HubSpot's search endpoints: five requests per second

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    hub_id: int
    scopes: tuple[str, ...]
    code_challenge: str | None
    expires_at: float
    used: bool = False


@dataclass
class RefreshToken:
    token: str
    client_id: str
    hub_id: int
    scopes: tuple[str, ...]
    revoked: bool = False


@dataclass
class AccessToken:
    token: str
    client_id: str
    hub_id: int
    scopes: tuple[str, ...]
    expires_at: float
    refresh_token: str | None = None
    revoked: bool = False

    def expires_in(self) -> int:
        return int(self.expires_at - time.time())


@dataclass
class Record:
    id: str
    object_type: str
    properties: dict[str, str]
    created_at: datetime
    updated_at: datetime
    archived: bool = False
    archived_at: datetime | None = None
    # property -> its value in the form searches compare (filled lazily, cleared on writes)
    keys: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def modified_ms(self) -> int:
        return to_ms(self.updated_at)


def from_ms(ms: int) -> datetime:
    """An exact UTC datetime from epoch milliseconds (no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


@dataclass
class PortalData:
    """One portal's records, associations, rate-limit windows and modification clock.

    Each table keeps its records in id order (ids only grow and records are never removed, so
    insertion order is id order); ``emails`` maps each live contact's email to its id.
    """

    portal: Portal
    records: dict[str, dict[str, Record]] = field(default_factory=dict)
    # (from type, from id, to type) -> {to id: association type ids}
    associations: dict[tuple[str, str, str], dict[str, set[int]]] = field(default_factory=dict)
    calls: deque[float] = field(default_factory=deque)  # monotonic times, last 10 s
    searches: deque[float] = field(default_factory=deque)  # monotonic times, last 1 s
    day: date = field(default_factory=lambda: datetime.now(UTC).date())
    day_count: int = 0
    emails: dict[str, str] = field(default_factory=dict)
    clock_ms: int = 0  # the last modification time handed out (epoch ms)
    logs: dict[str, ModLog] = field(default_factory=dict)  # object type -> live records
    webhooks: Webhooks | None = None

    def table(self, object_type: str) -> dict[str, Record]:
        return self.records.setdefault(object_type, {})

    def log(self, object_type: str) -> ModLog:
        return self.logs.setdefault(object_type, ModLog())

    def stamp(self) -> datetime:
        """A modification time: now, to the millisecond, and always after the previous one, so
        ordering by modification date is strict within the portal."""
        now_ms = to_ms(datetime.now(UTC))
        self.clock_ms = max(now_ms, self.clock_ms + 1)
        return from_ms(self.clock_ms)

    def insert(self, record: Record) -> None:
        """Store a new record (its ``updated_at`` already set) in its table and log."""
        self.table(record.object_type)[record.id] = record
        self.log(record.object_type).add(record.modified_ms, record.id)

    def touch(self, record: Record) -> datetime:
        """Give a live record a new modification time (moving it to the end of its log)."""
        log = self.log(record.object_type)
        log.remove(record.modified_ms, record.id)
        record.updated_at = self.stamp()
        record.keys.clear()
        log.add(self.clock_ms, record.id)
        return record.updated_at

    def retire(self, record: Record) -> None:
        """An archived record leaves the log (searches never match it)."""
        self.log(record.object_type).remove(record.modified_ms, record.id)

    def links(self, from_type: str, from_id: str, to_type: str) -> dict[str, set[int]]:
        return self.associations.setdefault((from_type, from_id, to_type), {})


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class HubSpotState:
    def __init__(self, config: HubSpotConfig) -> None:
        self.launch_config = replace(config)
        self.config = replace(config)
        self.limits = Limits()
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.portals: dict[int, PortalData] = {}
        self.webhooks = Webhooks(lambda: (self.config.client_secret, self.config.app_id))
        self._next_id = 0
        self.reset()

    def reset(self) -> None:
        """Forget every code, token and record; the portals are seeded again, empty, and the
        configuration and limits go back to what the sandbox was started with."""
        self.config = replace(self.launch_config)
        self.limits = Limits()
        self.codes.clear()
        self.refresh_tokens.clear()
        self.access_tokens.clear()
        self.webhooks.reset()
        self.portals = {p.hub_id: PortalData(p, webhooks=self.webhooks) for p in PORTALS}
        self._next_id = 10_000

    def next_id(self) -> str:
        """Record ids: digit strings, unique across types and portals (catches mixed-up ids)."""
        self._next_id += 1
        return str(self._next_id)

    def issue_code(
        self, *, hub_id: int, redirect_uri: str, scopes: tuple[str, ...], challenge: str | None
    ) -> AuthCode:
        code = AuthCode(
            code=f"na1-{uuid.uuid4()}",
            client_id=self.config.client_id,
            redirect_uri=redirect_uri,
            hub_id=hub_id,
            scopes=scopes,
            code_challenge=challenge,
            expires_at=time.time() + self.config.code_ttl,
        )
        self.codes[code.code] = code
        return code

    def issue_tokens(
        self, *, hub_id: int, scopes: tuple[str, ...], expires_in: int | None = None
    ) -> tuple[AccessToken, RefreshToken]:
        refresh = RefreshToken(f"na1-{uuid.uuid4()}", self.config.client_id, hub_id, scopes)
        self.refresh_tokens[refresh.token] = refresh
        return self.issue_access(refresh, expires_in=expires_in), refresh

    def issue_access(self, refresh: RefreshToken, *, expires_in: int | None = None) -> AccessToken:
        ttl = self.config.access_token_ttl if expires_in is None else expires_in
        access = AccessToken(
            token="C" + secrets.token_urlsafe(96),
            client_id=refresh.client_id,
            hub_id=refresh.hub_id,
            scopes=refresh.scopes,
            expires_at=time.time() + ttl,
            refresh_token=refresh.token,
        )
        self.access_tokens[access.token] = access
        return access

    def token_answer(self, access: AccessToken, refresh: RefreshToken) -> dict[str, Any]:
        """The token endpoint's success body."""
        return {
            "token_type": "bearer",
            "refresh_token": refresh.token,
            "access_token": access.token,
            "expires_in": max(access.expires_in(), 0),
            "hub_id": access.hub_id,
            "scopes": list(access.scopes),
            "token_use": "access_token",
        }

    def live_refresh(self, token: str) -> RefreshToken | None:
        found = self.refresh_tokens.get(token)
        return found if found is not None and not found.revoked else None

    def revoke(self, refresh: RefreshToken, *, with_access: bool) -> None:
        refresh.revoked = True
        if with_access:
            for access in self.access_tokens.values():
                if access.refresh_token == refresh.token:
                    access.revoked = True

    def expire_access_tokens(self) -> int:
        now = time.time()
        live = [t for t in self.access_tokens.values() if t.expires_at > now]
        for token in live:
            token.expires_at = now - 1
        return len(live)

    def portal_data(self, hub_id: int) -> PortalData:
        return self.portals[hub_id]
