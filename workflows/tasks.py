"""Celery tasks of the workflows (queue ``workflows``): thin, they take ids and call services.

``run_task`` runs under the app-wide ``acks_late`` and ``reject_on_worker_lost``: a worker that
dies mid-run leaves the message to be delivered again, and the watchdog queues the run as soon
as its heartbeat goes stale; whichever arrives first resumes the run from its checkpoint, the
other finds it taken and does nothing.

A worker process keeps its checkpoint connections between runs (``checkpoints.
keep_connections``, on ``worker_init`` and, for prefork children, ``worker_process_init``).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from celery import Task, shared_task
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from .checkpoints import keep_connections
from .runner import run_execute
from .services import runs_watchdog, workflow_triggers_scan, workflows_schedule_due


@shared_task(name="workflows.run", bind=True)
def run_task(self: Task[Any, Any], run_id: str) -> str:
    owner = f"{os.getpid()}:{self.request.id or 'eager'}:{uuid.uuid4().hex[:8]}"
    return async_to_sync(run_execute)(run_id, owner=owner)


@shared_task(name="workflows.watchdog")
def runs_watchdog_task() -> int:
    return runs_watchdog()


@shared_task(name="workflows.schedule")
def workflows_schedule_task() -> dict[str, int]:
    """Beat: scheduled workflows that are due, and runs for synced changes (triggers)."""
    return {"scheduled": workflows_schedule_due(), "triggered": workflow_triggers_scan()}


@worker_init.connect
@worker_process_init.connect
def _keep_checkpoint_connections(**kwargs: Any) -> None:
    keep_connections(True)


@worker_shutdown.connect
@worker_process_shutdown.connect
def _close_checkpoint_connections(**kwargs: Any) -> None:
    keep_connections(False)
