"""The write outbox: every CRM write is a ``CrmWrite`` row first, then the provider call.

``service`` (submit, process, replay, sweep), ``sender`` (one claimed group's calls and
outcomes), ``reconcile`` (uncertain creates), ``policy`` (backoff, uncertainty, the write-id
property), ``dispatch`` (queueing), ``tasks`` (Celery), ``api``/``schemas``/``selectors`` (the
``/writes`` routes and the record write routes' answers), ``admin``.
"""
