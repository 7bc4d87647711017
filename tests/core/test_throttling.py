"""The API's own throttles: per caller and per address, one shared count, failing open."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.test import override_settings

from accounts.models import Organization
from config.api import api as ninja_api
from core import throttling
from core.throttling import AnonThrottle, CallerThrottle, parse_rate
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok, new_key


def _throttle(kind: type[throttling._RateThrottle]) -> throttling._RateThrottle:
    assert isinstance(ninja_api.throttle, list)
    return next(t for t in ninja_api.throttle if isinstance(t, kind))


@pytest.fixture
def fresh_limiter() -> Iterator[None]:
    throttling._limiter.cache_clear()
    yield
    throttling._limiter.cache_clear()


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
    here = "198.51.100.7"
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
