"""Liveness of what Switchboard depends on: the database, the broker and the cache.

Each check runs with a timeout, concurrently; a failure reports the exception's class name
only (messages can hold connection strings with passwords).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from pydantic import BaseModel, Field

from core.tasks import HEARTBEAT_KEY


class ComponentHealth(BaseModel):
    status: Literal["up", "down"]
    latency_ms: float
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "down"]
    components: dict[str, ComponentHealth]
    worker_heartbeat_at: datetime | None = Field(
        None, description="When a Celery worker last ran the beat heartbeat (informational)."
    )


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker_ping() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        if conn.transport_cls == "filesystem":
            # The embedded broker is a folder: up means the worker can read and write it.
            folder = (conn.transport_options or {}).get("data_folder_in", "")
            if not os.access(folder, os.R_OK | os.W_OK):
                raise FileNotFoundError("broker folder missing or not writable")
            return
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        conn.default_channel  # noqa: B018 - opening a channel talks to the broker (Redis PINGs)


async def _cache_ping() -> None:
    key = f"health:{uuid.uuid4().hex}"
    await cache.aset(key, "1", timeout=10)
    if await cache.aget(key) != "1":
        raise RuntimeError("cache lost a value it was just given")
    await cache.adelete(key)


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {
    "database": sync_to_async(_database_ping),
    "broker": sync_to_async(_broker_ping, thread_sensitive=False),
    "cache": _cache_ping,
}


async def _run(check: Callable[[], Awaitable[None]]) -> ComponentHealth:
    started = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(check(), timeout=settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        error = "timeout"
    except Exception as exc:  # any failure of a dependency is "down", never a 500
        error = type(exc).__name__
    latency = round((time.perf_counter() - started) * 1000, 2)
    return ComponentHealth(status="down" if error else "up", latency_ms=latency, error=error)


async def health_check() -> Health:
    names = list(CHECKS)
    results = await asyncio.gather(*(_run(CHECKS[name]) for name in names))
    components = dict(zip(names, results, strict=True))
    status: Literal["ok", "down"] = (
        "ok" if all(c.status == "up" for c in components.values()) else "down"
    )
    heartbeat: str | None = None
    if components["cache"].status == "up":
        heartbeat = await cache.aget(HEARTBEAT_KEY)
    return Health(
        status=status,
        components=components,
        worker_heartbeat_at=datetime.fromisoformat(heartbeat) if heartbeat else None,
    )
