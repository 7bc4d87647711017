"""Where LangGraph keeps run state: langgraph-checkpoint-postgres in the same PostgreSQL
database as Django, or the SQLite saver in a file beside the embedded SQLite database.

Each run opens its own saver (one connection for the run's life): a Celery task runs the graph
in a fresh event loop, and pooled async connections cannot cross loops. The tables are created
by this app's migration (``0002_checkpoint_tables``), never lazily, so two workers on a new
database cannot race to create them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections
from langgraph.checkpoint.base import BaseCheckpointSaver


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


@asynccontextmanager
async def checkpointer() -> AsyncIterator[BaseCheckpointSaver[Any]]:
    """An open async saver for one run."""
    if uses_postgres():
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(postgres_conninfo()) as saver:
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
