"""The OAuth 2 token endpoint and authorize URL, through Authlib's requests client (PKCE S256,
client auth).

Synchronous on purpose: a refresh runs while the connection row is locked, inside a database
transaction, in a worker thread. Async callers use ``asyncio.to_thread``. Failures come back
as coded ``AppError``s and never carry a token or a secret.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.utils import timezone

from core.errors import ProviderAuthError, ProviderError, ProviderUnavailable

from .providers.base import Provider, TokenSet

logger = logging.getLogger("switchboard.oauth")


class TokenEndpointRefused(Exception):
    """The token endpoint answered 4xx; ``body`` is its parsed JSON (or None)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"token endpoint answered {status}")
        self.status = status
        self.body = body


def _refuse_errors(response: requests.Response) -> requests.Response:
    # Providers disagree on error bodies (HubSpot sends {"status": "BAD_REFRESH_TOKEN"} and
    # no "error"), so judge by the status before Authlib reads it as a token.
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise TokenEndpointRefused(response.status_code, body)
    return response


def _client(provider: Provider) -> OAuth2Session:
    config = provider.config
    client = OAuth2Session(
        client_id=config.client_id,
        client_secret=config.client_secret,
        token_endpoint_auth_method=provider.token_auth_method,
        redirect_uri=config.redirect_uri,
        scope=" ".join(provider.scopes),
        code_challenge_method="S256" if provider.use_pkce else None,
    )
    client.register_compliance_hook("access_token_response", _refuse_errors)
    client.register_compliance_hook("refresh_token_response", _refuse_errors)
    return client


def authorization_url(
    provider: Provider, *, state: str, code_verifier: str | None, login_url: str | None = None
) -> str:
    with _client(provider) as client:
        url, _ = client.create_authorization_url(
            provider.authorize_url(login_url),
            state=state,
            code_verifier=code_verifier if provider.use_pkce else None,
            **provider.authorize_params(),
        )
    return str(url)


def _token_call(provider: Provider, what: str, call: Any) -> TokenSet:
    try:
        body = call()
    except TokenEndpointRefused:
        raise
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise ProviderUnavailable(
            f"{provider.display_name} did not answer the {what}.",
            details={"provider": provider.key, "cause": type(exc).__name__},
        ) from exc
    except requests.HTTPError as exc:  # Authlib raises it for a 5xx
        status = exc.response.status_code if exc.response is not None else None
        raise ProviderUnavailable(
            f"{provider.display_name} failed the {what} ({status}).",
            details={"provider": provider.key, "status": status},
        ) from exc
    except (ValueError, TypeError) as exc:  # not JSON, not an object, values of wrong types
        raise _not_a_token(provider, what) from exc
    try:
        return provider.parse_token_response(dict(body), now=timezone.now())
    except ProviderError:
        raise
    except (ValueError, TypeError) as exc:  # e.g. a refresh token that is not a string
        raise _not_a_token(provider, what) from exc


def _not_a_token(provider: Provider, what: str) -> ProviderError:
    return ProviderError(
        f"{provider.display_name} answered the {what} with something that is not a token.",
        details={"provider": provider.key},
    )


def token_exchange_code(
    provider: Provider,
    *,
    code: str,
    code_verifier: str | None,
    redirect_uri: str,
    login_url: str | None = None,
) -> TokenSet:
    """Trade an authorization code for tokens. Raises ``ProviderError`` when refused.

    ``login_url`` (where the person signed in) is kept in ``TokenSet.extra`` for refreshes.
    """

    def call() -> Any:
        with _client(provider) as client:
            return client.fetch_token(
                provider.token_url(login_url),
                grant_type="authorization_code",
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=code_verifier if provider.use_pkce else None,
                timeout=settings.PROVIDER_TIMEOUT_SECONDS,
            )

    try:
        tokens = _token_call(provider, "code exchange", call)
    except TokenEndpointRefused as exc:
        raise ProviderError(
            f"{provider.display_name} refused the authorization code.",
            details={"provider": provider.key, "status": exc.status, "reason": _reason(exc.body)},
        ) from exc
    if login_url:
        tokens.extra["login_url"] = login_url
    return tokens


def token_refresh(
    provider: Provider, *, refresh_token: str, login_url: str | None = None
) -> TokenSet:
    """New tokens from a refresh token (the answer may rotate the refresh token).

    Raises ``ProviderAuthError`` (``reauth_required``) when the provider says the grant is
    gone, ``ProviderUnavailable`` when it could not be asked, ``ProviderError`` otherwise.
    """

    def call() -> Any:
        with _client(provider) as client:
            return client.refresh_token(
                provider.token_url(login_url),
                refresh_token=refresh_token,
                timeout=settings.PROVIDER_TIMEOUT_SECONDS,
            )

    try:
        tokens = _token_call(provider, "token refresh", call)
    except TokenEndpointRefused as exc:
        reason = _reason(exc.body)
        if provider.refresh_refused(exc.status, exc.body):
            raise ProviderAuthError(
                f"{provider.display_name} no longer accepts this connection's refresh token.",
                details={"provider": provider.key, "reason": reason},
            ) from exc
        raise ProviderError(
            f"{provider.display_name} refused the token refresh.",
            details={"provider": provider.key, "status": exc.status, "reason": reason},
        ) from exc
    if tokens.refresh_token is None:
        tokens = tokens.model_copy(update={"refresh_token": refresh_token})
    return tokens


def _reason(body: Any) -> str:
    """A short, secret-free reason from a token endpoint error body."""
    if not isinstance(body, dict):
        return "unreadable response"
    for key in ("error", "status"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value[:64]
    return "refused"
