"""A ``limits`` storage over the database, for installations without Redis.

``DatabaseStorage`` implements the library's async ``Storage`` (fixed-window counters) and
``MovingWindowSupport`` (the exact rolling window: one ``RateLimitHit`` row per counted call)
on the ``RateLimitKey``/``RateLimitHit`` models, plus the named numbers a budget keeps
(``data``). It is correct across processes: every change to a key runs in one transaction whose
first statement writes the key's row, so a second process waits for the first to commit. On
PostgreSQL that write is a row lock; on SQLite it takes the database's write lock (the embedded
default also opens every transaction IMMEDIATE), with the busy timeout as the wait.

The ORM is synchronous: the async methods run it in Django's thread-sensitive executor, as the
async ORM does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, IntegrityError, connection, transaction
from limits.aio.storage import MovingWindowSupport, Storage

from ..models import RateLimitHit, RateLimitKey

R = TypeVar("R")


@contextmanager
def locked(key: str) -> Iterator[RateLimitKey]:
    """The row of ``key`` (created on first use), locked until the block ends."""
    now = time.time()
    with transaction.atomic():
        # A write first: PostgreSQL locks the row, SQLite takes its write lock, before anything
        # is read (a read first would let two processes decide on the same state).
        if not RateLimitKey.objects.filter(key=key).update(locked_at=now):
            try:
                with transaction.atomic():
                    RateLimitKey.objects.create(key=key, locked_at=now)
            except IntegrityError:  # another process created it first: lock theirs
                RateLimitKey.objects.filter(key=key).update(locked_at=now)
        yield RateLimitKey.objects.get(key=key)


def _live(row: RateLimitKey, now: float) -> bool:
    return row.expires_at is None or row.expires_at > now


async def _run(fn: Callable[[], R]) -> R:
    return await sync_to_async(fn, thread_sensitive=True)()


class DatabaseStorage(Storage, MovingWindowSupport):
    """``limits`` storage on the Django database (scheme ``async+django://``)."""

    STORAGE_SCHEME = ["async+django"]

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, **options: float | str | bool
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return DatabaseError

    # --- counters (fixed windows) -------------------------------------------------------------

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        def run() -> int:
            now = time.time()
            with locked(key) as row:
                if not _live(row, now):
                    row.value, row.data, row.expires_at = 0, {}, None
                if row.expires_at is None:
                    row.expires_at = now + expiry
                row.value += amount
                row.save(update_fields=["value", "data", "expires_at"])
                return row.value

        return await _run(run)

    async def get(self, key: str) -> int:
        def run() -> int:
            row = RateLimitKey.objects.filter(key=key).first()
            return row.value if row is not None and _live(row, time.time()) else 0

        return await _run(run)

    async def get_expiry(self, key: str) -> float:
        def run() -> float:
            row = RateLimitKey.objects.filter(key=key).first()
            now = time.time()
            if row is None or row.expires_at is None or not _live(row, now):
                return now
            return row.expires_at

        return await _run(run)

    async def check(self) -> bool:
        def run() -> bool:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
            except DatabaseError:
                return False
            return True

        return await _run(run)

    async def reset(self) -> int | None:
        def run() -> int:
            deleted, _ = RateLimitKey.objects.all().delete()
            return deleted

        return await _run(run)

    async def clear(self, key: str) -> None:
        def run() -> None:
            RateLimitKey.objects.filter(key=key).delete()

        await _run(run)

    # --- the moving window ----------------------------------------------------------------------

    async def acquire_entry(
        self, key: str, limit: int, expiry: float, amount: int = 1, *, at: float | None = None
    ) -> bool:
        """Count ``amount`` calls stamped ``at`` (default now) if the ``expiry`` seconds before
        it (fractions allowed) hold at most ``limit - amount``. Rows older than two windows go
        (budgets read up to a little past one window)."""
        if amount > limit:
            return False

        def run() -> bool:
            with locked(key) as row:
                now = time.time() if at is None else at
                hits = RateLimitHit.objects.filter(key_id=key)
                hits.filter(at__lt=now - 2 * expiry).delete()
                if hits.filter(at__gte=now - expiry).count() + amount > limit:
                    return False
                RateLimitHit.objects.bulk_create(
                    [RateLimitHit(key_id=key, at=now) for _ in range(amount)]
                )
                row.expires_at = now + 2 * expiry
                row.save(update_fields=["expires_at"])
                return True

        return await _run(run)

    async def restamp(self, key: str, old: float, new: float) -> bool:
        """Move one call stamped ``old`` to ``new``; False when none has that stamp."""

        def run() -> bool:
            with locked(key):
                hit = RateLimitHit.objects.filter(key_id=key, at=old).order_by("id").first()
                if hit is None:
                    return False
                hit.at = new
                hit.save(update_fields=["at"])
                return True

        return await _run(run)

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """``(oldest counted call, calls counted)`` in the last ``expiry`` seconds (fractions
        allowed), among the newest ``limit``; ``(now, 0)`` when none."""

        def run() -> tuple[float, int]:
            now = time.time()
            newest = (
                RateLimitHit.objects.filter(key_id=key, at__gte=now - expiry)
                .order_by("-at", "-id")
                .values_list("at", flat=True)[:limit]
            )
            found = list(newest)
            return (found[-1], len(found)) if found else (now, 0)

        return await _run(run)

    # --- named numbers (a budget's state) -------------------------------------------------------

    async def read_fields(self, keys: list[str]) -> list[dict[str, float]]:
        def run() -> list[dict[str, float]]:
            now = time.time()
            rows = {r.key: r for r in RateLimitKey.objects.filter(key__in=keys)}
            found: list[dict[str, float]] = []
            for key in keys:
                row = rows.get(key)
                live = row is not None and _live(row, now)
                found.append(_numbers(row.data) if row is not None and live else {})
            return found

        return await _run(run)

    async def update_fields(
        self,
        key: str,
        *,
        ttl: float,
        put: Mapping[str, float] | None = None,
        maximum: Mapping[str, float] | None = None,
        add: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """Under the key's lock: set ``put``, raise fields to ``maximum``, add ``add``; the
        key lives ``ttl`` seconds from now (``add`` alone keeps an existing expiry)."""

        def run() -> dict[str, float]:
            now = time.time()
            with locked(key) as row:
                data = _numbers(row.data) if _live(row, now) else {}
                fresh = not _live(row, now) or row.expires_at is None or not row.data
                data.update(put or {})
                for name, value in (maximum or {}).items():
                    data[name] = max(data.get(name, value), value)
                for name, value in (add or {}).items():
                    data[name] = data.get(name, 0.0) + value
                if put or maximum or fresh:
                    row.expires_at = now + ttl
                row.data = data
                row.save(update_fields=["data", "expires_at"])
                return data

        return await _run(run)


def _numbers(raw: object) -> dict[str, float]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}
