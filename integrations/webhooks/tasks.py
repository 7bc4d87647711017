"""Celery tasks of the webhook receiver, sent to the ``sync`` queue: thin, ids in, the service
decides."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.db import DatabaseError

from .service import webhook_give_up, webhook_process, webhook_redispatch

MAX_RETRIES = 5
QUEUE = "sync"  # given at each send (a task's own ``queue`` attribute is deprecated)
logger = logging.getLogger("switchboard.webhooks")


@shared_task(name="integrations.webhooks.process", bind=True, max_retries=MAX_RETRIES)
def process_events_task(self: Task[Any, Any], event_ids: list[int]) -> dict[str, int]:
    """Route a delivery's stored events and queue their targeted fetches and deletions.

    A database hiccup is retried with backoff; after the last attempt the events are marked
    failed (the admin's replay, or the next incremental sync, picks them up)."""
    try:
        outcome = webhook_process(event_ids=event_ids)
    except DatabaseError as exc:
        if self.request.retries >= MAX_RETRIES:
            webhook_give_up(event_ids=event_ids, error=f"Processing failed: {type(exc).__name__}.")
            raise
        raise self.retry(
            exc=exc, countdown=min(300, 5 * 2**self.request.retries), queue=QUEUE
        ) from exc
    except Exception:
        # Our bug, not a hiccup: fail the events visibly (replayable) instead of having the
        # redispatch sweep send them again every minute.
        logger.exception("webhook processing crashed", extra={"events": event_ids})
        webhook_give_up(
            event_ids=event_ids,
            error="Processing stopped on an unexpected error (see the worker log).",
        )
        raise
    return {
        "processed": outcome.processed,
        "unrouted": outcome.unrouted,
        "ignored": outcome.ignored,
        "failed": outcome.failed,
        "sync_runs": len(outcome.sync_runs),
    }


@shared_task(name="integrations.webhooks.redispatch")
def redispatch_events_task() -> int:
    """Beat: send again the events whose processing task was lost."""
    return webhook_redispatch()
