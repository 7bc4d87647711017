"""HubSpot's Webhooks API, as the sandbox app's subscriptions deliver it.

Once ``POST /_sandbox/hubspot/webhooks`` sets a target URL, every CRM change in any portal (a
record created, each changed property of an update, an archive; batch calls included) queues an
event shaped as HubSpot sends them::

    {"eventId", "subscriptionId", "portalId", "appId", "occurredAt" (epoch ms),
     "subscriptionType": "contact.creation" | "contact.propertyChange" | "contact.deletion" | ...,
     "attemptNumber", "objectId", "changeSource", "propertyName"?, "propertyValue"?}

A background task POSTs queued events as a JSON array (at most ``max_batch`` per request) shortly
after the change, signed as HubSpot signs requests to apps: ``X-HubSpot-Signature-v3`` is
``base64(HMAC-SHA256(client secret, method + uri + body + timestamp))`` with the timestamp in
``X-HubSpot-Request-Timestamp`` (``sign_v3``). A delivery that fails (a connection error, a timeout
or a non-2xx answer) is retried ``max_attempts - 1`` times with doubling backoff, its events'
``attemptNumber`` counting up; then its events count as failed. Delivery never blocks a CRM handler:
handlers only append to the queue.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx

Change = Literal["creation", "propertyChange", "deletion"]
# HubSpot's v3 signature asks for these characters of the URI decoded (developers.hubspot.com,
# "Validating requests", v3); the "?" that starts the query string is left as it is.
DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
SUBSCRIPTION_IDS: dict[str, int] = {
    f"{kind}.{change}": 2_100_000 + 10 * index + offset
    for index, kind in enumerate(("contact", "company", "deal"))
    for offset, change in enumerate(("creation", "propertyChange", "deletion"))
}
DELIVERY_TIMEOUT = 5.0  # seconds HubSpot waits for an answer
CONCURRENT_REQUESTS = 10  # HubSpot's default maxConcurrentRequests


def canonical_uri(uri: str) -> str:
    """The URI as the v3 signature covers it: the listed percent-escapes decoded."""
    out = uri
    for escaped, char in DECODED.items():
        out = out.replace(escaped, char).replace(escaped.lower(), char)
    return out


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    """``X-HubSpot-Signature-v3``: base64 of HMAC-SHA256, keyed with the app's client secret, of
    ``method + uri + body + timestamp`` (UTF-8; ``uri`` with the documented escapes decoded)."""
    message = (
        method.upper().encode()
        + canonical_uri(uri).encode()
        + body
        + str(int(timestamp_ms)).encode()
    )
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass
class WebhookSettings:
    target_url: str | None = None
    max_batch: int = 100
    max_attempts: int = 4  # the first try and three retries
    backoff_ms: int = 200  # before the first retry; doubles each time
    flush_ms: int = 50  # how long new events gather before a delivery

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_url": self.target_url,
            "max_batch": self.max_batch,
            "max_attempts": self.max_attempts,
            "backoff_ms": self.backoff_ms,
            "flush_ms": self.flush_ms,
        }


@dataclass
class WebhookStats:
    delivered: int = 0  # events whose delivery was answered 2xx
    failed: int = 0  # events given up on after the last attempt
    requests: int = 0  # POSTs made (retries included)
    retries: int = 0
    last_status: int | None = None
    last_error: str | None = None


class Webhooks:
    """The subscription, the event queue and the task that delivers it."""

    def __init__(self, app: Callable[[], tuple[str, int]]) -> None:
        self._app = app  # -> (client secret, app id), read when each event is queued or signed
        self.settings = WebhookSettings()
        self.stats = WebhookStats()
        self.queue: list[dict[str, Any]] = []
        self._next_event = 0
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None

    # --- control -----------------------------------------------------------------------------

    def configure(self, body: dict[str, Any]) -> None:
        """Subscribe (``target_url``) or unsubscribe (``target_url: null``) and tune delivery."""
        unknown = set(body) - {"target_url", "max_batch", "max_attempts", "backoff_ms", "flush_ms"}
        if unknown:
            raise ValueError(f"Unknown webhook setting(s): {sorted(unknown)}")
        settings = WebhookSettings(**self.settings.as_dict())
        if "target_url" in body:
            target = body["target_url"]
            if target is not None and (
                not isinstance(target, str) or not target.startswith(("http://", "https://"))
            ):
                raise ValueError("target_url must be an http(s) URL or null")
            settings.target_url = target
        for name, smallest, largest in (
            ("max_batch", 1, 100),
            ("max_attempts", 1, 10),
            ("backoff_ms", 0, 60_000),
            ("flush_ms", 0, 5_000),
        ):
            if name in body:
                value = body[name]
                if (
                    not isinstance(value, int)
                    or isinstance(value, bool)
                    or not smallest <= value <= largest
                ):
                    raise ValueError(f"{name} must be an integer from {smallest} to {largest}")
                setattr(settings, name, value)
        if settings.target_url is None:
            self.queue.clear()
        self.settings = settings

    def status(self) -> dict[str, Any]:
        stats = self.stats
        return self.settings.as_dict() | {
            "delivered": stats.delivered,
            "failed": stats.failed,
            "pending": len(self.queue),
            "in_flight": len(self._deliveries),
            "requests": stats.requests,
            "retries": stats.retries,
            "last_status": stats.last_status,
            "last_error": stats.last_error,
        }

    def reset(self) -> None:
        """Unsubscribe, forget queued events and counts, and stop every delivery."""
        for task in (self._worker, *self._deliveries):
            if task is not None:
                task.cancel()
        self._worker = None
        self._wake = None
        self._slots = None
        self._deliveries = set()
        self.queue = []
        self.settings = WebhookSettings()
        self.stats = WebhookStats()

    # --- events ------------------------------------------------------------------------------

    def emit(
        self,
        *,
        portal_id: int,
        object_type: str,
        change: Change,
        object_id: str,
        occurred_ms: int,
        property_name: str | None = None,
        property_value: str | None = None,
    ) -> None:
        """Queue one event (nothing when no target is set). Called from handlers: never waits."""
        if self.settings.target_url is None:
            return
        subscription = f"{object_type}.{change}"
        self._next_event += 1
        event: dict[str, Any] = {
            "eventId": 4_000_000_000 + self._next_event,
            "subscriptionId": SUBSCRIPTION_IDS.get(subscription, 2_100_999),
            "portalId": portal_id,
            "appId": self._app()[1],
            "occurredAt": occurred_ms,
            "subscriptionType": subscription,
            "attemptNumber": 0,
            "objectId": int(object_id),
            "changeSource": "CRM",
        }
        if change == "propertyChange":
            event["propertyName"] = property_name
            event["propertyValue"] = "" if property_value is None else property_value
        self.queue.append(event)
        self._kick()

    def _kick(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test calling handlers directly): nothing to start
            return
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(self._wake))
        self._wake.set()

    # --- delivery ----------------------------------------------------------------------------

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            await wake.wait()
            wake.clear()
            await asyncio.sleep(self.settings.flush_ms / 1000)  # let a burst of changes gather
            target = self.settings.target_url
            while self.queue and target is not None:
                batch = self.queue[: self.settings.max_batch]
                del self.queue[: len(batch)]
                task = asyncio.get_running_loop().create_task(self._deliver(target, batch))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT)
        return self._client

    async def _deliver(self, target: str, events: list[dict[str, Any]]) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(CONCURRENT_REQUESTS)
        slots = self._slots
        settings = self.settings
        delay = settings.backoff_ms / 1000
        for attempt in range(settings.max_attempts):
            for event in events:
                event["attemptNumber"] = attempt
            async with slots:
                ok = await self._post(target, events)
            if ok:
                self.stats.delivered += len(events)
                return
            if attempt + 1 < settings.max_attempts:
                self.stats.retries += 1
                await asyncio.sleep(delay)
                delay *= 2
        self.stats.failed += len(events)

    async def _post(self, target: str, events: list[dict[str, Any]]) -> bool:
        body = json.dumps(events, separators=(",", ":")).encode()
        timestamp = int(time.time() * 1000)
        secret = self._app()[0]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) - sandbox",
            "X-HubSpot-Signature-Version": "v3",
            "X-HubSpot-Request-Timestamp": str(timestamp),
            "X-HubSpot-Signature-v3": sign_v3(secret, "POST", target, body, timestamp),
            "X-HubSpot-Timeout-Millis": str(int(DELIVERY_TIMEOUT * 1000)),
        }
        self.stats.requests += 1
        try:
            answer = await self._http().post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.stats.last_status, self.stats.last_error = None, f"{type(exc).__name__}: {exc}"
            return False
        self.stats.last_status = answer.status_code
        ok = 200 <= answer.status_code < 300
        self.stats.last_error = None if ok else f"HTTP {answer.status_code}"
        return ok

    async def aclose(self) -> None:
        self.reset()
        if self._client is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self._client.aclose()
            self._client = None
