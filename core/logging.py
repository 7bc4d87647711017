"""Structured logs: JSON lines in production, readable lines in development.

Every record carries the request id, organisation and user from ``core.context``; anything
passed as ``extra=`` is kept as a field. Never log a secret: pass ids, not tokens.

As a second line of defence, every record's message and traceback are redacted where a secret
sits in a recognisable place (``redact``): a token in a URL path (HubSpot's
``/oauth/v1/access-tokens/{token}`` and ``/refresh-tokens/{token}``, which urllib3 logs at
DEBUG), an ``Authorization`` header, a token or secret field of a JSON or form body (the HubSpot
SDK logs answers at DEBUG), a credential in a query string, one of our API keys. Libraries log
those, not our code; a secret logged bare is not caught, and must not be logged at all.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from core.context import organization_id_var, request_id_var, user_id_var

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "organization_id", "user_id"}
)


REDACTED = "[redacted]"
# Words that must be in a text before the patterns below are tried (most lines have none).
_HINTS = ("token", "secret", "authorization", "bearer", "sbk_", "session", "code", "password")
_SECRET_PLACES = (
    # A token as a URL path segment: HubSpot's token-info and revoke endpoints.
    re.compile(r"(/(?:access|refresh)-tokens/)[^\s/?#\"'\\]+"),
    # An Authorization header (or its value after the scheme).
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{16,}"),
    # A field of a JSON body, a dict's repr, a form or a query string.
    re.compile(
        r"(?i)(\b(?:access_token|refresh_token|id_token|token|client_secret|api_key|"
        r"code_verifier|session_id|sessionid|password|secret|signature)"
        r"[\\\"']{0,3}\s*[:=]\s*[\\\"']{0,3})[^\s\"'&,;}\]\\]{8,}"
    ),
    # An OAuth callback's code, a connect-session link: in a query string or a form.
    re.compile(r"(?i)(\b(?:code|session)=)[^\s\"'&,;#]{8,}"),
    # One of our API keys: the prefix is an id, the rest is the secret.
    re.compile(r"(\bsbk_[A-Za-z0-9]{8}_)[A-Za-z0-9_-]+"),
)


def redact(text: str) -> str:
    """``text`` with every secret in a recognisable place (module docstring) replaced."""
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        return text
    for pattern in _SECRET_PLACES:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


_PLAIN = logging.Formatter()


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format: logging reports it when the record is emitted
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_PLAIN.formatException(record.exc_info))


def install_context_record_factory() -> None:
    """Stamp every log record with the request id, organisation and user at creation, and
    redact secrets a library put in its message or traceback (``redact``).

    A record factory (not a handler filter) so every handler sees them, test capture included.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "switchboard_context", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id_var.get()
        record.organization_id = organization_id_var.get()
        record.user_id = user_id_var.get()
        _redact_record(record)
        return record

    factory.switchboard_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _field(value: Any) -> Any:
    # Django's request loggers pass the request itself, whose repr carries the query string
    # (a connect-session link, an OAuth callback's code): method and path only.
    if hasattr(value, "get_full_path") and hasattr(value, "method"):
        return f"{value.method} {getattr(value, 'path', '')}"
    return value


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: _field(v) for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "organization_id": getattr(record, "organization_id", None),
            "user_id": getattr(record, "user_id", None),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = record.exc_text or redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        context = " ".join(
            f"{name}={value}"
            for name in ("request_id", "organization_id", "user_id")
            if (value := getattr(record, name, None))
        )
        fields = " ".join(f"{k}={v}" for k, v in _extra_fields(record).items())
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if context or fields:
            line += f"  [{' '.join(filter(None, (context, fields)))}]"
        if record.exc_info:
            line += "\n" + (record.exc_text or redact(self.formatException(record.exc_info)))
        return line
