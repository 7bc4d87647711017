from __future__ import annotations

import logging

import orjson
import pytest

from accounts.models import Organization
from core.context import organization_id_var, request_id_var, user_id_var
from core.logging import ConsoleFormatter, JsonFormatter
from tests.conftest import Api


def make_record(message: str, **extra: object) -> logging.LogRecord:
    tokens = (request_id_var.set("req-1"), organization_id_var.set("org-9"), user_id_var.set("7"))
    try:
        record = logging.getLogger("switchboard.test").makeRecord(
            "switchboard.test", logging.INFO, __file__, 1, message, (), None, extra=extra
        )
    finally:
        for var, token in zip(
            (request_id_var, organization_id_var, user_id_var), tokens, strict=True
        ):
            var.reset(token)
    return record


def test_json_lines_carry_request_organisation_user_and_extra_fields() -> None:
    line = JsonFormatter().format(make_record("key created", entity_id="abc"))
    entry = orjson.loads(line)
    assert entry["message"] == "key created"
    assert entry["request_id"] == "req-1"
    assert entry["organization_id"] == "org-9"
    assert entry["user_id"] == "7"
    assert entry["entity_id"] == "abc"
    assert entry["level"] == "info"


def test_console_lines_are_readable() -> None:
    line = ConsoleFormatter().format(make_record("hello", entity_id="abc"))
    assert "switchboard.test: hello" in line
    assert "request_id=req-1" in line
    assert "entity_id=abc" in line


def test_each_request_logs_one_line_with_caller_status_and_duration(
    api: Api, org: Organization, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="switchboard.request"):
        response = api.get("/api/v1/api-keys", {"limit": 5, "cursor": "secret-ish"})
    records = [r for r in caplog.records if r.name == "switchboard.request"]
    assert len(records) == 1
    record = records[0]
    assert record.getMessage() == "GET /api/v1/api-keys 422"
    assert record.status == 422  # type: ignore[attr-defined]
    assert record.duration_ms >= 0  # type: ignore[attr-defined]
    assert record.request_id == response["X-Request-ID"]  # type: ignore[attr-defined]
    assert record.organization_id == str(org.pk)  # type: ignore[attr-defined]
    assert "secret-ish" not in caplog.text
