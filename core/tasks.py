from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "switchboard:worker-heartbeat"


@shared_task(name="core.heartbeat")
def heartbeat_task() -> str:
    """Beat sends this every 30 s; the worker that runs it proves the worker is alive."""
    now = timezone.now().isoformat()
    cache.set(HEARTBEAT_KEY, now, timeout=None)
    return now
