"""Structured logs: JSON lines in production, readable lines in development.

Every record carries the request id, organisation and user from ``core.context``; anything
passed as ``extra=`` is kept as a field. Never log a secret: pass ids, not tokens.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from core.context import organization_id_var, request_id_var, user_id_var

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "organization_id", "user_id"}
)


def install_context_record_factory() -> None:
    """Stamp every log record with the request id, organisation and user at creation.

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
        return record

    factory.switchboard_context = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


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
            entry["exception"] = self.formatException(record.exc_info)
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
            line += "\n" + self.formatException(record.exc_info)
        return line
