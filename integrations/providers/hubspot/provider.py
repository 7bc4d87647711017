"""HubSpot: OAuth 2 particulars, rate limits and the CRM client.

Rate limits, from HubSpot's usage guidelines for public (OAuth) apps: 110 requests per
rolling ten seconds per installing account (``ten_secondly_rolling``), CRM search also five
per second (``secondly``, a window for search calls only), and no daily limit (OAuth calls get
no ``X-HubSpot-RateLimit-Daily`` headers because none applies; when answers carry them, or
``RATE_LIMIT_OVERRIDES`` sets ``hubspot.daily``, the shared budget keeps to that too). Limits
HubSpot reports in its headers replace these. Batch endpoints take 100 inputs; CRM search
returns at most 200 per page and pages through at most 10,000 results.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from django.conf import settings

from core.errors import AppError, ProviderAuthError
from core.result import Result

from ..answers import NoAnswer, Unreadable
from ..base import (
    NO_BUDGET,
    AccountIdentity,
    CallBudget,
    CallRecorder,
    Provider,
    RateLimitPolicy,
    RateWindow,
    TokenSet,
    TokenSource,
)
from ..unified import ObjectType
from .client import HubSpotCrmClient
from .errors import (
    HttpFailure,
    error_for_answer,
    error_for_no_answer,
    error_for_unreadable,
    hubspot_error,
)
from .transport import run_sdk, sdk_client
from .wire import AccessTokenInfo, from_sdk

# HubSpot's 400 ``status`` when a refresh token is unknown, revoked or expired.
REFUSED_REFRESH_STATUSES = frozenset({"BAD_REFRESH_TOKEN"})


class HubSpotProvider(Provider):
    key: ClassVar[str] = "hubspot"
    display_name: ClassVar[str] = "HubSpot"
    authorize_path: ClassVar[str] = "/oauth/authorize"
    token_path: ClassVar[str] = "/oauth/v1/token"  # noqa: S105 - a URL path
    scopes: ClassVar[tuple[str, ...]] = (
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "crm.objects.companies.read",
        "crm.objects.companies.write",
        "crm.objects.deals.read",
        "crm.objects.deals.write",
    )
    token_auth_method = "client_secret_post"  # noqa: S105 - a method name
    use_pkce: ClassVar[bool] = True
    object_types: ClassVar[tuple[ObjectType, ...]] = ("contact", "company", "deal")
    rate_limit: ClassVar[RateLimitPolicy] = RateLimitPolicy(
        windows=[
            RateWindow(name="ten_secondly_rolling", limit=110, seconds=10),
            RateWindow(name="secondly", limit=5, seconds=1, kinds=["search"]),
        ],
        daily_limit=None,
        daily_name="daily",
        daily_reset="midnight_utc",
        batch_size=100,
        search_page_size=200,
        search_result_cap=10_000,
    )

    def authorize_params(self) -> dict[str, str]:
        # HubSpot asks for optional scopes in their own parameter.
        return {"optional_scope": " ".join(self.optional_scopes)} if self.optional_scopes else {}

    def refresh_refused(self, status: int, body: Any) -> bool:
        """HubSpot answers a dead refresh token with 400 ``{"status": "BAD_REFRESH_TOKEN"}``;
        an RFC 6749 ``invalid_grant`` counts too."""
        if not isinstance(body, dict):
            return False
        error = hubspot_error(body)
        return error.status in REFUSED_REFRESH_STATUSES or error.error == "invalid_grant"

    async def fetch_identity(self, tokens: TokenSet) -> Result[AccountIdentity]:
        """``GET /oauth/v1/access-tokens/{token}``: the hub, the consenting user, the scopes."""
        api = sdk_client(api_url=self.config.api_url).oauth.access_tokens_api

        def blocking() -> AccessTokenInfo:
            data, status, _headers = run_sdk(
                lambda: api.get_with_http_info(
                    tokens.access_token, _request_timeout=settings.PROVIDER_TIMEOUT_SECONDS
                )
            )
            try:
                return from_sdk(AccessTokenInfo, data)
            except ValueError as exc:
                raise Unreadable(status) from exc

        try:
            info = await asyncio.to_thread(blocking)
        except HttpFailure as failure:
            if failure.status in (401, 404):  # HubSpot does not know this token (any more)
                return Result.fail(
                    ProviderAuthError(
                        "HubSpot does not recognise the access token.",
                        details={"provider": "hubspot", "status": failure.status},
                    )
                )
            return Result.fail(error_for_answer(failure))
        except (NoAnswer, Unreadable) as failure:
            return Result.fail(_failure_error(failure))
        return Result.ok(
            AccountIdentity(
                external_id=str(info.hub_id),
                display_name=info.hub_domain or f"Hub {info.hub_id}",
                user=info.user,
                scopes=info.scopes,
                extra={"user_id": info.user_id, "app_id": info.app_id},
            )
        )

    async def revoke(self, tokens: TokenSet) -> Result[None]:
        """``DELETE /oauth/v1/refresh-tokens/{token}``; 404 means it is already gone."""
        if not tokens.refresh_token:
            return Result.ok(None)
        refresh_token = tokens.refresh_token
        api = sdk_client(api_url=self.config.api_url).oauth.refresh_tokens_api
        try:
            await asyncio.to_thread(
                run_sdk,
                lambda: api.archive_with_http_info(
                    refresh_token, _request_timeout=settings.PROVIDER_TIMEOUT_SECONDS
                ),
            )
        except HttpFailure as failure:
            if failure.status == 404:
                return Result.ok(None)
            return Result.fail(error_for_answer(failure))
        except (NoAnswer, Unreadable) as failure:
            return Result.fail(_failure_error(failure))
        return Result.ok(None)

    def crm_client(
        self,
        *,
        tokens: TokenSource,
        record_call: CallRecorder,
        token_extra: dict[str, Any] | None = None,
        budget: CallBudget = NO_BUDGET,
    ) -> HubSpotCrmClient:
        return HubSpotCrmClient(
            tokens=tokens,
            record_call=record_call,
            budget=budget,
            api_url=self.config.api_url,
            rate_limit=self.rate_limit,
            extra_properties=self.extra_properties(),
        )

    def extra_properties(self) -> dict[ObjectType, list[str]]:
        """Custom properties to read, from ``PROVIDERS["hubspot"]["<type>_properties"]``
        (comma-separated): HubSpot returns only the properties a read names."""
        found: dict[ObjectType, list[str]] = {}
        for object_type in self.object_types:
            raw = self.config.extra.get(f"{object_type}_properties", "")
            names = [name.strip() for name in raw.split(",") if name.strip()]
            if names:
                found[object_type] = names
        return found


def _failure_error(failure: NoAnswer | Unreadable) -> AppError:
    if isinstance(failure, NoAnswer):
        return error_for_no_answer(failure)
    return error_for_unreadable(failure)
