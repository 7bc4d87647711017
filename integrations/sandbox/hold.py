"""Holding a request open: what injected timeouts do while the client waits."""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request


async def until_client_gives_up(request: Request, seconds: float) -> None:
    """Return when the client disconnects or ``seconds`` pass, whichever comes first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)
