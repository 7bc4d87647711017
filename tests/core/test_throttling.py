"""The API's own throttles: per caller and per address, one shared count, failing open.
(tests/security/test_throttle_live.py drives them over a live uvicorn server.)"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest
from django.test import Client, RequestFactory, override_settings

from accounts.models import Organization
from config.api import api as ninja_api
from core import throttling
from core.throttling import AnonThrottle, CallerThrottle, address_key, client_ip, parse_rate
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok, new_key


def _throttle(kind: type[throttling._RateThrottle]) -> throttling._RateThrottle:
    assert isinstance(ninja_api.throttle, list)
    return next(t for t in ninja_api.throttle if isinstance(t, kind))


@pytest.fixture
def fresh_limiter() -> Iterator[None]:
    throttling._limiter.cache_clear()
    yield
    throttling._limiter.cache_clear()


def fresh_address(rate: str, scope: str) -> str:
    """An address of the test's own, its count emptied (counts live in Redis across tests)."""
    here = f"198.18.{random.randrange(256)}.{random.randrange(1, 255)}"  # noqa: S311
    throttling._limiter().clear(parse_rate(rate), scope, here)
    return here


@pytest.mark.parametrize(
    ("rate", "amount", "seconds"),
    [("6000/m", 6000, 60), ("10/s", 10, 1), ("100/5m", 100, 300), ("2/day", 2, 86400)],
)
def test_rates_parse(rate: str, amount: int, seconds: int) -> None:
    item = parse_rate(rate)
    assert (item.amount, item.get_expiry()) == (amount, seconds)


@pytest.mark.parametrize("rate", ["", "10", "x/m", "10/w", "10/m/s"])
def test_bad_rates_are_refused(rate: str) -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        parse_rate(rate)


def test_each_key_has_its_own_count(
    api: Api, org: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_throttle(CallerThrottle), "item", parse_rate("3/m"))
    for _ in range(3):
        assert_envelope_ok(api.get("/api/v1/me"))
    refused = api.get("/api/v1/me")
    assert_envelope_error(refused, 429, "rate_limited")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert_envelope_ok(Api(key=new_key(org, "second")).get("/api/v1/me"))


def test_unauthenticated_callers_are_counted_per_address(
    anon: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_throttle(AnonThrottle), "item", parse_rate("2/m"))
    here = fresh_address("2/m", AnonThrottle.scope)
    for _ in range(2):
        assert anon.client.get("/api/v1/health", REMOTE_ADDR=here).status_code in (200, 503)
    assert_envelope_error(anon.client.get("/api/v1/health", REMOTE_ADDR=here), 429, "rate_limited")
    elsewhere = anon.client.get("/api/v1/health", REMOTE_ADDR="198.51.100.8")
    assert elsewhere.status_code in (200, 503)


@pytest.mark.usefixtures("fresh_limiter")
def test_unreachable_storage_lets_requests_through(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_throttle(CallerThrottle), "item", parse_rate("1/m"))
    with (
        override_settings(API_THROTTLE_STORAGE="redis://127.0.0.1:1/0"),
        caplog.at_level(logging.WARNING, logger="switchboard.throttle"),
    ):
        for _ in range(3):
            assert_envelope_ok(api.get("/api/v1/me"))
    assert "throttle skipped: storage unavailable" in caplog.text


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, None, "192.0.2.10"),
        (0, "203.0.113.5", "192.0.2.10"),  # nobody said to trust the header
        (1, None, "192.0.2.10"),
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "198.51.100.66, 203.0.113.5", "203.0.113.5"),  # the left end is the caller's
        (2, "198.51.100.66, 203.0.113.5, 192.0.2.77", "203.0.113.5"),
        (3, "203.0.113.5", "203.0.113.5"),  # fewer entries than proxies: the first
        (1, "not-an-address", "192.0.2.10"),
        (1, " 2001:db8::1 ", "2001:db8::1"),
    ],
)
def test_the_client_address_trusts_only_the_configured_proxies(
    proxies: int, forwarded: str | None, expected: str
) -> None:
    request = RequestFactory().get("/api/v1/me", REMOTE_ADDR="192.0.2.10")
    if forwarded is not None:
        request.META["HTTP_X_FORWARDED_FOR"] = forwarded
    with override_settings(TRUSTED_PROXY_COUNT=proxies):
        assert client_ip(request) == expected


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.10", "192.0.2.10"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.10", "192.0.2.10"),
        ("unknown", "unknown"),
    ],
)
def test_ipv6_addresses_count_per_64(address: str, key: str) -> None:
    assert address_key(address) == key


IP_RATE = "4/m"


@pytest.fixture
def address() -> str:
    return fresh_address(IP_RATE, throttling.IpThrottle.scope)


def test_one_address_is_bounded_across_keys_valid_or_not(org: Organization, address: str) -> None:
    keys = [new_key(org, f"key {n}") for n in range(3)] + ["sbk_AAAAAAAA_guess"]
    with override_settings(API_THROTTLE_IP_RATE=IP_RATE):
        client = Client(REMOTE_ADDR=address)
        answers = [
            client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}) for key in keys
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 401]
        for key in keys:  # every key, even a fresh one, is now refused from here
            refused = client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
            body = assert_envelope_error(refused, 429, "rate_limited")
            assert body["error"]["details"] == {"scope": "address"}
            assert 1 <= int(refused["Retry-After"]) <= 60
        assert_envelope_error(client.get("/api/v1/health"), 429, "rate_limited")
        assert_envelope_error(client.get("/api/v1/no-such-route"), 429, "rate_limited")
        # Pages outside the API are not the API's to count.
        assert client.get("/accounts/login/").status_code == 200
        # Another address is untouched.
        elsewhere = Client(REMOTE_ADDR="198.19.0.1")
        key = keys[0]
        assert_envelope_ok(elsewhere.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}))


def test_a_forged_forwarded_for_does_not_make_a_new_address(
    org: Organization, address: str
) -> None:
    key = new_key(org)
    with override_settings(API_THROTTLE_IP_RATE=IP_RATE):
        client = Client(REMOTE_ADDR=address)
        statuses = [
            client.get(
                "/api/v1/me",
                headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": f"203.0.113.{n}"},
            ).status_code
            for n in range(6)
        ]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_anonymous_callers_cannot_forge_an_address_either(
    anon: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_throttle(AnonThrottle), "item", parse_rate("2/m"))
    here = fresh_address("2/m", AnonThrottle.scope)
    statuses = [
        anon.client.get(
            "/api/v1/health", REMOTE_ADDR=here, HTTP_X_FORWARDED_FOR=f"203.0.113.{n}"
        ).status_code
        for n in range(3)
    ]
    assert statuses[:2] in ([200, 200], [503, 503], [200, 503], [503, 200])
    assert statuses[2] == 429
