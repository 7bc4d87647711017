"""Celery tasks of the write outbox (queue ``OUTBOX_QUEUE``, ``writes`` by default).

Thin: they take write ids and call the service. A task that runs twice, or after another
worker took the same writes, does nothing the second time (a claim takes only pending rows).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from celery import shared_task

from .service import write_process, write_sweep


@shared_task(name="integrations.outbox.send")
def write_send_task(write_ids: list[str]) -> int:
    """Send the due pending writes among ``write_ids`` (batch calls where possible); returns
    how many this worker claimed."""
    return async_to_sync(write_process)(write_ids, due_only=True)


@shared_task(name="integrations.outbox.sweep")
def write_sweep_task() -> dict[str, int]:
    """Beat: recover writes whose worker died (expired leases) and queue overdue ones."""
    swept = write_sweep()
    return {"recovered": swept.recovered, "queued": swept.queued}
