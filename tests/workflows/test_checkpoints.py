"""A worker keeps its checkpoint connections between runs: each run (in its own event loop)
borrows one, runs in flight at once get one each, and a broken one is never handed out again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from workflows.checkpoints import checkpointer, keep_connections, kept_connections

pytestmark = pytest.mark.django_db


@pytest.fixture
def kept() -> Iterator[None]:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL checkpoints only")
    keep_connections(True)
    yield
    keep_connections(False)  # closed: the test database can be dropped
    assert kept_connections() == 0


THREAD = {"configurable": {"thread_id": "no-such-thread", "checkpoint_ns": ""}}


async def one_run() -> tuple[int, int]:
    """(the connection's id, its server process) of one run's saver, after a query."""
    async with checkpointer() as saver:
        assert await saver.aget_tuple(THREAD) is None  # type: ignore[arg-type]
        conn: Any = saver.conn  # type: ignore[attr-defined]
        return id(conn), conn.info.backend_pid


def test_runs_in_separate_event_loops_reuse_one_connection(kept: None) -> None:
    first = async_to_sync(one_run)()
    assert kept_connections() == 1
    assert async_to_sync(one_run)() == first  # another loop, the same server process
    assert kept_connections() == 1


def test_runs_at_once_get_a_connection_each(kept: None) -> None:
    async def two_at_once() -> tuple[Any, Any]:
        async with checkpointer() as a, checkpointer() as b:
            return a.conn, b.conn  # type: ignore[attr-defined]

    a, b = async_to_sync(two_at_once)()
    assert a is not b
    assert kept_connections() == 2


def test_a_closed_connection_is_not_kept(kept: None) -> None:
    async def closing() -> None:
        async with checkpointer() as saver:
            await saver.conn.close()  # type: ignore[attr-defined]

    async_to_sync(closing)()
    assert kept_connections() == 0
    async_to_sync(one_run)()  # a new one
    assert kept_connections() == 1


def test_outside_a_worker_a_run_closes_its_connection() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL checkpoints only")
    async_to_sync(one_run)()
    assert kept_connections() == 0
