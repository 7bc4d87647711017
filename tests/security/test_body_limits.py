"""Request bodies bounded at the server's edge (core.asgi.BodySizeLimit), over a live uvicorn
server: a declared Content-Length over the limit is refused before a byte is read, a chunked
body is cut off as it passes the limit, and neither costs the server the body's size."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from accounts.models import ApiKey, Organization
from core.asgi import BodySizeLimit
from tests.conftest import LiveServer, new_key

LIMIT = 64 * 1024
WEBHOOK_LIMIT = 16 * 1024
CHUNK = b"x" * 65536
HUGE = 50 * 1024 * 1024


@pytest.fixture
def asgi_env() -> dict[str, str]:
    return {"DATA_UPLOAD_MAX_MEMORY_SIZE": str(LIMIT), "WEBHOOK_MAX_BODY_BYTES": str(WEBHOOK_LIMIT)}


@pytest.fixture
def http(asgi_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=asgi_server.url, timeout=30) as client:
        yield client


class Stream:
    """A chunked request body of ``total`` bytes that counts what the client got to send."""

    def __init__(self, total: int, first: bytes = b"") -> None:
        self.total, self.first, self.sent = total, first, 0

    def __iter__(self) -> Iterator[bytes]:
        if self.first:
            self.sent += len(self.first)
            yield self.first
        while self.sent < self.total:
            self.sent += len(CHUNK)
            yield CHUNK


def assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.headers["Connection"] == "close"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["details"] == {"limit_bytes": limit}
    assert body["meta"]["request_id"] == response.headers["X-Request-ID"]


def server_rss_kib(asgi_server: LiveServer) -> int:
    """The uvicorn process's resident memory (found by its port; the fixture keeps no pid)."""
    port = asgi_server.url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"config.asgi:application" in cmdline and port.encode() in cmdline:
            status = (proc / "status").read_text()
            return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS")).split()[1])
    raise AssertionError("the uvicorn process was not found")


@pytest.mark.live
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    asgi_server: LiveServer, org: Organization
) -> None:
    """Only the headers go out: the answer comes without a byte of the promised body."""
    host, port = asgi_server.url.removeprefix("http://").split(":")
    head = (
        f"POST /api/v1/api-keys HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {new_key(org)}\r\nContent-Type: application/json\r\n"
        f"X-Request-ID: edge-test-1\r\nContent-Length: {HUGE}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after answering
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"x-request-id: edge-test-1" in headers.lower()
    payload = orjson.loads(body)
    assert payload["error"]["code"] == "payload_too_large"
    assert payload["error"]["details"] == {"limit_bytes": LIMIT}
    assert payload["meta"]["request_id"] == "edge-test-1"
    assert ApiKey.objects.count() == 1


@pytest.mark.live
def test_api_bodies_over_the_limit_get_the_envelope_with_or_without_a_length(
    http: httpx.Client, org: Organization
) -> None:
    auth = {"Authorization": f"Bearer {new_key(org)}", "Content-Type": "application/json"}
    too_big = b'{"name": "' + b"x" * LIMIT + b'"}'
    assert_too_large(http.post("/api/v1/api-keys", content=too_big, headers=auth), LIMIT)
    stream = Stream(LIMIT + 1, first=b'{"name": "')
    assert_too_large(http.post("/api/v1/api-keys", content=stream, headers=auth), LIMIT)
    assert ApiKey.objects.count() == 1
    # Within the limit, a chunked body arrives whole.
    small = [b'{"name": ', b'"chunked', b' key"}']
    created = http.post("/api/v1/api-keys", content=iter(small), headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["data"]["name"] == "chunked key"
    exactly = b'{"name": "' + b"y" * (LIMIT - 12) + b'"}'
    assert len(exactly) == LIMIT
    at_limit = http.post("/api/v1/api-keys", content=exactly, headers=auth)
    assert at_limit.status_code == 422, at_limit.text[:200]  # read and judged: name too long


@pytest.mark.live
def test_a_50_mb_chunked_body_is_cut_off_quickly_and_never_held(
    asgi_server: LiveServer, http: httpx.Client, org: Organization
) -> None:
    auth = {"Authorization": f"Bearer {new_key(org)}", "Content-Type": "application/json"}
    http.get("/api/v1/health")  # the server warmed up before its memory is read
    before = server_rss_kib(asgi_server)
    stream = Stream(HUGE, first=b'{"name": "')
    started = time.monotonic()
    response = http.post("/api/v1/api-keys", content=stream, headers=auth)
    elapsed = time.monotonic() - started
    assert_too_large(response, LIMIT)
    assert elapsed < 5, elapsed
    # The client was stopped long before the end (socket buffers hold a few megabytes).
    assert stream.sent < HUGE // 4, stream.sent
    assert server_rss_kib(asgi_server) - before < 16 * 1024
    assert http.get("/api/v1/health").status_code in (200, 503)  # the server is fine


@pytest.mark.live
def test_webhooks_have_their_own_limit_and_pages_a_plain_413(http: httpx.Client) -> None:
    body = b"[" + b" " * WEBHOOK_LIMIT + b"]"
    assert len(body) < LIMIT  # under the general limit, over the webhooks' one
    assert_too_large(http.post("/webhooks/hubspot", content=body), WEBHOOK_LIMIT)
    assert_too_large(
        http.post("/webhooks/hubspot", content=Stream(WEBHOOK_LIMIT + 1)), WEBHOOK_LIMIT
    )
    for content in (b"x" * (LIMIT + 1), Stream(LIMIT + 1)):
        response = http.post("/accounts/login/", content=content)
        assert response.status_code == 413
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.text == f"The request body is larger than {LIMIT} bytes.\n"


class Recorder:
    """An ASGI application that keeps what it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Any, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls.append((scope, receive, send))


@pytest.mark.parametrize("kind", ["lifespan", "websocket"])
def test_other_scopes_pass_through_untouched(kind: str) -> None:
    inner = Recorder()

    async def receive() -> Mapping[str, Any]:
        return {"type": f"{kind}.startup" if kind == "lifespan" else "websocket.connect"}

    async def send(message: Mapping[str, Any]) -> None:
        return None

    scope = {"type": kind, "path": "/api/v1/anything", "headers": [(b"content-length", b"9" * 12)]}
    asyncio.run(BodySizeLimit(inner)(scope, receive, send))
    assert inner.calls == [(scope, receive, send)]
