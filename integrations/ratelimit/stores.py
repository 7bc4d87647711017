"""Where budgets live: Redis when configured, the database otherwise (``RATE_LIMIT_STORAGE``).

A ``BudgetStore`` offers the two things a budget needs, on storage every process shares:

- moving windows, in the ``limits`` library's moving-window format (a list of call stamps on
  its ``RedisStorage``, rows on ``DatabaseStorage``), counted at a stamp the caller may give and
  moved later (``restamp``: a budget moves a call to when its answer came);
- a few named numbers per key (blocked-until, learned limits, daily usage), updated
  atomically: a Redis hash with two small scripts, or a locked database row.

Redis clients belong to the event loop that made them, so there is one store per running loop
(``current_store``); sync callers that get a fresh loop per ``async_to_sync`` call get a fresh
store, which is dropped with its loop.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, cast

import redis.asyncio as aioredis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from limits import RateLimitItemPerSecond
from limits.aio.storage import MovingWindowSupport, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.limits import safe_string
from limits.util import WindowStats

from .database import DatabaseStorage

StorageName = Literal["redis", "database"]


class WindowItem(RateLimitItemPerSecond):
    """A ``limits`` item whose storage key names the window, not its size, so a limit learned
    from the provider keeps counting the same calls."""

    def key_for(self, *identifiers: bytes | str | int | float) -> str:
        return "/".join([self.namespace, *(safe_string(i) for i in identifiers)])


def whole_seconds(seconds: float) -> int:
    """``limits`` counts windows in whole seconds; never shorter than asked."""
    return max(1, math.ceil(seconds))


class BudgetStore(ABC):
    name: ClassVar[StorageName]

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)

    def _windows(self) -> MovingWindowSupport:
        return cast(MovingWindowSupport, self.storage)

    @abstractmethod
    async def hit(
        self, key: str, limit: int, seconds: float, amount: int = 1, *, at: float | None = None
    ) -> bool:
        """Count ``amount`` calls stamped ``at`` (default now) in window ``key`` if it holds at
        most ``limit - amount`` in the ``seconds`` before (fractions allowed; atomic, as the
        library's moving window does it)."""

    @abstractmethod
    async def restamp(self, key: str, old: float, new: float, seconds: float) -> bool:
        """Move one call of window ``key`` stamped ``old`` to ``new`` (the window keeps its
        order); False when no call has that stamp any more. ``seconds``: the window's length."""

    async def count(self, key: str, limit: int, seconds: float) -> tuple[float, int]:
        """``(oldest, calls)`` counted in window ``key`` in the last ``seconds`` (fractions
        allowed: a budget looks a little past the window), among the newest ``limit``."""
        item = WindowItem(limit, 1, namespace="w")
        # Both storages compute ``now - expiry`` in Python, so a fractional expiry is exact.
        expiry = cast(int, seconds)
        return await self._windows().get_moving_window(item.key_for(key), limit, expiry)

    async def stats(self, key: str, limit: int, seconds: float) -> WindowStats:
        item = WindowItem(limit, whole_seconds(seconds), namespace="w")
        return await self.limiter.get_window_stats(item, key)

    async def clear_window(self, key: str) -> None:
        await self.limiter.clear(WindowItem(1, 1, namespace="w"), key)

    @abstractmethod
    async def read(self, keys: list[str]) -> list[dict[str, float]]:
        """The named numbers of each key (empty when missing or expired)."""

    @abstractmethod
    async def update(
        self,
        key: str,
        *,
        ttl: float,
        put: Mapping[str, float] | None = None,
        maximum: Mapping[str, float] | None = None,
        add: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        """Atomically: set ``put``, raise fields to at least ``maximum``, add ``add`` (a
        single field); returns the fields changed. The key lives ``ttl`` seconds from now
        (``add`` alone sets it only on a new key)."""

    @abstractmethod
    async def delete(self, keys: list[str]) -> None: ...


# KEYS[1] hash; ARGV: ttl_ms, then name/value pairs for "put", a "|" marker, pairs for "max".
_UPDATE_SCRIPT = """
local i = 2
while ARGV[i] ~= '|' do
  redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
i = i + 1
while ARGV[i] do
  local current = tonumber(redis.call('hget', KEYS[1], ARGV[i]))
  if not current or current < tonumber(ARGV[i + 1]) then
    redis.call('hset', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
redis.call('pexpire', KEYS[1], ARGV[1])
return 1
"""

# KEYS[1] hash; ARGV: field, amount, ttl_ms (set only when the key has no expiry yet).
_ADD_SCRIPT = """
local value = redis.call('hincrbyfloat', KEYS[1], ARGV[1], ARGV[2])
if redis.call('pttl', KEYS[1]) < 0 then
  redis.call('pexpire', KEYS[1], ARGV[3])
end
return value
"""


# The library's moving-window acquire (the list newest first, trimmed to ``limit``) with the
# stamp given rather than taken just before, and put in its place in the order (concurrent
# callers' stamps may reach Redis out of order; the library's scripts and ``restamp`` rely on
# the order). Pushed as given, so ``restamp`` finds it by its text.
# KEYS[1] list; ARGV: stamp, limit, window seconds, amount, ttl seconds.
_ACQUIRE_SCRIPT = """
local stamp = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local amount = tonumber(ARGV[4])
if amount > limit then
  return false
end
local entry = redis.call('lindex', KEYS[1], limit - amount)
if entry and tonumber(entry) >= stamp - tonumber(ARGV[3]) then
  return false
end
local low, high = 0, redis.call('llen', KEYS[1])
while low < high do  -- the first entry older than the stamp
  local mid = math.floor((low + high) / 2)
  if tonumber(redis.call('lindex', KEYS[1], mid)) >= stamp then
    low = mid + 1
  else
    high = mid
  end
end
for i = 1, amount do
  local pivot = redis.call('lindex', KEYS[1], low)
  if pivot then
    redis.call('linsert', KEYS[1], 'BEFORE', pivot, ARGV[1])
  else
    redis.call('rpush', KEYS[1], ARGV[1])
  end
end
redis.call('ltrim', KEYS[1], 0, limit - 1)
redis.call('expire', KEYS[1], ARGV[5])
return true
"""

# Move one entry from stamp ARGV[1] to ARGV[2], keeping the list newest first (what the
# library's scripts rely on). KEYS[1] list; ARGV: old stamp, new stamp, ttl seconds.
_RESTAMP_SCRIPT = """
if redis.call('lrem', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
local stamp = tonumber(ARGV[2])
local low, high = 0, redis.call('llen', KEYS[1])
while low < high do  -- the first entry older than the new stamp
  local mid = math.floor((low + high) / 2)
  if tonumber(redis.call('lindex', KEYS[1], mid)) >= stamp then
    low = mid + 1
  else
    high = mid
  end
end
local pivot = redis.call('lindex', KEYS[1], low)
if pivot then
  redis.call('linsert', KEYS[1], 'BEFORE', pivot, ARGV[2])
else
  redis.call('rpush', KEYS[1], ARGV[2])
end
if redis.call('ttl', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('expire', KEYS[1], ARGV[3])
end
return 1
"""


class RedisBudgetStore(BudgetStore):
    name = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(
            RedisStorage(_async_uri(url), implementation="redispy", key_prefix=f"{prefix}:lim")
        )
        self.prefix = prefix
        self.redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._update = self.redis.register_script(_UPDATE_SCRIPT)
        self._add = self.redis.register_script(_ADD_SCRIPT)
        self._acquire = self.redis.register_script(_ACQUIRE_SCRIPT)
        self._restamp = self.redis.register_script(_RESTAMP_SCRIPT)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def _window(self, key: str) -> str:
        """The list the library's moving window keeps for window ``key``."""
        return f"{self.prefix}:lim:{WindowItem(1, 1, namespace='w').key_for(key)}"

    async def hit(
        self, key: str, limit: int, seconds: float, amount: int = 1, *, at: float | None = None
    ) -> bool:
        stamp = time.time() if at is None else at
        # The library expires the list one window after the last call; a budget also reads
        # calls a little older (its latency margin), so keep them a second longer.
        ttl = whole_seconds(seconds) + 2
        args: list[str | int] = [repr(stamp), limit, repr(float(seconds)), amount, ttl]
        return bool(await self._acquire(keys=[self._window(key)], args=args))

    async def restamp(self, key: str, old: float, new: float, seconds: float) -> bool:
        args: list[str | int] = [repr(old), repr(new), whole_seconds(seconds) + 2]
        return bool(await self._restamp(keys=[self._window(key)], args=args))

    async def read(self, keys: list[str]) -> list[dict[str, float]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(self._key(key))
            answers: list[dict[str, str]] = await pipe.execute()
        return [{k: float(v) for k, v in answer.items()} for answer in answers]

    async def update(
        self,
        key: str,
        *,
        ttl: float,
        put: Mapping[str, float] | None = None,
        maximum: Mapping[str, float] | None = None,
        add: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        ttl_ms = max(1, math.ceil(ttl * 1000))
        changed: dict[str, float] = {}
        if put or maximum:
            args: list[Any] = [ttl_ms]
            for name, value in (put or {}).items():
                args += [name, repr(float(value))]
            args.append("|")
            for name, value in (maximum or {}).items():
                args += [name, repr(float(value))]
            await self._update(keys=[self._key(key)], args=args)
            changed |= dict(put or {}) | dict(maximum or {})
        for name, amount in (add or {}).items():
            value = await self._add(keys=[self._key(key)], args=[name, repr(amount), ttl_ms])
            changed[name] = float(value)
        return changed

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await self.redis.delete(*[self._key(k) for k in keys])


class DatabaseBudgetStore(BudgetStore):
    name = "database"

    def __init__(self) -> None:
        self.db = DatabaseStorage()
        super().__init__(self.db)

    async def hit(
        self, key: str, limit: int, seconds: float, amount: int = 1, *, at: float | None = None
    ) -> bool:
        item = WindowItem(limit, whole_seconds(seconds), namespace="w")
        return await self.db.acquire_entry(item.key_for(key), limit, seconds, amount, at=at)

    async def restamp(self, key: str, old: float, new: float, seconds: float) -> bool:
        return await self.db.restamp(WindowItem(1, 1, namespace="w").key_for(key), old, new)

    async def read(self, keys: list[str]) -> list[dict[str, float]]:
        return await self.db.read_fields(keys)

    async def update(
        self,
        key: str,
        *,
        ttl: float,
        put: Mapping[str, float] | None = None,
        maximum: Mapping[str, float] | None = None,
        add: Mapping[str, float] | None = None,
    ) -> dict[str, float]:
        data = await self.db.update_fields(key, ttl=ttl, put=put, maximum=maximum, add=add)
        names = set(put or {}) | set(maximum or {}) | set(add or {})
        return {name: data[name] for name in names if name in data}

    async def delete(self, keys: list[str]) -> None:
        for key in keys:
            await self.db.clear(key)


def _async_uri(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"


def storage_choice() -> StorageName:
    """``RATE_LIMIT_STORAGE``: ``redis``, ``database``, or ``auto`` (Redis when ``REDIS_URL``
    is set)."""
    choice = str(getattr(settings, "RATE_LIMIT_STORAGE", "auto")).lower()
    if choice == "auto":
        return "redis" if settings.REDIS_URL else "database"
    if choice == "redis":
        if not settings.REDIS_URL:
            raise ImproperlyConfigured("RATE_LIMIT_STORAGE=redis needs REDIS_URL.")
        return "redis"
    if choice == "database":
        return "database"
    raise ImproperlyConfigured(
        f"RATE_LIMIT_STORAGE must be auto, redis or database, not {choice!r}."
    )


_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, ...], BudgetStore]]
_stores = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def current_store() -> BudgetStore:
    """The store for this event loop and the current settings."""
    choice = storage_choice()
    prefix = settings.RATE_LIMIT_KEY_PREFIX
    ident = (choice, settings.REDIS_URL if choice == "redis" else "", prefix)
    loop = asyncio.get_running_loop()
    with _stores_lock:
        per_loop = _stores.setdefault(loop, {})
        store = per_loop.get(ident)
        if store is None:
            store = RedisBudgetStore(settings.REDIS_URL, prefix) if choice == "redis" else None
            store = store or DatabaseBudgetStore()
            per_loop[ident] = store
        return store
