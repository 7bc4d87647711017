"""What Celery autodiscovers in this app: the tasks of each part."""

from .outbox.tasks import write_send_task, write_sweep_task
from .sync.tasks import sync_run_task, sync_schedule_task, sync_watchdog_task
from .webhooks import tasks as _webhooks_tasks  # noqa: F401

__all__ = [
    "sync_run_task",
    "sync_schedule_task",
    "sync_watchdog_task",
    "write_send_task",
    "write_sweep_task",
]
