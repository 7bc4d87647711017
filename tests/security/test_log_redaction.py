"""The second line of defence in core.logging: secrets a library puts in a recognisable place
of a log line are redacted in every record, and a request logged by Django shows its method and
path, never its query string."""

from __future__ import annotations

import logging
import sys
from types import TracebackType

import orjson
import pytest
from django.test import RequestFactory

from core.logging import REDACTED, ConsoleFormatter, JsonFormatter, redact

TOKEN = "CJSP5qf1LhICAQEYs-gDIIGOBii1"  # token-shaped, not a secret


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        # urllib3 at DEBUG, HubSpot's token-info and revoke endpoints (the token is the path).
        (f'http://h:1 "GET /oauth/v1/access-tokens/{TOKEN} HTTP/1.1" 200 0', "/access-tokens/"),
        (f'http://h:1 "DELETE /oauth/v1/refresh-tokens/{TOKEN} HTTP/1.1" 204 0', "204"),
        # The HubSpot SDK at DEBUG: the token-info answer.
        (f'response body: b\'{{"token":"{TOKEN}","user":"a@b.c"}}\'', '"user"'),
        (f"{{'access_token': '{TOKEN}', 'refresh_token': '{TOKEN}'}}", "refresh_token"),
        (f"grant_type=refresh_token&refresh_token={TOKEN}&client_secret={TOKEN}", "grant_type"),
        (f"Authorization: Bearer {TOKEN}", "Authorization: Bearer"),
        (f"GET /connect/?session={TOKEN}", "/connect/"),
        (f"callback?code={TOKEN}&state=abc", "state=abc"),
        (f"key sbk_AbCdEfGh_{TOKEN}", "sbk_AbCdEfGh_"),
    ],
)
def test_secrets_in_recognisable_places_are_redacted(line: str, kept: str) -> None:
    cleaned = redact(line)
    assert TOKEN not in cleaned
    assert REDACTED in cleaned
    assert kept in cleaned


@pytest.mark.parametrize(
    "line",
    [
        "outbox: write 3 failed (error_code=provider_unavailable)",
        "GET /api/v1/connections/5/contacts 200",
        "basic information about the sync",
        "refreshed tokens of hubspot connection 7",
        "tokens_in=120 tokens_out=40",
        "refresh failed, error code: provider_unavailable",
        "session: expired",
    ],
)
def test_ordinary_lines_are_untouched(line: str) -> None:
    assert redact(line) == line


def test_every_record_is_redacted_for_every_handler(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        logging.getLogger("urllib3.connectionpool").debug(
            '%s://%s:%s "%s %s %s" %s %s',
            "https",
            "api.hubapi.com",
            443,
            "GET",
            f"/oauth/v1/access-tokens/{TOKEN}",
            "HTTP/1.1",
            200,
            0,
        )
    assert TOKEN not in caplog.text
    assert "/oauth/v1/access-tokens/[redacted]" in caplog.text


def test_a_traceback_is_redacted() -> None:
    logger = logging.getLogger("switchboard.test")
    try:
        raise ConnectionError(f"Max retries exceeded with url: /oauth/v1/access-tokens/{TOKEN}")
    except ConnectionError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", (), exc_info=_exc_info()
        )
    for formatter in (JsonFormatter(), ConsoleFormatter()):
        text = formatter.format(record)
        assert "ConnectionError" in text
        assert TOKEN not in text


def _exc_info() -> tuple[type[BaseException], BaseException, TracebackType | None]:
    kind, value, traceback = sys.exc_info()
    assert kind is not None
    assert value is not None
    return kind, value, traceback


def test_a_request_is_logged_without_its_query_string() -> None:
    request = RequestFactory().get("/connect/", {"session": TOKEN})
    logger = logging.getLogger("django.request")
    record = logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        1,
        "Internal Server Error: %s",
        ("/connect/",),
        None,
        extra={"status_code": 500, "request": request},
    )
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["request"] == "GET /connect/"
    assert TOKEN not in ConsoleFormatter().format(record)
