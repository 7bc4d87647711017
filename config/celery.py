"""The Celery app. Queues split by kind of work so a slow provider never starves the rest:
``default``, ``sync`` (mirror reads), ``writes`` (the outbox), ``workflows`` (agents)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

QUEUES = ("default", "sync", "writes", "workflows")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # Each queue on its own exchange and routing key: left to Celery's defaults they would all
    # bind the routing key "default", and a message would land in every queue at once.
    task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],
    task_default_exchange="default",
    task_default_routing_key="default",
    task_default_queue="default",
    # Each part's tasks go to its own queue (``Procfile``: one worker process for syncs, another
    # for writes, workflows and the rest).
    task_routes={
        "integrations.sync.*": {"queue": "sync"},
        "integrations.webhooks.*": {"queue": "sync"},
        "integrations.outbox.*": {"queue": "writes"},
        "workflows.*": {"queue": "workflows"},
    },
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
