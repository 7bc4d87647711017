"""The Celery app. Queues split by kind of work so a slow provider never starves the rest:
``default``, ``sync`` (mirror reads), ``writes`` (the outbox), ``workflows`` (agents)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

QUEUES = ("default", "sync", "writes", "workflows")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue="default",
    # Tasks take ids and record their outcome in rows; nothing reads Celery results.
    task_ignore_result=True,
    # A task is acknowledged after it ran, and redelivered if its worker died mid-way.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    timezone="UTC",
)
app.autodiscover_tasks()
