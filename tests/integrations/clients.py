"""Test doubles that are real objects, shared by the provider client tests: a ``TokenSource``
that refreshes at the sandbox's token endpoint, and a ``CallRecorder`` that keeps every call."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from core.errors import AppError, ProviderAuthError, ProviderError
from core.result import Result
from integrations.providers.base import Provider, ProviderCall


class SandboxTokens:
    """A ``TokenSource`` holding one minted pair; ``refresh`` posts grant_type=refresh_token
    to the sandbox (as the connection service does) and counts the refreshes."""

    def __init__(
        self,
        provider: Provider,
        minted: dict[str, Any],
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
    ) -> None:
        self.provider = provider
        self.token_url = token_url
        self.client_id, self.client_secret = client_id, client_secret
        self.current: str = str(minted["access_token"])
        self.refresh_token: str = str(minted["refresh_token"])
        self.refreshes = 0
        self._lock = asyncio.Lock()

    async def access_token(self) -> str:
        return self.current

    async def refresh(self, rejected: str) -> str:
        async with self._lock:
            if rejected != self.current:  # someone else refreshed already
                return self.current
            self.refreshes += 1
            form = {
                "grant_type": "refresh_token",
                "refresh_token": self.refresh_token,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(self.token_url, data=form)
            body = answer.json()
            if answer.status_code != 200:
                if self.provider.refresh_refused(answer.status_code, body):
                    raise ProviderAuthError(f"{self.provider.display_name} refused the refresh.")
                raise ProviderError(f"Refresh failed with {answer.status_code}.")
            tokens = self.provider.parse_token_response(body, now=datetime.now(UTC))
            self.current = tokens.access_token
            self.refresh_token = tokens.refresh_token or self.refresh_token
            return self.current


class CallLog:
    """A ``CallRecorder`` that keeps every reported call."""

    def __init__(self) -> None:
        self.calls: list[ProviderCall] = []

    async def __call__(self, call: ProviderCall) -> None:
        self.calls.append(call)

    def summary(
        self, *, describes: bool = False
    ) -> list[tuple[str, str, int | None, int, str | None]]:
        return [
            (c.method, c.path, c.status, c.attempt, c.error_code)
            for c in self.calls
            if describes or not c.path.endswith("/describe")
        ]


def email() -> str:
    return f"{uuid.uuid4().hex[:12]}@acme.test"


def ok(result: Result[Any]) -> Any:
    assert result.error is None, f"{result.error!r} {result.error.details}"
    return result.unwrap()


def fails(result: Result[Any]) -> AppError:
    assert result.error is not None, f"expected a failure, got {result.unwrap_or(None)!r}"
    return result.error
