"""Salesforce: OAuth 2.0 web server flow particulars, login hosts, limits and the CRM client.

Login hosts: people sign in at production (login.salesforce.com), a sandbox
(test.salesforce.com) or their org's My Domain, and the token endpoint lives on the same host
(``token_on_login_host``); the API lives on the org's ``instance_url`` from the token answer.
Salesforce access tokens carry no ``expires_in`` (the session timeout is an org setting), so
they are used until a 401 says otherwise.

Limits: the org's API allocation is a rolling 24 hours, its size depends on edition and
licences; ``daily_limit`` is a conservative default and every answer's ``Sforce-Limit-Info``
(reported as ``ProviderCall.budget_used``/``budget_limit``) gives the live figure, which the
shared budget keeps to, stopping at 95% (``daily_reserve``) with ``rate_limited``. sObject
Collections take 200 records a call.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit

from django.conf import settings

from core.errors import ProviderAuthError, ProviderError, ValidationFailed
from core.result import Result

from ..base import (
    NO_BUDGET,
    AccountIdentity,
    CallBudget,
    CallRecorder,
    LoginOption,
    Provider,
    RateLimitPolicy,
    TokenSet,
    TokenSource,
    discard_call,
)
from ..unified import ObjectType
from .client import SalesforceCrmClient
from .soql import is_record_id
from .transport import Sdk, Transport
from .wire import Identity, validate

DEFAULT_API_VERSION: Final = "62.0"
# A My Domain login host: lowercase labels ending in .my.salesforce.com, sandboxes included
# (acme--dev.sandbox.my.salesforce.com), scratch and Developer Edition orgs too.
MY_DOMAIN: Final = re.compile(
    r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+my\.salesforce\.com"
)
# The org id (00D...) in an identity URL: https://login.salesforce.com/id/<org>/<user>.
_IDENTITY_PATH: Final = re.compile(r"/id/([A-Za-z0-9]{15,18})/[A-Za-z0-9]{15,18}/?$")


class AccessTokenOnly:
    """A ``TokenSource`` for the provider's own calls: one token, no refreshing (a 401 means
    the token from the code exchange is already dead)."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, rejected: str) -> str:
        raise ProviderAuthError(
            "Salesforce rejected the access token.", details={"provider": "salesforce"}
        )


def org_id_of(id_url: Any) -> str | None:
    found = _IDENTITY_PATH.search(urlsplit(id_url).path) if isinstance(id_url, str) else None
    return found.group(1) if found else None


class SalesforceProvider(Provider):
    key: ClassVar[str] = "salesforce"
    display_name: ClassVar[str] = "Salesforce"
    authorize_path: ClassVar[str] = "/services/oauth2/authorize"
    token_path: ClassVar[str] = "/services/oauth2/token"  # noqa: S105 - a URL path
    # api: REST API; refresh_token (alias offline_access): a refresh token; id: identity URL.
    scopes: ClassVar[tuple[str, ...]] = ("api", "refresh_token", "id")
    token_auth_method = "client_secret_post"  # noqa: S105 - a method name
    use_pkce: ClassVar[bool] = True
    token_on_login_host: ClassVar[bool] = True
    object_types: ClassVar[tuple[ObjectType, ...]] = ("contact", "company", "deal")
    rate_limit: ClassVar[RateLimitPolicy] = RateLimitPolicy(
        windows=[],
        daily_limit=15_000,
        daily_name="daily_api_requests",
        daily_reset="rolling",
        daily_reserve=0.05,  # stop at 95% of the org's allocation: other apps share it
        batch_size=200,
        search_page_size=200,
    )
    connect_note: ClassVar[str] = (
        "Salesforce allows five approvals of Switchboard per Salesforce user. Every approval "
        "counts, including reconnecting an org that is already connected. A sixth approval "
        "silently revokes that user's oldest one, and the connection that relied on it stops "
        "working until someone re-authorises it. Connect each org with its own integration user "
        "to stay clear of the limit."
    )

    def login_options(self) -> list[LoginOption]:
        return [
            LoginOption(environment="production", label="Production (login.salesforce.com)"),
            LoginOption(environment="sandbox", label="Sandbox (test.salesforce.com)"),
            LoginOption(
                environment="my_domain",
                label="My Domain (yourcompany.my.salesforce.com)",
                needs_domain=True,
            ),
        ]

    def login_url(self, environment: str | None = None, domain: str | None = None) -> str:
        """The login host for a wizard choice; ``ValidationFailed`` naming the bad field."""
        if environment in (None, "", "production"):
            return self.config.app_url.rstrip("/")
        if environment == "sandbox":
            return self.config.extra.get("sandbox_login_url", "https://test.salesforce.com").rstrip(
                "/"
            )
        if environment == "my_domain":
            host = domain or ""
            if MY_DOMAIN.fullmatch(host) is None:
                raise ValidationFailed(
                    "Enter your org's My Domain host, e.g. acme.my.salesforce.com or "
                    "acme--dev.sandbox.my.salesforce.com.",
                    details={"fields": {"domain": "a host name ending in .my.salesforce.com"}},
                )
            template = self.config.extra.get("my_domain_url", "https://{domain}")
            return template.replace("{domain}", host).rstrip("/")
        raise ValidationFailed(
            f"Unknown Salesforce login environment {environment!r}.",
            details={"fields": {"environment": "one of production, sandbox, my_domain"}},
        )

    def parse_token_response(self, body: dict[str, Any], *, now: datetime) -> TokenSet:
        """Salesforce's token answer: no ``expires_in``; ``instance_url`` (the API host),
        ``id`` (the identity URL) and ``issued_at`` are kept in ``extra``; ``signature`` is not
        needed and dropped."""
        tokens = super().parse_token_response(body, now=now)
        instance_url = body.get("instance_url")
        parts = urlsplit(instance_url) if isinstance(instance_url, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise ProviderError(
                "Salesforce's token answer has no usable instance_url.",
                details={"provider": "salesforce"},
            )
        extra: dict[str, Any] = {"instance_url": str(instance_url).rstrip("/")}
        if isinstance(body.get("id"), str):
            extra["id_url"] = body["id"]
        if body.get("issued_at") is not None:
            extra["issued_at"] = str(body["issued_at"])
        return tokens.model_copy(update={"expires_at": None, "extra": extra})

    def refresh_refused(self, status: int, body: Any) -> bool:
        """Salesforce answers a revoked or expired refresh token (or an inactive user) with
        400 ``{"error": "invalid_grant"}``."""
        return isinstance(body, dict) and body.get("error") == "invalid_grant"

    def _transport(self, instance_url: str | None, token: str) -> Transport:
        # The framework gives fetch_identity/revoke no CallRecorder, so their calls go unlogged.
        return Transport(
            instance_url=instance_url,
            api_version=self.api_version,
            ca_file=self.ca_file,
            timeout=settings.PROVIDER_TIMEOUT_SECONDS,
            tokens=AccessTokenOnly(token),
            record_call=discard_call,
        )

    @property
    def api_version(self) -> str:
        return self.config.extra.get("api_version") or DEFAULT_API_VERSION

    @property
    def ca_file(self) -> str | None:
        return self.config.extra.get("ca_file") or None

    async def fetch_identity(self, tokens: TokenSet) -> Result[AccountIdentity]:
        """The identity URL (org id, user), then the org's name from the Organization
        object (the instance host when that read fails)."""
        id_url = tokens.extra.get("id_url")
        instance_url = str(tokens.extra.get("instance_url") or "")
        if not isinstance(id_url, str) or urlsplit(id_url).scheme not in ("https", "http"):
            return Result.fail(
                ProviderError(
                    "Salesforce's token answer has no identity URL (is the 'id' scope granted?).",
                    details={"provider": "salesforce"},
                )
            )
        transport = self._transport(instance_url, tokens.access_token)
        found = await transport.call(
            lambda sdk: validate(Identity, sdk.send("GET", id_url)[2]), needs_instance=False
        )
        if found.error is not None:
            error = found.error
            if error.details.get("status") == 403:  # the identity URL's "Bad_OAuth_Token"
                error = ProviderAuthError(error.message, details=error.details)
            return Result.fail(error)
        identity = found.unwrap()
        name = urlsplit(instance_url).hostname or identity.organization_id
        if is_record_id(identity.organization_id):
            org = identity.organization_id

            def read_name(sdk: Sdk) -> str:
                answer = sdk.salesforce.restful(f"sobjects/Organization/{org}", {"fields": "Name"})
                return (
                    str(answer["Name"]) if isinstance(answer, dict) and answer.get("Name") else ""
                )

            name = (await transport.call(read_name)).unwrap_or("") or name
        return Result.ok(
            AccountIdentity(
                external_id=identity.organization_id,
                display_name=name,
                user=identity.username,
                scopes=tokens.scopes,
                extra={
                    "user_id": identity.user_id,
                    "organization_id": identity.organization_id,
                    "instance_url": instance_url,
                },
            )
        )

    async def revoke(self, tokens: TokenSet) -> Result[None]:
        """``POST {login host}/services/oauth2/revoke`` with the refresh token (revoking it
        revokes its access tokens too); an ``invalid_token`` answer means already revoked."""
        token = tokens.refresh_token or tokens.access_token
        login = str(tokens.extra.get("login_url") or self.config.app_url).rstrip("/")
        transport = self._transport(None, token)

        def invoke(sdk: Sdk) -> None:
            sdk.send("POST", f"{login}/services/oauth2/revoke", form={"token": token}, bearer=False)

        done = await transport.call(invoke, needs_instance=False)
        if done.error is not None and done.error.details.get("error_code") == "invalid_token":
            return Result.ok(None)
        return done

    def crm_client(
        self,
        *,
        tokens: TokenSource,
        record_call: CallRecorder,
        token_extra: dict[str, Any] | None = None,
        budget: CallBudget = NO_BUDGET,
    ) -> SalesforceCrmClient:
        extra = token_extra or {}
        return SalesforceCrmClient(
            tokens=tokens,
            record_call=record_call,
            budget=budget,
            instance_url=extra.get("instance_url"),
            api_version=self.api_version,
            ca_file=self.ca_file,
            rate_limit=self.rate_limit,
            org_id=org_id_of(extra.get("id_url")),
        )
