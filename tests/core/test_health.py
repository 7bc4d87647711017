from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings

from config.celery import app as celery_app
from core.tasks import HEARTBEAT_KEY, heartbeat_task
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_health_needs_no_key_and_reports_each_component(anon: Api) -> None:
    data = assert_envelope_ok(anon.get("/api/v1/health"))
    assert data["status"] == "ok"
    assert set(data["components"]) == {"database", "broker", "cache"}
    for component in data["components"].values():
        assert component["status"] == "up"
        assert component["latency_ms"] >= 0


def test_broker_down_is_503_naming_it(anon: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(celery_app.conf, "broker_url", DEAD_REDIS)
    body = assert_envelope_error(anon.get("/api/v1/health"), 503, "service_unavailable")
    assert body["error"]["details"] == {"down": ["broker"]}
    broker = body["data"]["components"]["broker"]
    assert broker["status"] == "down"
    assert broker["error"]  # the exception class, never its message (may hold a password)
    assert "127.0.0.1:1" not in str(body)
    assert body["data"]["components"]["database"]["status"] == "up"


def test_cache_down_is_503(anon: Api) -> None:
    dead = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
        }
    }
    with override_settings(CACHES=dead):
        body = assert_envelope_error(anon.get("/api/v1/health"), 503, "service_unavailable")
    assert body["error"]["details"] == {"down": ["cache"]}


def test_worker_heartbeat_is_reported(anon: Api) -> None:
    cache.delete(HEARTBEAT_KEY)
    assert assert_envelope_ok(anon.get("/api/v1/health"))["worker_heartbeat_at"] is None
    stamp = heartbeat_task()  # the task body; the live worker test runs it through Celery
    data = assert_envelope_ok(anon.get("/api/v1/health"))
    assert data["worker_heartbeat_at"].replace("+00:00", "") == stamp.replace("+00:00", "")
