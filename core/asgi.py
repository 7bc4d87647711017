"""The ASGI handler: API requests share a few long-lived database threads; request bodies are
bounded before Django reads them (``BodySizeLimit``, wrapped around it in config/asgi.py).

Django gives every ASGI request a thread of its own for the sync work its async views hand off
(``ThreadSensitiveContext``): the ORM's queries, the request signals. That is a thread started
and joined per request. API requests here run their thread-sensitive work on one of
``ASGI_DB_THREADS`` long-lived single-thread executors instead, taken in turn; each thread keeps
Django's per-thread connection handling, and the connection still goes back to the pool when
the request ends (``request_finished``), so requests that share a thread share nothing else.
Requests outside the API (the admin, the wizard: sync views) keep Django's thread per request,
so a slow page never queues behind, or in front of, an API call.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

import orjson
from asgiref.sync import ThreadSensitiveContext
from csp.utils import build_policy
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

from core.context import request_id_var
from core.envelope import error_payload
from core.errors import ErrorCode
from core.middleware import _CLIENT_REQUEST_ID

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

API_PREFIX = "/api/"
WEBHOOK_PREFIX = "/webhooks/"
_request_logger = logging.getLogger("switchboard.request")
# Set while a request runs on one of the pooled threads. Work that outlives the request (a
# task it started) must take a thread of its own: the request's thread context ends with it.
on_pooled_thread: ContextVar[bool] = ContextVar("on_pooled_thread", default=False)


class PooledThreadsASGIHandler(ASGIHandler):
    def __init__(self, threads: int) -> None:
        super().__init__()
        if threads < 1:
            raise ValueError("at least one database thread")
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"api-db-{n}")
            for n in range(threads)
        ]
        self._turns = itertools.cycle(self.executors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            token = on_pooled_thread.set(True)
            try:
                async with ThreadSensitiveContext(executor=next(self._turns)):
                    await self.handle(scope, receive, send)
            finally:
                on_pooled_thread.reset(token)
        else:
            await super().__call__(scope, receive, send)


class BodySizeLimit:
    """Request bodies bounded at the server's edge, before Django reads a byte of them.

    Django's ASGI handler spools the whole body to a file before the view runs, and
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is checked only when the view reads ``request.body``: a
    client could make every process write gigabytes first. Here a declared ``Content-Length``
    over the limit is refused before anything is read, and a body without one (chunked) is cut
    off as soon as it passes the limit: the client gets the 413 with ``Connection: close`` and
    Django gets ``http.disconnect`` (its handler then drops the request quietly).

    The limit is ``WEBHOOK_MAX_BODY_BYTES`` under ``/webhooks/`` and
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` elsewhere (``None``: none); the API and the webhooks answer
    the error envelope (``payload_too_large``, ``details.limit_bytes``), pages a plain 413.
    Other scopes (lifespan, websocket) pass through untouched.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit: int | None = (
            settings.WEBHOOK_MAX_BODY_BYTES
            if path.startswith(WEBHOOK_PREFIX)
            else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        )
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(scope, send, limit)
            return

        received = 0
        refused = started = False

        async def guarded_receive() -> Mapping[str, Any]:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not started:  # else the answer is on its way: only stop reading
                        await _refuse(scope, send, limit)
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Mapping[str, Any]) -> None:
            nonlocal started
            if refused and not started:
                return  # the application's answer to a request already refused
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, guarded_receive, guarded_send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None  # the server or Django refuses it


async def _refuse(scope: Scope, send: Send, limit: int) -> None:
    path: str = scope["path"]
    incoming = _header(scope, b"x-request-id") or ""
    request_id = incoming if _CLIENT_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    message = f"The request body is larger than {limit} bytes."
    if path.startswith((API_PREFIX, WEBHOOK_PREFIX)):
        token = request_id_var.set(request_id)
        try:
            payload = error_payload(ErrorCode.PAYLOAD_TOO_LARGE, message, {"limit_bytes": limit})
        finally:
            request_id_var.reset(token)
        body, content_type = orjson.dumps(payload), b"application/json"
    else:
        body, content_type = f"{message}\n".encode(), b"text/plain; charset=utf-8"
    policy = build_policy(config=settings.CONTENT_SECURITY_POLICY_NON_HTML["DIRECTIVES"])
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # what is left of the body is never read
        (b"x-request-id", request_id.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", policy.encode()),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    _request_logger.info(
        "%s %s 413",
        scope["method"],
        path,
        extra={"method": scope["method"], "path": path, "status": 413, "limit_bytes": limit},
    )
