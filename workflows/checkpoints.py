"""Where LangGraph keeps run state: langgraph-checkpoint-postgres in the same PostgreSQL
database as Django, or the SQLite saver in a file beside the embedded SQLite database.

Each run has its own saver on one connection for the run's life. A Celery task runs the graph
in a fresh event loop, so a pool (``psycopg_pool``, whose workers are tasks of one loop) cannot
serve it; but a psycopg connection itself is bound to no loop (each wait asks for the running
one), so a worker process keeps its checkpoint connections between runs (``keep_connections``,
called when a worker starts) and lends each to one run at a time: opening one and warming its
server process cost more than the rest of a short run. Elsewhere (tests, the shell) a run opens
and closes its own. The tables are created by this app's migration (``0002_checkpoint_tables``),
never lazily, so two workers on a new database cannot race to create them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from django.conf import settings
from django.db import connections
from langgraph.checkpoint.base import BaseCheckpointSaver

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow

KEEP_IDLE: Final = 8  # idle connections a worker keeps (one per run in flight is enough)
MAX_AGE_SECONDS: Final = 3600.0  # then a connection is closed and a new one opened
CHECK_AFTER_IDLE_SECONDS: Final = 30.0  # a connection idle this long is tested before use


def uses_postgres(alias: str = "default") -> bool:
    return connections[alias].vendor == "postgresql"


def postgres_conninfo(alias: str = "default") -> str:
    """A libpq connection string for the database Django uses (the test database in tests)."""
    from psycopg.conninfo import make_conninfo

    s: dict[str, Any] = connections[alias].settings_dict
    params = {
        "dbname": s.get("NAME"),
        "user": s.get("USER"),
        "password": s.get("PASSWORD"),
        "host": s.get("HOST"),
        "port": s.get("PORT"),
    }
    return make_conninfo("", **{k: str(v) for k, v in params.items() if v})


def sqlite_path() -> Path:
    path = Path(settings.WORKFLOW_CHECKPOINT_SQLITE)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class _Kept:
    conn: AsyncConnection[DictRow]
    conninfo: str
    opened: float
    used: float


class _Connections:
    """The idle checkpoint connections of this process, most recently used last."""

    def __init__(self) -> None:
        self.enabled = False
        self._lock = threading.Lock()
        self._idle: list[_Kept] = []

    def take(self, conninfo: str) -> _Kept | None:
        with self._lock:
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i].conninfo == conninfo:
                    return self._idle.pop(i)
        return None

    def give(self, kept: _Kept) -> bool:
        """Keep ``kept`` for a later run; False when it should be closed instead."""
        from psycopg.pq import TransactionStatus

        conn = kept.conn
        usable = (
            self.enabled
            and not conn.closed
            and not conn.broken
            and conn.info.transaction_status == TransactionStatus.IDLE
            and time.monotonic() - kept.opened < MAX_AGE_SECONDS
        )
        if not usable:
            return False
        with self._lock:
            if len(self._idle) >= KEEP_IDLE:
                return False
            kept.used = time.monotonic()
            self._idle.append(kept)
        return True

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def drain(self) -> list[_Kept]:
        with self._lock:
            idle, self._idle = self._idle, []
        return idle


_connections = _Connections()


def keep_connections(enabled: bool = True) -> None:
    """Keep checkpoint connections between runs in this process (a worker's, at start-up);
    ``False`` stops keeping them and closes the idle ones."""
    _connections.enabled = enabled
    if not enabled:
        for kept in _connections.drain():
            kept.conn.pgconn.finish()  # no I/O to wait for: works outside any event loop


def kept_connections() -> int:
    """How many idle checkpoint connections this process holds."""
    return _connections.idle()


async def _connect(conninfo: str) -> _Kept:
    from psycopg import AsyncConnection
    from psycopg.rows import dict_row

    # What AsyncPostgresSaver.from_conn_string opens: autocommit, no prepared statements.
    conn = await AsyncConnection.connect(
        conninfo, autocommit=True, prepare_threshold=0, row_factory=dict_row
    )
    now = time.monotonic()
    return _Kept(conn=conn, conninfo=conninfo, opened=now, used=now)


async def _lend(conninfo: str) -> _Kept:
    """A kept connection in working order, or a new one."""
    while (kept := _connections.take(conninfo)) is not None:
        if time.monotonic() - kept.used > CHECK_AFTER_IDLE_SECONDS:
            try:
                await kept.conn.execute("SELECT 1")
            except Exception:
                await kept.conn.close()
                continue
        # The connection's lock is an asyncio.Lock, which binds to the first loop that waits
        # on it: a fresh one for each run's loop.
        kept.conn.lock = asyncio.Lock()
        return kept
    return await _connect(conninfo)


@asynccontextmanager
async def _postgres_saver() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    conninfo = postgres_conninfo()
    kept = await _lend(conninfo) if _connections.enabled else await _connect(conninfo)
    try:
        yield AsyncPostgresSaver(conn=kept.conn)
    finally:
        if not _connections.give(kept):
            await kept.conn.close()


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """An open async saver for one run."""
    if uses_postgres():
        async with _postgres_saver() as saver:
            yield saver
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(sqlite_path())) as saver:
            yield saver


def checkpoint_setup(alias: str = "default") -> None:
    """Create (or upgrade) the checkpointer's tables; idempotent. Run by the migration."""
    if uses_postgres(alias):
        from langgraph.checkpoint.postgres import PostgresSaver

        # Its own autocommit connection: some of the saver's migrations create indexes
        # concurrently, which cannot run inside the migration's transaction.
        with PostgresSaver.from_conn_string(postgres_conninfo(alias)) as saver:
            saver.setup()
    else:
        from langgraph.checkpoint.sqlite import SqliteSaver

        with SqliteSaver.from_conn_string(str(sqlite_path())) as saver:
            saver.setup()
