"""How the HubSpot client reaches HubSpot, one attempt at a time.

``Transport.call`` owns the policy every call shares: take a token from the ``TokenSource``,
take rate-limit budget (``CallBudget.acquire``: it may wait; when it refuses, the call fails
with ``rate_limited`` without reaching HubSpot), make one HTTP attempt, report the answer to the
budget (``observe``: HubSpot's rate-limit headers) and the call log; on a 401 refresh the token
once and try once more (with budget again); turn any failure into a ``Result.fail`` with an
``AppError``. SDK calls run in a
worker thread (the SDK is synchronous, and its own urllib3 retries are off: the outbox and
the rate limiter own retrying); the raw passthrough uses httpx.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import httpx

import hubspot
from core.errors import AppError, ErrorCode, ValidationFailed
from core.result import Result

from ..answers import NoAnswer, Unreadable, parse_body
from ..base import NO_BUDGET, CallBudget, CallKind, CallRecorder, ProviderCall, TokenSource
from ..unified import RawResponse
from .errors import (
    HttpFailure,
    error_for_answer,
    error_for_no_answer,
    error_for_unreadable,
    from_sdk_exception,
)

T = TypeVar("T")

# The SDK's complaints about how it was called are our bugs, not HubSpot's answers.
_SDK_USAGE_ERRORS: Final = frozenset(
    {"ApiTypeError", "ApiValueError", "ApiKeyError", "ApiAttributeError"}
)


def sdk_client(*, api_url: str, access_token: str | None = None) -> Any:
    """The SDK pointed at ``api_url`` (its DiscoveryBase copies ``host`` onto every generated
    Configuration), with urllib3's retries off (``retry=False``: no retry, no redirect)."""
    return hubspot.HubSpot(access_token=access_token, host=api_url.rstrip("/"), retry=False)


def run_sdk(invoke: Callable[[], Any]) -> tuple[Any, int, dict[str, str]]:
    """Run one SDK ``*_with_http_info`` call: ``(data, status, headers)``, or raise
    ``HttpFailure``, ``NoAnswer`` or ``Unreadable``. Blocking: call it from a worker thread."""
    try:
        data, status, headers = invoke()
    except Exception as exc:
        failure = from_sdk_exception(exc)
        if failure is not None:
            raise failure from exc
        if type(exc).__name__ not in _SDK_USAGE_ERRORS and isinstance(
            exc, ValueError | TypeError | KeyError | AttributeError
        ):
            # The generated models raise these when an answer lacks a required field.
            raise Unreadable(None) from exc
        raise
    return data, int(status), {str(k): str(v) for k, v in dict(headers or {}).items()}


def raw_answer(response: Any) -> tuple[Any, int, Any]:
    """A ``*_with_http_info`` answer fetched with ``_preload_content=False`` (body as parsed
    JSON), for answers the SDK has no model for: it knows only 200 for v4 batch
    associate/default, so a 207 would arrive as ``None``. Non-2xx answers still raise."""
    try:
        body = parse_body(response.data)
    finally:
        response.release_conn()
    return body, int(response.status), response.headers


@dataclass(frozen=True, slots=True)
class Reply(Generic[T]):
    value: T
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)


def call_kind(method: str, path: str) -> CallKind:
    """What a call spends: CRM searches count in HubSpot's search window too."""
    method = method.upper()
    if method == "POST" and path.split("?", 1)[0].rstrip("/").endswith("/search"):
        return "search"
    return "write" if method in {"POST", "PATCH", "PUT", "DELETE"} else "read"


class SdkApis:
    """The generated API objects for one access token (each holds its own urllib3 pool)."""

    def __init__(self, *, api_url: str, access_token: str, timeout: float) -> None:
        client = sdk_client(api_url=api_url, access_token=access_token)
        self.objects_basic: Any = client.crm.objects.basic_api
        self.objects_batch: Any = client.crm.objects.batch_api
        self.objects_search: Any = client.crm.objects.search_api
        self.associations_basic: Any = client.crm.associations.v4.basic_api
        self.associations_batch: Any = client.crm.associations.v4.batch_api
        # Pass as ``**apis.kw`` to every call: the SDK has no client-wide timeout.
        self.kw: dict[str, Any] = {"_request_timeout": timeout}


class Transport:
    def __init__(
        self,
        *,
        api_url: str,
        timeout: float,
        tokens: TokenSource,
        record_call: CallRecorder,
        budget: CallBudget = NO_BUDGET,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.tokens = tokens
        self.record_call = record_call
        self.budget = budget
        self._apis: tuple[str, SdkApis] | None = None
        self._apis_lock = threading.Lock()

    def _apis_for(self, token: str) -> SdkApis:
        # One set of API objects per token, so connections are reused until a refresh.
        with self._apis_lock:
            if self._apis is None or self._apis[0] != token:
                apis = SdkApis(api_url=self.api_url, access_token=token, timeout=self.timeout)
                self._apis = (token, apis)
            return self._apis[1]

    async def sdk(
        self,
        method: str,
        path: str,
        invoke: Callable[[SdkApis], Any],
        parse: Callable[[Any], T],
        *,
        subject: str | None = None,
    ) -> Result[T]:
        """One SDK call: ``invoke`` calls a ``*_with_http_info`` method, ``parse`` turns its
        data into our models (both in the worker thread). ``method``/``path`` name the
        request in the call log; ``subject`` names the record in a 404's message."""

        def blocking(token: str) -> Reply[T]:
            apis = self._apis_for(token)
            data, status, headers = run_sdk(lambda: invoke(apis))
            try:
                return Reply(parse(data), status, headers)
            except (ValueError, TypeError, KeyError) as exc:
                raise Unreadable(status) from exc

        async def send(token: str) -> Reply[T]:
            return await asyncio.to_thread(blocking, token)

        return await self.call(method, path, send, subject=subject)

    async def http(
        self, method: str, path: str, *, params: dict[str, Any] | None, json: Any
    ) -> Result[RawResponse]:
        """A raw request to ``path`` under the API base URL (never another host)."""
        if not path.startswith("/") or path.startswith("//") or "://" in path:
            return Result.fail(
                ValidationFailed(
                    "The path must be relative to HubSpot's API, e.g. /crm/v3/objects/contacts.",
                    details={"fields": {"path": "must start with a single '/'"}},
                )
            )
        method = method.upper()

        async def send(token: str) -> Reply[RawResponse]:
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            try:
                async with httpx.AsyncClient(base_url=self.api_url, timeout=self.timeout) as client:
                    response = await client.request(
                        method, path, params=params, json=json, headers=headers
                    )
            except httpx.TimeoutException as exc:
                raise NoAnswer(timed_out=True) from exc
            except httpx.HTTPError as exc:
                raise NoAnswer(timed_out=False) from exc
            body = parse_body(response.content) if response.content else None
            answer_headers = dict(response.headers)
            if not response.is_success:
                raise HttpFailure(response.status_code, body, answer_headers)
            raw = RawResponse(status=response.status_code, headers=answer_headers, body=body)
            return Reply(raw, response.status_code, answer_headers)

        return await self.call(method, path, send)

    async def call(
        self,
        method: str,
        path: str,
        send: Callable[[str], Awaitable[Reply[T]]],
        *,
        subject: str | None = None,
    ) -> Result[T]:
        """Run ``send(token)`` under the shared policy (module docstring). Never raises for
        a HubSpot failure; a token source's or the budget's ``AppError`` becomes the result
        too."""
        path = path.split("?", 1)[0]
        kind = call_kind(method, path)
        try:
            token = await self.tokens.access_token()
        except AppError as exc:
            return Result.fail(exc)
        attempt = 1
        while True:
            try:
                waited = await self.budget.acquire(kind)
            except AppError as exc:  # no budget within the longest wait: HubSpot never sees it
                return Result.fail(exc)
            started = time.perf_counter()
            try:
                reply = await send(token)
            except HttpFailure as failure:
                await self.budget.observe(status=failure.status, headers=failure.headers)
                if failure.status == 401 and attempt == 1:
                    await self._record(
                        method, path, 401, started, attempt, waited, ErrorCode.UNAUTHENTICATED
                    )
                    try:
                        token = await self.tokens.refresh(rejected=token)
                    except AppError as exc:
                        return Result.fail(exc)
                    attempt += 1
                    continue
                error = error_for_answer(failure, subject=subject)
                await self._record(
                    method, path, failure.status, started, attempt, waited, error.code
                )
                return Result.fail(error)
            except NoAnswer as failure:
                error = error_for_no_answer(failure)
                await self._record(method, path, None, started, attempt, waited, error.code)
                return Result.fail(error)
            except Unreadable as failure:
                await self.budget.observe(status=failure.status, headers={})
                error = error_for_unreadable(failure)
                await self._record(
                    method, path, failure.status, started, attempt, waited, error.code
                )
                return Result.fail(error)
            await self.budget.observe(status=reply.status, headers=reply.headers)
            await self._record(method, path, reply.status, started, attempt, waited, None)
            return Result.ok(reply.value)

    async def _record(
        self,
        method: str,
        path: str,
        status: int | None,
        started: float,
        attempt: int,
        waited: float,
        error_code: ErrorCode | None,
    ) -> None:
        await self.record_call(
            ProviderCall(
                method=method,
                path=path,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                attempt=attempt,
                waited_ms=round(waited * 1000, 2),
                error_code=error_code.value if error_code else None,
            )
        )
