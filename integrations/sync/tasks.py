"""Celery tasks of the sync engine (routed to the ``sync`` queue) and its beat entries."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task, shared_task

from .engine import run_slice


@shared_task(name="integrations.sync.run", bind=True)
def sync_run_task(self: Task[Any, Any], run_id: str) -> str:
    """One slice of a sync run; queues the next slice until the read completes."""
    owner = f"{self.request.id or 'eager'}:{uuid.uuid4().hex[:8]}"
    result = run_slice(run_id, owner=owner)
    if result.outcome == "continue":
        sync_run_task.apply_async((run_id,))
    elif result.outcome == "retry_later":
        sync_run_task.apply_async((run_id,), countdown=result.retry_in)
    return result.outcome


@shared_task(name="integrations.sync.schedule")
def sync_schedule_task() -> int:
    """Beat: queue the syncs that are due (each connection's own frequency)."""
    from .service import sync_schedule_due

    return sync_schedule_due()


@shared_task(name="integrations.sync.watchdog")
def sync_watchdog_task() -> int:
    """Beat: send again the runs whose worker died (their lease went stale)."""
    from .service import sync_watchdog

    return sync_watchdog()
