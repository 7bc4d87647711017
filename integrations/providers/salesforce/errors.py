"""Salesforce failures in Switchboard's error vocabulary.

Two kinds of failure reach this module: an answer outside 2xx (``HttpFailure``: status,
parsed body, headers), from simple-salesforce's ``SalesforceError`` family or the raw session,
and no usable answer at all (``NoAnswer``: timeout, refused connection, TLS failure). REST
error bodies are lists of ``{"message", "errorCode", "fields"}``. Messages and details carry
Salesforce's own words and codes, never tokens, URLs or headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError

from core.errors import (
    AppError,
    Conflict,
    NotFound,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    ValidationFailed,
)

from ..answers import NoAnswer, Unreadable
from ..batching import item_error
from ..unified import BatchItemError
from .wire import ErrorItem

# errorCode/statusCode values that mean "the request's values or fields are wrong".
VALIDATION_CODES: Final = frozenset(
    {
        "REQUIRED_FIELD_MISSING",
        "INVALID_FIELD",
        "MALFORMED_QUERY",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "JSON_PARSER_ERROR",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "INVALID_QUERY_FILTER_OPERATOR",
        "INVALID_EMAIL_ADDRESS",
        "STRING_TOO_LONG",
        "NUMBER_OUTSIDE_VALID_RANGE",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "FIELD_INTEGRITY_EXCEPTION",
        "INVALID_CROSS_REFERENCE_KEY",
        "MALFORMED_ID",
        "INVALID_ID_FIELD",
        "INVALID_TYPE",
    }
)
NOT_FOUND_CODES: Final = frozenset({"NOT_FOUND", "ENTITY_IS_DELETED"})
CONFLICT_CODES: Final = frozenset({"DUPLICATE_VALUE", "DUPLICATES_DETECTED"})
RATE_LIMIT_CODES: Final = frozenset({"REQUEST_LIMIT_EXCEEDED"})

# The org's API allocation is counted over a rolling 24 hours, so capacity comes back bit by
# bit as old calls age out; Salesforce sends no Retry-After. Try again in a quarter hour. The
# same code also refuses calls past the concurrent long-running request limit, which clears
# as soon as running requests finish.
DEFAULT_RETRY_AFTER_SECONDS: Final = 900.0
CONCURRENT_RETRY_AFTER_SECONDS: Final = 30.0

# Field names inside Salesforce's messages, for answers whose ``fields`` list is empty.
_FIELD_PATTERNS: Final = (
    re.compile(r"No such column '(\w+)'"),
    re.compile(r"Required fields are missing: \[([\w, ]+)\]"),
    re.compile(r"Unable to create/update fields: ([\w, ]+)"),
    re.compile(r"^(\w+): (?:value not of required type|invalid)"),
    re.compile(r"(?:field|column) '(\w+)'"),
    re.compile(r"deserialization: (\w+)"),
)
_JSON_POSITION: Final = re.compile(r"column:\s*(\d+)")
_JSON_VALUE: Final = re.compile(r" value (.*?) or request may be missing")


class HttpFailure(Exception):
    """Salesforce answered outside 2xx."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        super().__init__(f"Salesforce answered {status}")


def error_items(body: Any) -> list[ErrorItem]:
    """Salesforce's error list (REST answers are a JSON list; OAuth endpoints answer an
    ``{"error", "error_description"}`` object)."""
    entries = body if isinstance(body, list) else [body]
    items = []
    for entry in entries:
        if isinstance(entry, dict):
            if "error" in entry and "errorCode" not in entry:
                entry = {"errorCode": entry.get("error"), "message": entry.get("error_description")}
            try:
                items.append(ErrorItem.model_validate(entry))
                continue
            except ValidationError:
                pass
        if isinstance(entry, str) and entry:
            items.append(ErrorItem(message=entry[:300]))
    return items


def sent_field_at(sent: Mapping[str, Any] | None, message: str) -> str | None:
    """The field of ``sent`` (the JSON object a write sent) a JSON_PARSER_ERROR is about: the
    one at the message's column, else the one holding the value the message quotes."""
    if not sent:
        return None
    found = _JSON_POSITION.search(message)
    column = int(found.group(1)) if found else 0
    text, owner = "{", None
    for key, value in sent.items():
        if len(text) >= column:
            break
        owner = key
        text += json.dumps(key) + ": " + json.dumps(value, default=str) + ", "
    quoted = _JSON_VALUE.search(message)
    if quoted is None:
        return owner if column > 1 else None
    holding = [k for k, v in sent.items() if _json_text(v) == quoted.group(1)]
    if column > 1 and owner in holding:
        return owner
    return holding[0] if len(holding) == 1 else (owner if column > 1 else None)


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_errors(items: list[ErrorItem], sent: Mapping[str, Any] | None = None) -> dict[str, str]:
    """``{field: message}`` from the ``fields`` lists, else from the messages."""
    fields: dict[str, str] = {}
    for item in items:
        message = item.message or item.code or "invalid"
        names = list(item.fields)
        if not names:
            for pattern in _FIELD_PATTERNS:
                if found := pattern.search(item.message):
                    names = [n.strip() for n in found.group(1).split(",") if n.strip()]
                    break
        if not names and item.code == "JSON_PARSER_ERROR":
            names = [n for n in [sent_field_at(sent, item.message)] if n]
        if not names and item.code == "MALFORMED_QUERY":
            names = ["query"]
        for name in names:
            fields.setdefault(name, message)
    return fields


def _details(status: int | None, items: list[ErrorItem], **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"provider": "salesforce", "status": status}
    codes = [i.code for i in items if i.code]
    if codes:
        details["error_code"] = codes[0]
    return details | {k: v for k, v in extra.items() if v is not None}


def error_for_items(
    status: int | None,
    items: list[ErrorItem],
    *,
    subject: str | None = None,
    sent: Mapping[str, Any] | None = None,
) -> AppError:
    """The ``AppError`` for Salesforce error entries (a REST answer or a SaveResult's)."""
    codes = {i.code for i in items}
    said = "; ".join(i.message.strip() for i in items if i.message.strip())[:500]
    if codes & RATE_LIMIT_CODES or status == 429:
        concurrent = "concurrent" in said.lower()
        wait = CONCURRENT_RETRY_AFTER_SECONDS if concurrent else DEFAULT_RETRY_AFTER_SECONDS
        what = "too many long-running requests" if concurrent else "daily API allocation is used up"
        return ProviderRateLimited(
            f"Salesforce refused the call: the org's {what}; retry in {wait:g} s.",
            retry_after=wait,
            details=_details(status, items, retry_after=wait),
        )
    if status == 401 or "INVALID_SESSION_ID" in codes:
        return ProviderAuthError(
            "Salesforce rejected the connection's access token, also after a refresh.",
            details=_details(status, items),
        )
    if status == 404 or codes & NOT_FOUND_CODES:
        where = f"{subject} was not found" if subject else "Not found"
        return NotFound(f"{where} in Salesforce.", details=_details(status, items))
    if codes & CONFLICT_CODES:
        return Conflict(f"Salesforce: {said or 'duplicate'}", details=_details(status, items))
    if status is not None and status >= 500:
        return ProviderUnavailable(
            f"Salesforce is unavailable (HTTP {status}).", details=_details(status, items)
        )
    if codes & VALIDATION_CODES:
        fields = field_errors(items, sent)
        named = ", ".join(sorted(fields))
        return ValidationFailed(
            f"Salesforce rejected: {named}. {said}" if named else f"Salesforce: {said}",
            details=_details(status, items, fields=fields),
        )
    return ProviderError(
        f"Salesforce answered {status or 'an error'}: {said or 'error'}",
        details=_details(status, items),
    )


def error_for_answer(
    failure: HttpFailure, *, subject: str | None = None, sent: Mapping[str, Any] | None = None
) -> AppError:
    return error_for_items(failure.status, error_items(failure.body), subject=subject, sent=sent)


def error_for_no_answer(failure: NoAnswer) -> ProviderUnavailable:
    what = "did not answer in time" if failure.timed_out else "could not be reached"
    return ProviderUnavailable(
        f"Salesforce {what}.", details={"provider": "salesforce", "timed_out": failure.timed_out}
    )


def error_for_unreadable(failure: Unreadable) -> ProviderError:
    return ProviderError(
        "Salesforce answered with a body Switchboard could not read.",
        details={"provider": "salesforce", "status": failure.status},
    )


def save_result_error(
    index: int, errors: list[ErrorItem], sent: Mapping[str, Any] | None = None
) -> BatchItemError:
    """A failed SaveResult (``success: false``) as the caller's batch error at ``index``."""
    return item_error(index, error_for_items(None, errors, sent=sent))
