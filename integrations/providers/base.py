"""The provider framework: what a provider is, and what its CRM client must do.

A provider is one module in ``integrations/providers/<key>/`` with a ``Provider`` subclass
(its descriptor: URLs, scopes, token auth method, rate-limit policy, object types) and a
``CrmClient``. The registry builds each provider from settings, so client ids, secrets,
redirect URIs and every base URL come from the environment, and ``SWITCHBOARD_SANDBOX_URL``
points them all at the sandbox at once.

Clients never touch the database: tokens come from a ``TokenSource`` and every HTTP call is
reported to a ``CallRecorder``; the connection service supplies both.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, Field

from core.errors import ValidationFailed
from core.result import Result

from .unified import (
    ACTIVITY_INPUT_MODELS,
    ActivityIn,
    ActivityType,
    AnyActivity,
    AnyRecord,
    Association,
    BatchResult,
    NoteIn,
    ObjectType,
    Page,
    RawResponse,
    RecordIn,
    SearchQuery,
    TaskIn,
)

TokenAuthMethod = Literal["client_secret_post", "client_secret_basic"]


# What a call spends: every call is a read or a write; a search also counts in the provider's
# search window (HubSpot: five per second).
CallKind = Literal["read", "write", "search"]


class RateWindow(BaseModel):
    """One rolling window the provider counts calls in (per account)."""

    name: str = Field(description="The provider's name for it, e.g. ten_secondly_rolling.")
    limit: int = Field(ge=1, description="Requests allowed per window.")
    seconds: float = Field(gt=0, description="Its length (whole seconds are enforced).")
    kinds: list[CallKind] | None = Field(
        None, description="The call kinds it counts (e.g. only searches); None: every call."
    )

    def counts(self, kind: CallKind) -> bool:
        return self.kinds is None or kind in self.kinds


class RateLimitPolicy(BaseModel):
    """What the provider allows; ``integrations.ratelimit`` enforces it with budgets shared by
    every process (per provider account). Limits the provider reports in its answers replace
    these (``RATE_LIMIT_OVERRIDES`` caps them)."""

    windows: list[RateWindow] = Field(default_factory=list)
    daily_limit: int | None = Field(
        None, description="The daily allocation when known up front (else learned from answers)."
    )
    daily_name: str = Field("daily", description="The daily allocation's name in snapshots.")
    daily_reset: Literal["midnight_utc", "rolling"] = Field(
        "midnight_utc",
        description="How the daily allocation frees up: all at once at midnight UTC, or call "
        "by call over a rolling 24 hours (Salesforce).",
    )
    daily_reserve: float = Field(
        0.05, ge=0, lt=1, description="Share of the daily allocation never spent (others' use)."
    )
    batch_size: int = Field(100, description="Records per batch call.")
    search_page_size: int = 200
    search_result_cap: int | None = Field(None, description="Results one search can page to.")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Per-installation settings of one provider (from the environment)."""

    client_id: str
    client_secret: str
    redirect_uri: str
    app_url: str  # where people consent (authorize page)
    api_url: str  # where the API and the token endpoint live
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)


class TokenSet(BaseModel):
    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None
    token_type: str = "bearer"  # noqa: S105 - a token kind, not a secret
    scopes: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="Non-secret facts kept with the connection: e.g. Salesforce's instance_url, "
        "identity URL, and login_url (where refreshes go).",
    )


class LoginOption(BaseModel):
    """One login host a person can pick in the wizard (``needs_domain``: they type it)."""

    environment: str
    label: str
    needs_domain: bool = False


class AccountIdentity(BaseModel):
    """Who the tokens belong to, read from the provider right after the code exchange."""

    external_id: str = Field(description="The provider's account id (HubSpot hub id, SF org id).")
    display_name: str = Field(description="What people call the account (hub domain, org name).")
    user: str | None = Field(None, description="The person who consented (email or name).")
    scopes: list[str] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


class TokenSource(Protocol):
    """Access tokens for one connection; implemented by the connection service."""

    async def access_token(self) -> str:
        """A token valid for at least a few minutes (refreshed ahead of expiry if needed)."""

    async def refresh(self, rejected: str) -> str:
        """A new token after the provider rejected ``rejected`` (401).

        Exactly one refresh happens however many callers ask at once; callers whose token was
        already replaced get the replacement. Raises ``ProviderAuthError`` when the provider
        refuses the refresh token (the connection then needs re-authorisation).
        """


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """One HTTP request to a provider, for the call log."""

    method: str
    path: str
    status: int | None  # None: no answer (timeout, connection error)
    duration_ms: float
    attempt: int = 1
    waited_ms: float = 0.0  # time spent waiting for rate-limit budget
    error_code: str | None = None
    # The provider's own count of the connection's allocation, when the answer carried one
    # (Salesforce's Sforce-Limit-Info: api-usage=used/limit over a rolling 24 hours).
    budget_used: int | None = None
    budget_limit: int | None = None


CallRecorder = Callable[[ProviderCall], Awaitable[None]]


class CallBudget(Protocol):
    """The rate-limit budget of one provider account, shared by every process
    (``integrations.ratelimit``). Transports take budget before each HTTP attempt and report
    each answer back."""

    async def acquire(self, kind: CallKind = "read") -> float:
        """Wait until the budget allows one more call of ``kind``; return the seconds waited.

        Raises ``ProviderRateLimited`` (with ``retry_after``) instead of waiting longer than
        the budget's longest wait, so background callers can reschedule.
        """

    async def observe(self, *, status: int | None, headers: Mapping[str, str]) -> None:
        """Correct the budget from an answer: the provider's rate-limit headers, and a 429
        (which empties the budget until ``Retry-After``)."""


class NoBudget:
    """A ``CallBudget`` that never waits (scripts, tests of a client alone)."""

    async def acquire(self, kind: CallKind = "read") -> float:
        return 0.0

    async def observe(self, *, status: int | None, headers: Mapping[str, str]) -> None:
        return None


NO_BUDGET: CallBudget = NoBudget()


async def discard_call(call: ProviderCall) -> None:
    """A ``CallRecorder`` that keeps nothing (scripts, tests of the client alone)."""


def activity_input(activity_type: ActivityType, data: ActivityIn) -> NoteIn | TaskIn:
    """``data`` as the activity type's input model; ``ValidationFailed`` for another type's."""
    expected = ACTIVITY_INPUT_MODELS[activity_type]
    if isinstance(data, expected) and isinstance(data, NoteIn | TaskIn):
        return data
    raise ValidationFailed(
        f"A {activity_type} takes {expected.__name__}, not {type(data).__name__}.",
        details={"object_type": activity_type, "input": type(data).__name__},
    )


class CrmClient(ABC):
    """Unified CRM operations. Every method returns a ``Result``; none raises for a provider
    failure. Codes: ``not_found``, ``validation_failed`` (details name the fields),
    ``rate_limited`` (``retry_after``), ``provider_unavailable``, ``reauth_required``,
    ``provider_error``."""

    def __init__(
        self,
        *,
        tokens: TokenSource,
        record_call: CallRecorder = discard_call,
        budget: CallBudget = NO_BUDGET,
    ) -> None:
        """``budget``: the account's shared rate-limit budget; every HTTP attempt takes from
        it first (``NO_BUDGET``: none, for scripts and tests of a client alone)."""
        self.tokens = tokens
        self.record_call = record_call
        self.budget = budget

    @abstractmethod
    async def get(self, object_type: ObjectType, record_id: str) -> Result[AnyRecord]: ...

    @abstractmethod
    async def list(
        self,
        object_type: ObjectType,
        *,
        limit: int = 50,
        cursor: str | None = None,
        archived: bool = False,
    ) -> Result[Page[AnyRecord]]: ...

    @abstractmethod
    async def create(self, object_type: ObjectType, data: RecordIn) -> Result[AnyRecord]: ...

    @abstractmethod
    async def update(
        self, object_type: ObjectType, record_id: str, data: RecordIn
    ) -> Result[AnyRecord]: ...

    @abstractmethod
    async def archive(self, object_type: ObjectType, record_id: str) -> Result[None]: ...

    @abstractmethod
    async def batch_create(
        self, object_type: ObjectType, items: builtins.list[RecordIn]
    ) -> Result[BatchResult[AnyRecord]]:
        """Any number of items, sent in chunks of the provider's batch size."""

    @abstractmethod
    async def batch_update(
        self, object_type: ObjectType, items: builtins.list[tuple[str, RecordIn]]
    ) -> Result[BatchResult[AnyRecord]]: ...

    @abstractmethod
    async def search(
        self, object_type: ObjectType, query: SearchQuery
    ) -> Result[Page[AnyRecord]]: ...

    @abstractmethod
    async def associate(self, association: Association) -> Result[None]: ...

    @abstractmethod
    async def associations(
        self, object_type: ObjectType, record_id: str, to_type: ObjectType
    ) -> Result[builtins.list[str]]:
        """Ids of the ``to_type`` records associated with this record."""

    @abstractmethod
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Result[RawResponse]:
        """Raw passthrough to the provider's API (path relative to its API base URL)."""

    # Activities (notes, tasks) are create-only and never mirrored: these are all they need.

    @abstractmethod
    async def create_activity(
        self, activity_type: ActivityType, data: ActivityIn
    ) -> Result[AnyActivity]:
        """Log a note or task on the records ``data`` names, in one call where the provider
        allows (``validation_failed`` before any call when ``data`` does not fit it)."""

    @abstractmethod
    async def get_activity(
        self, activity_type: ActivityType, record_id: str
    ) -> Result[AnyActivity]: ...

    @abstractmethod
    async def search_activities(
        self, activity_type: ActivityType, query: SearchQuery
    ) -> Result[Page[AnyActivity]]:
        """Filters on activity fields or provider properties (the outbox looks uncertain
        creates up by their write-id property this way)."""


class Provider(ABC):
    """A provider's descriptor and its OAuth particulars. One subclass per provider module."""

    key: ClassVar[str]
    display_name: ClassVar[str]
    authorize_path: ClassVar[str]  # on config.app_url
    token_path: ClassVar[str]  # on config.api_url
    scopes: ClassVar[tuple[str, ...]]
    optional_scopes: ClassVar[tuple[str, ...]] = ()
    token_auth_method: ClassVar[TokenAuthMethod] = "client_secret_post"  # noqa: S105
    use_pkce: ClassVar[bool] = True
    object_types: ClassVar[tuple[ObjectType, ...]]
    rate_limit: ClassVar[RateLimitPolicy]
    # Where the token endpoint lives: on the API host (HubSpot) or on the login host the person
    # chose (Salesforce: production, sandbox or My Domain).
    token_on_login_host: ClassVar[bool] = False
    # Shown on the wizard where it matters (e.g. Salesforce's five approvals per user and app).
    connect_note: ClassVar[str] = ""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def login_options(self) -> list[LoginOption]:
        """Choices of login host for the wizard; empty when the provider has one."""
        return []

    def login_url(self, environment: str | None = None, domain: str | None = None) -> str:
        """The login host for a choice from ``login_options`` (``ValidationFailed`` if bad).

        The default has a single host: the configured app URL.
        """
        return self.config.app_url.rstrip("/")

    def authorize_url(self, login_url: str | None = None) -> str:
        return (login_url or self.login_url()).rstrip("/") + self.authorize_path

    def token_url(self, login_url: str | None = None) -> str:
        host = (login_url or self.login_url()) if self.token_on_login_host else self.config.api_url
        return host.rstrip("/") + self.token_path

    def authorize_params(self) -> dict[str, str]:
        """Extra query parameters for the authorize URL (e.g. HubSpot's optional_scope)."""
        return {}

    def parse_token_response(self, body: dict[str, Any], *, now: datetime) -> TokenSet:
        """A token endpoint answer (code exchange or refresh) as a ``TokenSet``.

        Raises ``ProviderError`` when the body is not a usable token answer. The default reads
        RFC 6749 fields; providers that differ (no ``expires_in``, an instance URL) override.
        """
        from datetime import timedelta

        from core.errors import ProviderError

        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ProviderError("The token endpoint answered without an access token.")
        expires_in = body.get("expires_in")
        scope = body.get("scope")
        return TokenSet(
            access_token=access,
            refresh_token=body.get("refresh_token") or None,
            expires_at=now + timedelta(seconds=int(expires_in))
            if isinstance(expires_in, int | float | str) and str(expires_in).isdigit()
            else None,
            token_type=str(body.get("token_type") or "bearer"),
            scopes=scope.split() if isinstance(scope, str) else [],
        )

    def refresh_refused(self, status: int, body: Any) -> bool:
        """Whether a failed refresh means the grant is gone (re-authorisation needed).

        RFC 6749 says ``invalid_grant``; providers with their own vocabulary override.
        """
        return isinstance(body, dict) and body.get("error") == "invalid_grant"

    @abstractmethod
    async def fetch_identity(self, tokens: TokenSet) -> Result[AccountIdentity]:
        """Read who the tokens belong to, right after the code exchange."""

    @abstractmethod
    async def revoke(self, tokens: TokenSet) -> Result[None]:
        """Revoke the grant at the provider (disconnect). Already revoked counts as done."""

    @abstractmethod
    def crm_client(
        self,
        *,
        tokens: TokenSource,
        record_call: CallRecorder,
        token_extra: dict[str, Any] | None = None,
        budget: CallBudget = NO_BUDGET,
    ) -> CrmClient:
        """The CRM client of one connection; ``token_extra`` holds its non-secret token facts
        (``TokenSet.extra``, e.g. Salesforce's ``instance_url``); ``budget`` is the account's
        shared rate-limit budget (``integrations.ratelimit.budget_for``)."""
