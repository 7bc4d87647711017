"""The API's throttles over a live uvicorn server: per key, per client address, 429 envelopes
with a Retry-After that is worth waiting for.

The server trusts one proxy (TRUSTED_PROXY_COUNT=1) and uvicorn itself trusts none
(FORWARDED_ALLOW_IPS names an address that never connects), so the client address is the
X-Forwarded-For entry that proxy appended: this test plays the proxy, one address per test, so
counts left in Redis by another test (or run) never meet this one's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from accounts.models import Organization
from tests.conftest import LiveServer, new_key

pytestmark = pytest.mark.live

WINDOW = 5  # seconds
KEY_RATE = 3
IP_RATE = 8


@pytest.fixture
def asgi_env() -> dict[str, str]:
    return {
        "API_THROTTLE_AUTH_RATE": f"{KEY_RATE}/{WINDOW}s",
        "API_THROTTLE_IP_RATE": f"{IP_RATE}/{WINDOW}s",
        "TRUSTED_PROXY_COUNT": "1",
        "FORWARDED_ALLOW_IPS": "192.0.2.1",
    }


@pytest.fixture
def http(asgi_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{asgi_server.url}/api/v1", timeout=10) as client:
        yield client


def address() -> str:
    return f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"  # noqa: S311


def me(http: httpx.Client, key: str, client_address: str) -> httpx.Response:
    return http.get(
        "/me", headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": client_address}
    )


def refused(response: httpx.Response, scope: str | None) -> int:
    """The 429 envelope, from the throttle of ``scope`` ("address", or None: the key's);
    returns its Retry-After."""
    assert response.status_code == 429, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"].get("scope") == scope
    assert body["meta"]["request_id"] == response.headers["X-Request-ID"]
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW
    return retry_after


def test_a_throttled_key_leaves_its_neighbour_alone_until_the_address_is_spent(
    http: httpx.Client, org: Organization
) -> None:
    here = address()
    key_a, key_b, key_c = (new_key(org, name) for name in "abc")

    assert [me(http, key_a, here).status_code for _ in range(KEY_RATE)] == [200] * KEY_RATE
    refused(me(http, key_a, here), scope=None)  # key A is over its own rate...
    # ...and key B, from the same address, is not: its own rate, until the address's is spent
    # (A's refused request counted against the address too: 4 so far).
    assert [me(http, key_b, here).status_code for _ in range(KEY_RATE)] == [200] * KEY_RATE
    assert me(http, key_c, here).status_code == 200  # the 8th from this address
    refused(me(http, key_c, here), scope="address")
    # Another address is another count.
    assert me(http, key_c, address()).status_code == 200


def test_the_address_bounds_many_keys_and_retry_after_is_worth_waiting_for(
    http: httpx.Client, org: Organization
) -> None:
    here = address()
    keys = [new_key(org, f"key {n}") for n in range(IP_RATE + 2)]
    statuses = [me(http, key, here).status_code for key in keys]
    assert statuses == [200] * IP_RATE + [429, 429]
    # Keys that do not exist are refused by the address too, before any database lookup.
    retry_after = refused(me(http, "sbk_AAAAAAAA_guess", here), scope="address")
    refused(http.get("/health", headers={"X-Forwarded-For": here}), scope="address")

    time.sleep(retry_after)
    assert me(http, keys[-1], here).status_code == 200
