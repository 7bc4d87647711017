"""Provider webhooks: stored on arrival, then routed to connections and turned into mirror work.

Two steps, so the endpoint answers fast and nothing verified is ever lost:

1. ``webhook_store`` (in the request): every event of a delivery in one transaction, each once
   (the ``(provider, event_id)`` unique constraint decides; a redelivered event is
   acknowledged, not stored again), then one ``integrations.webhooks.process`` task for the
   events still waiting, sent once the rows are committed.
2. ``webhook_process`` (the task, or the admin's replay): each event is routed by its account
   (HubSpot portal id) to every active connection of that account, several organisations may
   have connected the same portal. The delivery's changes are grouped per (connection, object
   type): one targeted sync per group fetches every changed record, deletions are marked in the
   mirror directly. An event of an account nobody connected is kept as ``unrouted`` (replay
   routes it once a connection exists); one that is not a change of a mirrored record type is
   ``ignored``.

The scheduled incremental sync is the reconciliation sweep behind all this: whatever a webhook
missed (never sent, rejected, dropped by HubSpot after its retries) the next incremental read
finds by modification time. ``webhook_redispatch`` (beat) sends again events whose task was lost.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from core.errors import AppError

from ..models import Connection, ConnectionStatus, WebhookEvent, WebhookStatus
from ..providers.unified import ObjectType
from ..sync.mirror import Deleted, mirror_mark_deleted, mirror_purge
from ..sync.service import sync_request
from . import hubspot
from .hubspot import Change

logger = logging.getLogger("switchboard.webhooks")

# What each provider's stored events ask of the mirror.
INTERPRETERS: dict[str, Callable[[dict[str, Any]], list[Change]]] = {
    hubspot.PROVIDER: hubspot.changes_of,
}


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One verified event, as it is stored."""

    event_id: str
    external_account_id: str
    subscription_type: str
    object_type: str
    object_id: str
    occurred_at: datetime | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    received: int
    stored: int
    duplicates: int
    pending: list[int]  # the events (ours or redelivered) waiting for processing


@dataclass(slots=True)
class ProcessOutcome:
    processed: int = 0
    unrouted: int = 0
    ignored: int = 0
    failed: int = 0
    skipped: int = 0  # already processed, or being processed by another worker
    sync_runs: list[uuid.UUID] = field(default_factory=list)
    deleted: int = 0


def _dispatch(event_ids: list[int]) -> None:
    from .tasks import QUEUE, process_events_task  # the task module imports this one

    process_events_task.apply_async((event_ids,), queue=QUEUE)


def webhook_known_accounts(*, provider: str, account_ids: set[str]) -> set[str]:
    """Which of these provider accounts some organisation has a connection to (in any state: a
    disconnected one's events are kept ``unrouted``, to be replayed on reconnecting)."""
    return set(
        Connection.objects.filter(provider=provider, external_account_id__in=account_ids)
        .values_list("external_account_id", flat=True)
        .distinct()
    )


def webhook_store(*, provider: str, events: Sequence[IncomingEvent]) -> StoreOutcome:
    """Store a verified delivery in one transaction; queue its processing after the commit.

    If the broker is down the events are stored all the same (the commit hook is robust) and
    ``webhook_redispatch`` sends them later.
    """
    unique: dict[str, IncomingEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)  # the same id twice in one delivery: once
    keys = list(unique)
    with transaction.atomic():
        existing = set(
            WebhookEvent.objects.filter(provider=provider, event_id__in=keys).values_list(
                "event_id", flat=True
            )
        )
        now = timezone.now()
        WebhookEvent.objects.bulk_create(
            [
                WebhookEvent(
                    provider=provider,
                    event_id=e.event_id,
                    external_account_id=e.external_account_id,
                    subscription_type=e.subscription_type,
                    object_type=e.object_type,
                    object_id=e.object_id,
                    occurred_at=e.occurred_at,
                    payload=e.payload,
                    received_at=now,
                )
                for key, e in unique.items()
                if key not in existing
            ],
            ignore_conflicts=True,  # a concurrent delivery of the same event stored it first
        )
        pending = list(
            WebhookEvent.objects.filter(
                provider=provider, event_id__in=keys, status=WebhookStatus.RECEIVED
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if pending:

            def dispatch() -> None:
                _dispatch(pending)

            transaction.on_commit(dispatch, robust=True)
    stored = len(keys) - len(existing)
    logger.info(
        "webhook delivery stored",
        extra={
            "provider": provider,
            "received": len(events),
            "stored": stored,
            "duplicates": len(events) - stored,
        },
    )
    return StoreOutcome(
        received=len(events), stored=stored, duplicates=len(events) - stored, pending=pending
    )


@dataclass(slots=True)
class _Group:
    """The changes of one delivery for one (connection, object type)."""

    connection: Connection
    object_type: ObjectType
    latest: dict[str, Change] = field(default_factory=dict)  # per record: its newest change
    events: set[int] = field(default_factory=set)

    def add(self, change: Change, event_pk: int) -> None:
        self.events.add(event_pk)
        held = self.latest.get(change.record_id)
        # Events arrive in any order: the newest change of a record decides (a deletion
        # followed by a restore is a fetch; a creation followed by a deletion is a delete).
        if held is None or not (
            change.at is not None and held.at is not None and change.at < held.at
        ):
            self.latest[change.record_id] = change


def _apply(group: _Group, provider: str, outcome: ProcessOutcome) -> None:
    """Queue the group's targeted fetch and mark its deletions (inside the caller's
    transaction, so the fetch task is sent only when everything is committed)."""
    connection, object_type = group.connection, group.object_type
    gone = [c for c in group.latest.values() if c.action in ("delete", "purge")]
    if gone:
        counts = mirror_mark_deleted(
            connection_id=connection.pk,
            object_type=object_type,
            deleted=[Deleted(external_id=c.record_id, deleted_at=c.at) for c in gone],
        )
        outcome.deleted += counts.deleted
    purged = [c.record_id for c in gone if c.action == "purge"]
    if purged:
        # A privacy deletion (GDPR): the mirror keeps that the record existed, not who it was.
        mirror_purge(connection_id=connection.pk, object_type=object_type, external_ids=purged)
    fetch = [c.record_id for c in group.latest.values() if c.action == "fetch"]
    if fetch:
        run, _ = sync_request(
            connection=connection,
            object_type=object_type,
            trigger="webhook",
            record_ids=fetch,
            requested_by=f"webhook:{provider}",
        )
        outcome.sync_runs.append(run.pk)


def webhook_process(*, event_ids: Sequence[int], replay: bool = False) -> ProcessOutcome:
    """Route the events and trigger their mirror work, in one transaction.

    Only events still ``received`` are taken (so a redelivered task does nothing twice),
    unless ``replay``: then every listed event is routed and applied again. Events another
    worker holds right now are skipped.
    """
    outcome = ProcessOutcome()
    with transaction.atomic():
        query = WebhookEvent.objects.select_for_update(skip_locked=True).filter(pk__in=event_ids)
        if not replay:
            query = query.filter(status=WebhookStatus.RECEIVED)
        events = list(query.order_by("occurred_at", "pk"))
        outcome.skipped = len(set(event_ids)) - len(events)
        if not events:
            return outcome

        accounts = {(e.provider, e.external_account_id) for e in events}
        by_account: dict[tuple[str, str], list[Connection]] = defaultdict(list)
        for connection in Connection.objects.filter(
            status=ConnectionStatus.ACTIVE,
            provider__in={p for p, _ in accounts},
            external_account_id__in={a for _, a in accounts},
        ).order_by("created_at"):
            by_account[(connection.provider, connection.external_account_id)].append(connection)

        groups: dict[tuple[uuid.UUID, ObjectType], _Group] = {}
        routed: dict[int, list[Connection]] = {}
        errors: dict[int, list[str]] = defaultdict(list)
        for event in events:
            interpret = INTERPRETERS.get(event.provider)
            changes = interpret(event.payload) if interpret is not None else []
            connections = by_account.get((event.provider, event.external_account_id), [])
            if connections:
                routed[event.pk] = connections
            if not changes:
                event.status = WebhookStatus.IGNORED
                continue
            if not connections:
                event.status = WebhookStatus.UNROUTED
                errors[event.pk].append(
                    f"No active {event.provider} connection for account "
                    f"{event.external_account_id}; replay it once one exists."
                )
                continue
            event.status = WebhookStatus.PROCESSED
            for connection in connections:
                if not connection.sync_enabled:
                    continue  # routed (the organisation sees it), but its mirror is off
                for change in changes:
                    key = (connection.pk, change.object_type)
                    if key not in groups:
                        groups[key] = _Group(connection, change.object_type)
                    groups[key].add(change, event.pk)

        for group in groups.values():
            try:
                with transaction.atomic():  # a savepoint: one group's failure is its own
                    _apply(group, group.connection.provider, outcome)
            except AppError as exc:
                note = f"connection {group.connection.pk}: {exc.code}: {exc.message}"
                for pk in group.events:
                    errors[pk].append(note)

        now = timezone.now()
        for event in events:
            if errors.get(event.pk) and event.status == WebhookStatus.PROCESSED:
                event.status = WebhookStatus.FAILED
            event.error = "\n".join(errors.get(event.pk, []))
            event.attempts = min(event.attempts + 1, 32767)
            event.processed_at = now
        WebhookEvent.objects.bulk_update(events, ["status", "error", "attempts", "processed_at"])
        through = WebhookEvent.connections.through
        through.objects.bulk_create(
            [
                through(webhookevent_id=pk, connection_id=connection.pk)
                for pk, connections in routed.items()
                for connection in connections
            ],
            ignore_conflicts=True,
        )
    for event in events:
        status = WebhookStatus(event.status)
        if status is WebhookStatus.PROCESSED:
            outcome.processed += 1
        elif status is WebhookStatus.UNROUTED:
            outcome.unrouted += 1
        elif status is WebhookStatus.IGNORED:
            outcome.ignored += 1
        else:
            outcome.failed += 1
    logger.info(
        "webhook events processed",
        extra={
            "processed": outcome.processed,
            "unrouted": outcome.unrouted,
            "ignored": outcome.ignored,
            "failed": outcome.failed,
            "sync_runs": [str(r) for r in outcome.sync_runs],
        },
    )
    return outcome


def webhook_replay(*, event_ids: Sequence[int], actor: Actor) -> ProcessOutcome:
    """Route the events again and trigger their fetches again (the admin's "replay"):
    for an unrouted event whose account has been connected since, or after a failure."""
    with transaction.atomic():
        for event in WebhookEvent.objects.filter(pk__in=event_ids).only("pk", "status"):
            audit_record(
                actor=actor,
                action="webhook_event.replay",
                entity_type="webhook_event",
                entity_id=event.pk,
                organization_id=None,
                changes={"status": event.status},
            )
        return webhook_process(event_ids=event_ids, replay=True)


def webhook_give_up(*, event_ids: Sequence[int], error: str) -> int:
    """Mark events still waiting as failed (their task ran out of attempts)."""
    return WebhookEvent.objects.filter(pk__in=event_ids, status=WebhookStatus.RECEIVED).update(
        status=WebhookStatus.FAILED, error=error, processed_at=timezone.now()
    )


def webhook_redispatch(*, older_than_seconds: float | None = None, limit: int = 1000) -> int:
    """Send again the events still ``received`` a while after they arrived (their task was
    lost: a broker outage at commit time, a worker killed mid-task). Beat runs this."""
    wait = (
        settings.WEBHOOK_REDISPATCH_AFTER_SECONDS
        if older_than_seconds is None
        else older_than_seconds
    )
    cutoff = timezone.now() - timedelta(seconds=wait)
    ids = list(
        WebhookEvent.objects.filter(status=WebhookStatus.RECEIVED, received_at__lt=cutoff)
        .order_by("received_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    for start in range(0, len(ids), 100):
        _dispatch(ids[start : start + 100])
    if ids:
        logger.warning("webhook events sent again", extra={"events": len(ids)})
    return len(ids)
