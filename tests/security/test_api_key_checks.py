"""API keys are found by their public prefix and checked in constant time: the secret never
reaches a query (no index lookup on it, whose timing would tell how much of it matched), and
every presented key of a known prefix, right or wrong, short or long, is compared with
``hmac.compare_digest`` on two SHA-256 digests of the same length."""

from __future__ import annotations

import hmac
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import accounts.keys
from accounts.keys import hash_key, prefix_of
from accounts.models import Organization
from tests.conftest import Api, new_key


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every pair ``accounts.keys`` hands to ``hmac.compare_digest`` (the real one answers)."""
    calls: list[tuple[str, str]] = []

    def compare_digest(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return hmac.compare_digest(a, b)

    spy = SimpleNamespace(compare_digest=compare_digest)
    monkeypatch.setattr(accounts.keys, "hmac", spy)
    return calls


def variants(key: str) -> dict[str, str]:
    prefix, secret = key[: len(prefix_of(key) or "")], key[len(prefix_of(key) or "") + 1 :]
    last = "A" if secret[-1] != "A" else "B"
    return {
        "right": key,
        "last character wrong": f"{prefix}_{secret[:-1]}{last}",
        "first character wrong": f"{prefix}_{'A' if secret[0] != 'A' else 'B'}{secret[1:]}",
        "short": f"{prefix}_x",
        "long": f"{prefix}_{secret}{secret}",
    }


def test_every_key_with_a_known_prefix_is_compared_in_constant_time(
    org: Organization, compared: list[tuple[str, str]]
) -> None:
    key = new_key(org)
    for name, presented in variants(key).items():
        compared.clear()
        status = Api(key=presented).get("/api/v1/me").status_code
        assert status == (200 if name == "right" else 401), name
        assert len(compared) == 1, f"{name}: compared {len(compared)} times"
        given, stored = compared[0]
        assert given == hash_key(presented), name
        assert stored == hash_key(key), name
        assert len(given) == len(stored) == 64, name


def test_the_secret_never_reaches_a_query(org: Organization) -> None:
    key = new_key(org)
    for presented in variants(key).values():
        secret = presented.split("_", 2)[2]
        with CaptureQueriesContext(connection) as queries:
            Api(key=presented).get("/api/v1/me")
        sql = "\n".join(q["sql"] for q in queries.captured_queries)
        assert str(prefix_of(key)) in sql  # found by its prefix
        assert len(secret) < 8 or secret not in sql
        assert hash_key(presented) not in sql
        assert hash_key(key) not in sql
