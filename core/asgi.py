"""The ASGI handler: API requests share a few long-lived database threads.

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
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]

API_PREFIX = "/api/"
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
