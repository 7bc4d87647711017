"""How the Salesforce client reaches Salesforce, one attempt at a time.

``Transport.call`` owns the policy every call shares: take a token from the ``TokenSource``,
take rate-limit budget (``CallBudget.acquire``: it may wait; when it refuses, the call fails
with ``rate_limited`` without reaching Salesforce), run one simple-salesforce call in a worker
thread (the SDK is synchronous), report every HTTP request it made to the budget (``observe``:
the org's API usage from ``Sforce-Limit-Info``; a ``REQUEST_LIMIT_EXCEEDED`` refusal counts as
a 429) and to the call log; on a 401 (``INVALID_SESSION_ID``) refresh the token once and try
once more (with budget again); turn any failure into a ``Result.fail`` with an ``AppError``.

The SDK runs on our ``requests`` session (``RecordingSession``): it applies the timeout the SDK
has no setting for, trusts the configured CA file (the sandbox's own CA; production uses the
system store), keeps no cookies, and notes each request's status and headers, which the SDK's
exceptions do not carry. Sessions are per worker thread, so a call never shares one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import requests
from requests.models import PreparedRequest, Response
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.exceptions import SalesforceError

from core.errors import AppError, ErrorCode, ProviderAuthError, ProviderRateLimited
from core.result import Result

from ..answers import NoAnswer, Unreadable, parse_body
from ..base import NO_BUDGET, CallBudget, CallKind, CallRecorder, ProviderCall, TokenSource
from .errors import HttpFailure, error_for_answer, error_for_no_answer, error_for_unreadable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP request as the call log sees it (path only: no host, query or secrets)."""

    method: str
    path: str
    status: int | None
    headers: Mapping[str, str]
    duration_ms: float


class RecordingSession(requests.Session):
    def __init__(self, *, timeout: float, ca_file: str | None) -> None:
        super().__init__()
        self.timeout = timeout
        self.ca_file = ca_file or None
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self.exchanges: list[Exchange] = []

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if self.ca_file:
            # Set here, not as ``self.verify``: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE
            # override a session's ``verify``, and this CA must win over them.
            kwargs["verify"] = self.ca_file
        method, path = request.method or "GET", urlsplit(request.url or "").path
        started = time.perf_counter()
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException:
            self.exchanges.append(Exchange(method, path, None, {}, _since(started)))
            raise
        self.exchanges.append(
            Exchange(method, path, response.status_code, response.headers, _since(started))
        )
        return response


_sessions = threading.local()


def session_for(*, timeout: float, ca_file: str | None) -> RecordingSession:
    """This thread's session for these settings (connections are reused across calls)."""
    pool: dict[tuple[float, str | None], RecordingSession] = _sessions.__dict__.setdefault(
        "pool", {}
    )
    key = (timeout, ca_file)
    if key not in pool:
        pool[key] = RecordingSession(timeout=timeout, ca_file=ca_file)
    session = pool[key]
    session.exchanges = []
    return session


class Sdk:
    """What one attempt works with: the session, and the SDK bound to the token."""

    def __init__(
        self, session: RecordingSession, token: str, instance_url: str, api_version: str
    ) -> None:
        self.session = session
        self.token = token
        self.instance_url = instance_url.rstrip("/")
        self.api_version = api_version

    @cached_property
    def salesforce(self) -> Salesforce:
        return Salesforce(
            instance_url=self.instance_url,
            session_id=self.token,
            version=self.api_version,
            session=self.session,
            object_pairs_hook=dict,
        )

    def sobject(self, name: str) -> SFType:
        """The SDK's handle on one sObject type (create, update, delete)."""
        return SFType(
            name,
            self.token,
            self.salesforce.sf_instance,
            sf_version=self.api_version,
            session=self.session,
            salesforce=self.salesforce,
            object_pairs_hook=dict,
        )

    @property
    def data_path(self) -> str:
        return f"/services/data/v{self.api_version}"

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        bearer: bool = True,
    ) -> tuple[int, dict[str, str], Any]:
        """One request on the session: ``(status, headers, parsed body)``; raises
        ``HttpFailure`` outside 2xx (the SDK's calls raise its own exceptions instead)."""
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {self.token}"
        response = self.session.request(
            method, url, params=dict(params or {}), json=json, data=form, headers=headers
        )
        body = parse_body(response.content)
        answer_headers = {k.lower(): v for k, v in response.headers.items()}
        if not 200 <= response.status_code < 300:
            raise HttpFailure(response.status_code, body, answer_headers)
        return response.status_code, answer_headers, body


@dataclass(slots=True)
class Outcome(Generic[T]):
    value: T | None = None
    failure: HttpFailure | NoAnswer | Unreadable | AppError | None = None
    exchanges: list[Exchange] = field(default_factory=list)


def usage(headers: Mapping[str, str]) -> tuple[int | None, int | None]:
    """``Sforce-Limit-Info: api-usage=used/limit`` (simple-salesforce's own parser)."""
    raw = next((v for k, v in headers.items() if k.lower() == "sforce-limit-info"), None)
    found = Salesforce.parse_api_usage(raw).get("api-usage") if raw else None
    return (found[0], found[1]) if found else (None, None)


class Transport:
    def __init__(
        self,
        *,
        instance_url: str | None,
        api_version: str,
        ca_file: str | None,
        timeout: float,
        tokens: TokenSource,
        record_call: CallRecorder,
        budget: CallBudget = NO_BUDGET,
    ) -> None:
        self.instance_url = (instance_url or "").rstrip("/")
        self.api_version = api_version
        self.ca_file = ca_file
        self.timeout = timeout
        self.tokens = tokens
        self.record_call = record_call
        self.budget = budget

    def _attempt(self, token: str, invoke: Callable[[Sdk], T]) -> Outcome[T]:
        """One attempt, in a worker thread; never raises for a Salesforce failure."""
        session = session_for(timeout=self.timeout, ca_file=self.ca_file)
        outcome: Outcome[T] = Outcome(exchanges=session.exchanges)
        try:
            outcome.value = invoke(Sdk(session, token, self.instance_url, self.api_version))
        except SalesforceError as exc:
            last = session.exchanges[-1].headers if session.exchanges else {}
            content = exc.content
            body = parse_body(content) if isinstance(content, bytes | str) else content
            outcome.failure = HttpFailure(exc.status, body, last)
        except (HttpFailure, NoAnswer, Unreadable, AppError) as exc:
            outcome.failure = exc
        except requests.exceptions.JSONDecodeError:
            outcome.failure = Unreadable(_last_status(session))
        except requests.Timeout:
            outcome.failure = NoAnswer(timed_out=True)
        except requests.RequestException:
            outcome.failure = NoAnswer(timed_out=False)
        except (ValueError, TypeError, KeyError):
            # Answers without the documented shape (our pydantic models raise ValueError).
            outcome.failure = Unreadable(_last_status(session))
        return outcome

    async def call(
        self,
        invoke: Callable[[Sdk], T],
        *,
        subject: str | None = None,
        sent: Mapping[str, Any] | None = None,
        needs_instance: bool = True,
        kind: CallKind = "read",
    ) -> Result[T]:
        """Run ``invoke`` under the shared policy (module docstring). ``subject`` names the
        record in a 404's message; ``sent`` is the JSON object a write sent (it lets a
        JSON_PARSER_ERROR name its field); ``kind`` is what the call spends of the budget.
        Never raises for a Salesforce failure."""
        if needs_instance and not self.instance_url:
            return Result.fail(
                ProviderAuthError(
                    "The connection has no Salesforce instance URL; connect it again.",
                    details={"provider": "salesforce", "reason": "no_instance_url"},
                )
            )
        try:
            token = await self.tokens.access_token()
        except AppError as exc:
            return Result.fail(exc)
        attempt = 1
        while True:
            try:
                waited = await self.budget.acquire(kind)
            except AppError as exc:  # no budget within the longest wait: Salesforce never sees it
                return Result.fail(exc)
            outcome = await asyncio.to_thread(self._attempt, token, invoke)
            failure = outcome.failure
            if failure is None:
                await self._observe(outcome.exchanges, None)
                await self._record(outcome.exchanges, attempt, waited, None)
                return Result.ok(outcome.value)  # type: ignore[arg-type]
            if isinstance(failure, HttpFailure) and failure.status == 401 and attempt == 1:
                await self._observe(outcome.exchanges, None)
                await self._record(outcome.exchanges, attempt, waited, ErrorCode.UNAUTHENTICATED)
                try:
                    token = await self.tokens.refresh(rejected=token)
                except AppError as exc:
                    return Result.fail(exc)
                attempt += 1
                continue
            error = _error(failure, subject=subject, sent=sent)
            await self._observe(outcome.exchanges, error)
            await self._record(outcome.exchanges, attempt, waited, error.code)
            return Result.fail(error)

    async def _observe(self, exchanges: list[Exchange], error: AppError | None) -> None:
        """Every answer to the budget. Salesforce refuses calls past its limits with 403
        ``REQUEST_LIMIT_EXCEEDED`` and no ``Retry-After``: that answer goes as a 429 with
        the wait ``error_for_answer`` chose."""
        for n, exchange in enumerate(exchanges):
            status, headers = exchange.status, exchange.headers
            last = n == len(exchanges) - 1
            if last and isinstance(error, ProviderRateLimited) and status is not None:
                status = 429
                if error.retry_after is not None:
                    headers = {**headers, "Retry-After": f"{error.retry_after:g}"}
            await self.budget.observe(status=status, headers=headers)

    async def _record(
        self,
        exchanges: list[Exchange],
        attempt: int,
        waited: float,
        error_code: ErrorCode | None,
    ) -> None:
        for n, exchange in enumerate(exchanges):
            used, limit = usage(exchange.headers)
            last = n == len(exchanges) - 1
            await self.record_call(
                ProviderCall(
                    method=exchange.method,
                    path=exchange.path,
                    status=exchange.status,
                    duration_ms=exchange.duration_ms,
                    attempt=attempt,
                    waited_ms=round(waited * 1000, 2) if n == 0 else 0.0,
                    error_code=error_code.value if error_code and last else None,
                    budget_used=used,
                    budget_limit=limit,
                )
            )


def _error(
    failure: HttpFailure | NoAnswer | Unreadable | AppError,
    *,
    subject: str | None,
    sent: Mapping[str, Any] | None,
) -> AppError:
    if isinstance(failure, AppError):
        return failure
    if isinstance(failure, HttpFailure):
        return error_for_answer(failure, subject=subject, sent=sent)
    if isinstance(failure, NoAnswer):
        return error_for_no_answer(failure)
    return error_for_unreadable(failure)


def _last_status(session: RecordingSession) -> int | None:
    return session.exchanges[-1].status if session.exchanges else None


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
