"""Profile one API page in-process: the ASGI application called directly (no server, no
network), so the profile shows only Switchboard's own work per request.

    python -m bench.profile_api PATH --key KEY [--requests 500] [--html out.html]

Needs the benchmark database of ``python -m bench.api`` (or any, given DATABASE_URL) and its key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any


async def call(app: Any, path: str, key: str, body: bytes = b"") -> int:
    raw_path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST" if body else "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            *([(b"content-type", b"application/json")] if body else []),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def run(path: str, key: str, requests: int, body: bytes = b"") -> float:
    import importlib

    application = importlib.import_module(os.environ.get("BENCH_ASGI", "config.asgi")).application

    for _ in range(20):
        await call(application, path, key, body)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        await call(application, path, key, body)
    print(f"{(time.process_time() - cpu) / requests * 1000:.3f} ms CPU per request")
    return (time.perf_counter() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--key", required=True)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--html")
    parser.add_argument("--body", default="", help="JSON body: POST instead of GET")
    parser.add_argument("--time-only", action="store_true", help="no profiler: just the time")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if args.time_only:
        per = asyncio.run(run(args.path, args.key, args.requests, args.body.encode()))
        print(f"{per * 1000:.3f} ms per request")
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    per = asyncio.run(run(args.path, args.key, args.requests, args.body.encode()))
    profiler.stop()
    print(f"{per * 1000:.2f} ms per request")
    if args.html:
        profiler.write_html(args.html)
    print(profiler.output_text(unicode=False, color=False, show_all=False))


if __name__ == "__main__":
    main()
