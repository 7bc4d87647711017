from __future__ import annotations

import logging

import orjson

from core.context import organization_id_var, request_id_var, user_id_var
from core.logging import ConsoleFormatter, JsonFormatter


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
