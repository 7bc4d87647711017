"""Looking for secrets in text: the secrets a test learnt, the forms they could leak in, and
everything a process logged.

``Secrets`` holds each secret under a label and derives its needles: the value itself, its
base64 (standard and URL-safe, at any of the three alignments, so it is found inside a longer
encoded blob such as a Basic auth header), its URL encodings, its HTML escape, and a long
prefix (a truncated token is still a leak). ``scan`` answers every (secret, form, source)
found, with the match shown as ``<label>``: a failing test never prints the secret.

``LogCapture`` records every log record of this process, formatted as the project's JSON and
console formatters would print it (extra fields and tracebacks included), while every logger
is held at DEBUG: libraries that set their own loggers' levels (the HubSpot SDK puts
``urllib3`` and ``hubspot.*`` at WARNING each time it builds a client) are overruled for the
test, so what they would log at DEBUG is seen.
"""

from __future__ import annotations

import base64
import html
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from core.logging import ConsoleFormatter, JsonFormatter

MIN_PREFIX = 16  # shorter prefixes of a secret are not distinctive enough to call a leak
SHORTEST_SECRET = 8  # refuse to look for values this short: they would match anything


@dataclass(frozen=True)
class Finding:
    label: str
    form: str
    source: str
    context: str

    def __str__(self) -> str:
        return f"{self.label} ({self.form}) in {self.source}: ...{self.context}..."


def _base64_forms(value: bytes) -> dict[str, str]:
    """The part of ``value``'s base64 that does not depend on what precedes or follows it,
    for each of the three alignments a value can have inside a longer encoded stream."""
    forms: dict[str, str] = {}
    for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
        for offset in range(3):
            encoded = encode(b"\0" * offset + value).decode().rstrip("=")
            # The first group mixes the padding bytes in (offset > 0); the last may be partial.
            stable = encoded[4 if offset else 0 : len(encoded) - 4]
            if len(stable) >= MIN_PREFIX:
                forms[f"{name}@{offset}"] = stable
    return forms


def needles_of(value: str, public: Iterable[str] = ()) -> dict[str, str]:
    """Each form of ``value`` worth looking for, by name. ``public``: values that may appear
    anywhere (client ids); no prefix of the secret that is also a prefix of one of them is
    used."""
    forms: dict[str, str] = {"raw": value}
    for name, encoded in (
        ("url", quote(value, safe="")),
        ("url+", quote_plus(value)),
        ("html", html.escape(value)),
        ("json", value.replace("\\", "\\\\").replace('"', '\\"').replace("/", "\\/")),
    ):
        if encoded != value:
            forms[name] = encoded
    forms |= _base64_forms(value.encode())
    if len(value) > MIN_PREFIX + 4:
        length = max(MIN_PREFIX, len(value) * 2 // 3)
        while length < len(value) - 1 and any(p.startswith(value[:length]) for p in public):
            length += 1
        if length < len(value) - 1:
            forms["prefix"] = value[:length]
    return forms


@dataclass
class Secrets:
    """Every secret the test learnt, by label (``access token #3``), and public values."""

    values: dict[str, str] = field(default_factory=dict)
    public: set[str] = field(default_factory=set)

    def add(self, label: str, value: str | None) -> None:
        if not value:
            return
        if len(value) < SHORTEST_SECRET:
            raise ValueError(f"{label} is too short to look for")
        if value not in self.values.values():
            self.values[f"{label} #{len(self.values) + 1}"] = value

    def kinds(self) -> Counter[str]:
        return Counter(label.rsplit(" #", 1)[0] for label in self.values)

    def needles(self, *, exclude: Iterable[str] = ()) -> Iterator[tuple[str, str, str]]:
        """(label, form, needle) for each secret not in ``exclude`` (values)."""
        skipped = set(exclude)
        for label, value in self.values.items():
            if value in skipped:
                continue
            for form, needle in needles_of(value, self.public).items():
                yield label, form, needle

    def scan(
        self, source: str, text: str, *, exclude: Iterable[str] = (), each: int = 3
    ) -> list[Finding]:
        """Up to ``each`` places per secret where one of its forms is in ``text`` (the first
        form found there: a raw value is not reported again as its own prefix)."""
        found: list[Finding] = []
        for label, value in self.values.items():
            if value in set(exclude):
                continue
            places: set[int] = set()
            for form, needle in needles_of(value, self.public).items():
                at = text.find(needle)
                while at >= 0 and len(places) < each:
                    if not any(abs(at - p) < len(value) for p in places):
                        places.add(at)
                        context = text[max(0, at - 100) : at + len(value) + 40]
                        for masked in (value, needle):
                            context = context.replace(masked, f"<{label}>")
                        found.append(Finding(label, form, source, context.replace("\n", " ")))
                    at = text.find(needle, at + 1)
        return found


class _Unpaused(logging.Filter):
    def __init__(self, local: threading.local) -> None:
        super().__init__()
        self.local = local

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "paused", False)


class LogCapture(logging.Handler):
    """Every record of this process, formatted (see the module docstring). Records logged
    while ``paused()`` in the pausing thread are left out: the test's own HTTP client talking
    to other processes logs their URLs, and those lines are the test's, not Switchboard's."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.by_logger: Counter[str] = Counter()
        self.by_level: Counter[str] = Counter()
        self._local = threading.local()
        self._unpaused = _Unpaused(self._local)
        self.addFilter(self._unpaused)
        self._json = JsonFormatter()
        self._console = ConsoleFormatter()
        self._saved: dict[str, tuple[int, bool, bool]] = {}
        self._handler_levels: dict[logging.Handler, int] = {}
        self._original_set_level = logging.Logger.setLevel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self._json.format(record) + "\n" + self._console.format(record)
        except Exception:  # a record that cannot be formatted is still scanned raw
            text = f"{record.msg!r} {record.args!r}"
        self.lines.append(text)
        self.by_logger[record.name] += 1
        self.by_level[record.levelname] += 1

    @contextmanager
    def paused(self) -> Iterator[None]:
        self._local.paused = True
        try:
            yield
        finally:
            self._local.paused = False

    def text(self) -> str:
        return "\n".join(self.lines)

    def _loggers(self) -> list[logging.Logger]:
        found = [logging.getLogger()]
        for candidate in list(logging.root.manager.loggerDict.values()):
            if isinstance(candidate, logging.Logger):
                found.append(candidate)
        return found

    def start(self) -> None:
        """Hold every logger, present and future, at DEBUG, enabled, and feed this handler."""
        for logger in self._loggers():
            self._saved[logger.name] = (logger.level, logger.disabled, logger.propagate)
        original = self._original_set_level

        def pinned(logger: logging.Logger, level: int | str) -> None:
            original(logger, logging.DEBUG)

        logging.Logger.setLevel = pinned  # type: ignore[method-assign,assignment]
        for logger in self._loggers():
            logger.disabled = False
            logger.setLevel(logging.DEBUG)
            for handler in logger.handlers:
                # The other handlers (the process's stderr, pytest's report) keep their own
                # threshold: the DEBUG flood is this handler's alone, formatted once.
                self._handler_levels[handler] = handler.level
                handler.setLevel(max(handler.level, logging.INFO))
                handler.addFilter(self._unpaused)  # the test's own lines stay out there too
            if not logger.propagate or logger is logging.getLogger():
                logger.addHandler(self)

    def stop(self) -> None:
        if not self._saved:
            return  # never started, or stopped already
        logging.Logger.setLevel = self._original_set_level  # type: ignore[method-assign]
        for handler, level in self._handler_levels.items():
            handler.removeFilter(self._unpaused)
            handler.setLevel(level)
        self._handler_levels.clear()
        for logger in self._loggers():
            if self in logger.handlers:
                logger.removeHandler(self)
            level, disabled, _ = self._saved.get(logger.name, (logging.NOTSET, False, True))
            logger.setLevel(level)
            logger.disabled = disabled
        self._saved.clear()
