"""The Salesforce stand-in's state: the connected app, two seeded orgs, codes, tokens, records,
API usage and query cursors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..modlog import ModLog
from . import ids
from .schema import format_datetime, from_ms, now, to_ms

DEFAULT_CLIENT_ID = "sandbox-salesforce-client"
DEFAULT_CLIENT_SECRET = "sandbox-salesforce-secret"  # noqa: S105 - the demo app, sandbox only
DEFAULT_INSTANCE_URL = "https://127.0.0.1:8401"
API_VERSION = "62.0"
# What the connected app is configured with; an authorize request without ``scope`` gets these.
DEFAULT_SCOPES = ("api", "refresh_token", "id")
REFRESH_SCOPES = frozenset({"refresh_token", "offline_access"})
DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class Org:
    key: str
    id: str  # 18 characters, 00D
    name: str
    user_id: str  # 18 characters, 005
    username: str
    first_name: str
    last_name: str
    instance_name: str
    organization_type: str = "Developer Edition"
    is_sandbox: bool = True
    country: str = "GB"

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


ORGS: tuple[Org, ...] = (
    Org(
        "acme",
        ids.make("00D", 410_001),
        "Acme Corp (sandbox)",
        ids.make("005", 410_001),
        "admin@acme-sandbox.test",
        "Ada",
        "Admin",
        "CS42",
    ),
    Org(
        "globex",
        ids.make("00D", 410_002),
        "Globex (sandbox)",
        ids.make("005", 410_002),
        "admin@globex-sandbox.test",
        "Hank",
        "Scorpio",
        "CS43",
    ),
)


@dataclass
class SalesforceConfig:
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    instance_url: str = DEFAULT_INSTANCE_URL
    access_token_ttl: int = 7200  # the org's session timeout (Salesforce's default: two hours)
    code_ttl: int = 900  # authorization codes live fifteen minutes
    rotate_refresh_tokens: bool = False  # Salesforce keeps the refresh token unless configured

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("client_secret")
        return values


@dataclass
class Limits:
    daily: int = 15_000  # DailyApiRequests: a rolling 24 hours, per org

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    org: str
    scopes: tuple[str, ...]
    code_challenge: str | None
    login_url: str  # the login host that issued it (the token must be asked of the same one)
    expires_at: float
    used: bool = False


@dataclass
class RefreshToken:
    token: str
    client_id: str
    org: str
    scopes: tuple[str, ...]
    login_url: str
    revoked: bool = False
    revoked_reason: str = "expired access/refresh token"


@dataclass
class AccessToken:
    token: str
    client_id: str
    org: str
    scopes: tuple[str, ...]
    login_url: str
    expires_at: float
    refresh_token: str | None = None
    revoked: bool = False

    def live(self) -> bool:
        return not self.revoked and self.expires_at > time.time()


@dataclass
class Record:
    id: str
    sobject: str
    values: dict[str, Any]  # every field, by its API name, as the REST API returns it
    deleted_ms: int | None = None  # when it went to the recycle bin (epoch ms)
    stamp_ms: int = 0  # its SystemModstamp (epoch ms)

    @property
    def deleted(self) -> bool:
        return bool(self.values.get("IsDeleted"))


@dataclass
class Cursor:
    """A query's remaining rows (``nextRecordsUrl`` pages through them)."""

    org: str
    rows: list[dict[str, Any]]
    batch: int
    endpoint: str  # "query" or "queryAll"


@dataclass
class OrgData:
    org: Org
    records: dict[str, dict[str, Record]] = field(default_factory=dict)
    calls: deque[float] = field(default_factory=deque)  # monotonic times, last 24 hours
    created: str = field(default_factory=lambda: format_datetime(now()))
    clock_ms: int = 0  # the last modification time handed out (epoch ms)
    logs: dict[str, ModLog] = field(default_factory=dict)  # sObject -> records by SystemModstamp

    def table(self, sobject: str) -> dict[str, Record]:
        return self.records.setdefault(sobject, {})

    def log(self, sobject: str) -> ModLog:
        return self.logs.setdefault(sobject, ModLog())

    def stamp(self) -> str:
        """A modification time (``SystemModstamp``, ``LastModifiedDate``): now, to the
        millisecond, and always after the previous one, so ordering by it is strict in the org."""
        self.clock_ms = max(to_ms(now()), self.clock_ms + 1)
        return format_datetime(from_ms(self.clock_ms))

    def insert(self, record: Record, stamp_ms: int) -> None:
        """Store a new record, stamped ``stamp_ms``, in its table and log."""
        record.stamp_ms = stamp_ms
        self.table(record.sobject)[record.id] = record
        self.log(record.sobject).add(stamp_ms, record.id)

    def restamp(self, record: Record) -> str:
        """A new modification time for a record (it moves to the end of its log)."""
        log = self.log(record.sobject)
        log.remove(record.stamp_ms, record.id)
        stamp = self.stamp()
        record.stamp_ms = self.clock_ms
        log.add(record.stamp_ms, record.id)
        return stamp

    def find(self, record_id: str) -> Record | None:
        """A record of any type by its 18-character id (deleted ones too)."""
        for table in self.records.values():
            if record_id in table:
                return table[record_id]
        return None


def _seed_organization(data: OrgData) -> None:
    """The org's own Organization record (``GET /sobjects/Organization/{orgId}``, SOQL)."""
    org = data.org
    data.table("Organization")[org.id] = Record(
        org.id,
        "Organization",
        {
            "Id": org.id,
            "Name": org.name,
            "Division": None,
            "OrganizationType": org.organization_type,
            "IsSandbox": org.is_sandbox,
            "InstanceName": org.instance_name,
            "NamespacePrefix": None,
            "Country": org.country,
            "LanguageLocaleKey": "en_US",
            "DefaultLocaleSidKey": "en_GB",
            "TimeZoneSidKey": "Europe/London",
            "CreatedDate": data.created,
            "CreatedById": org.user_id,
            "LastModifiedDate": data.created,
            "LastModifiedById": org.user_id,
            "SystemModstamp": data.created,
        },
    )


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class SalesforceState:
    def __init__(self, config: SalesforceConfig) -> None:
        self.launch_config = replace(config)
        self.config = replace(config)
        self.limits = Limits()
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.orgs: dict[str, OrgData] = {}
        self.cursors: dict[str, Cursor] = {}
        self._next_id = 0
        self.reset()

    def reset(self) -> None:
        """Forget every code, token, record and cursor; the orgs are seeded again, empty, and
        the configuration and limits go back to what the sandbox was started with."""
        self.config = replace(self.launch_config)
        self.limits = Limits()
        self.codes.clear()
        self.refresh_tokens.clear()
        self.access_tokens.clear()
        self.cursors.clear()
        self.orgs = {o.key: OrgData(o) for o in ORGS}
        for data in self.orgs.values():
            _seed_organization(data)
        self._next_id = 1_000_000

    def next_id(self, prefix: str) -> str:
        """Record ids: unique across types and orgs (catches mixed-up ids)."""
        self._next_id += 1
        return ids.make(prefix, self._next_id)

    def org_by_id(self, org_id: str) -> OrgData | None:
        for data in self.orgs.values():
            if data.org.id == org_id:
                return data
        return None

    # --- OAuth ---------------------------------------------------------------------------------

    def issue_code(
        self,
        *,
        org: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        challenge: str | None,
        login_url: str,
    ) -> AuthCode:
        code = AuthCode(
            code="aPrx" + secrets.token_urlsafe(48) + "==",
            client_id=self.config.client_id,
            redirect_uri=redirect_uri,
            org=org,
            scopes=scopes,
            code_challenge=challenge,
            login_url=login_url,
            expires_at=time.time() + self.config.code_ttl,
        )
        self.codes[code.code] = code
        return code

    def issue_tokens(
        self, *, org: str, scopes: tuple[str, ...], login_url: str
    ) -> tuple[AccessToken, RefreshToken | None]:
        """An access token, and a refresh token when the scopes ask for one."""
        refresh: RefreshToken | None = None
        if REFRESH_SCOPES & set(scopes):
            refresh = RefreshToken(
                token="5Aep861" + secrets.token_urlsafe(64),
                client_id=self.config.client_id,
                org=org,
                scopes=scopes,
                login_url=login_url,
            )
            self.refresh_tokens[refresh.token] = refresh
        access = self.issue_access(org=org, scopes=scopes, login_url=login_url, refresh=refresh)
        return access, refresh

    def issue_access(
        self,
        *,
        org: str,
        scopes: tuple[str, ...],
        login_url: str,
        refresh: RefreshToken | None,
    ) -> AccessToken:
        org_id = self.orgs[org].org.id
        access = AccessToken(
            # Salesforce's session ids start with the 15-character org id and a "!".
            token=f"{ids.short(org_id)}!AQ" + secrets.token_urlsafe(72),
            client_id=self.config.client_id,
            org=org,
            scopes=scopes,
            login_url=login_url,
            expires_at=time.time() + self.config.access_token_ttl,
            refresh_token=refresh.token if refresh else None,
        )
        self.access_tokens[access.token] = access
        return access

    def identity_url(self, access: AccessToken) -> str:
        org = self.orgs[access.org].org
        return f"{access.login_url}/id/{org.id}/{org.user_id}"

    def token_answer(self, access: AccessToken, refresh: RefreshToken | None) -> dict[str, Any]:
        """The token endpoint's success body, in Salesforce's field order; no ``expires_in``."""
        issued_at = str(int(time.time() * 1000))
        identity = self.identity_url(access)
        mac = hmac.new(
            self.config.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        )
        body: dict[str, Any] = {"access_token": access.token}
        if refresh is not None:
            body["refresh_token"] = refresh.token
        body |= {
            "signature": base64.b64encode(mac.digest()).decode("ascii"),
            "scope": " ".join(access.scopes),
            "instance_url": self.config.instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        return body

    def live_refresh(self, token: str) -> RefreshToken | None:
        found = self.refresh_tokens.get(token)
        return found if found is not None and not found.revoked else None

    def revoke(
        self, refresh: RefreshToken, *, reason: str = "expired access/refresh token"
    ) -> None:
        """Revoke a refresh token and every access token issued from it."""
        refresh.revoked = True
        refresh.revoked_reason = reason
        for access in self.access_tokens.values():
            if access.refresh_token == refresh.token:
                access.revoked = True

    def expire_access_tokens(self) -> int:
        """Every session ends now (as when the org's session timeout passes)."""
        now_s = time.time()
        live = [t for t in self.access_tokens.values() if t.live()]
        for token in live:
            token.expires_at = now_s - 1
        return len(live)
