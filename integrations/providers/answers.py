"""What a provider call can end in besides an HTTP answer, and reading an answer's body.

Shared by every provider's transport; each provider keeps its own ``HttpFailure`` (the shape
of its error bodies differs).
"""

from __future__ import annotations

import json
from typing import Any


class NoAnswer(Exception):
    """No usable answer: timeout, connection refused or reset, TLS failure."""

    def __init__(self, *, timed_out: bool) -> None:
        self.timed_out = timed_out
        super().__init__("timed out" if timed_out else "no connection")


class Unreadable(Exception):
    """The provider answered 2xx with a body that does not have its documented shape."""

    def __init__(self, status: int | None) -> None:
        self.status = status
        super().__init__("unreadable answer")


def parse_body(raw: str | bytes | None) -> Any:
    """JSON when the body is JSON, the text otherwise, ``None`` when there is no body."""
    if not raw:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        return json.loads(text)
    except ValueError:
        return text
