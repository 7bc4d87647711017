"""The per-connection provider call log (bounded) and the CRM client wired to a connection
(its tokens, its call log and its account's shared rate-limit budget)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ..models import Connection, ProviderCallLog
from ..providers.base import CallRecorder, CrmClient, ProviderCall
from ..providers.registry import get_provider
from ..ratelimit import budget_for
from .tokens import ConnectionTokens

CALL_LOG_KEEP = 500  # rows kept per connection
_PRUNE_EVERY = 50  # prune on roughly one write in this many (cheap on average)
_TOUCH_EVERY = timedelta(minutes=1)


def _log(call: ProviderCall, connection_id: uuid.UUID) -> ProviderCallLog | None:
    """The call's log row; ``None`` when the connection is gone (disconnected while the call
    was in flight: nothing is left to log it against, and the caller's answer stands). The
    foreign key is checked when the row commits (PostgreSQL's are deferred): at the end of this
    block, as provider calls run outside any transaction of their caller's."""
    try:
        with transaction.atomic():
            return ProviderCallLog.objects.create(
                connection_id=connection_id,
                method=call.method,
                path=call.path[:500],
                status=call.status,
                duration_ms=round(call.duration_ms, 2),
                attempt=call.attempt,
                waited_ms=round(call.waited_ms, 2),
                error_code=call.error_code or "",
            )
    except IntegrityError:
        return None


def call_recorder(connection_id: uuid.UUID) -> CallRecorder:
    async def record(call: ProviderCall) -> None:
        row = await sync_to_async(_log)(call, connection_id)
        if row is None:
            return
        if row.pk % _PRUNE_EVERY == 0:
            await call_log_prune(connection_id=connection_id)
        if call.waited_ms > 0:
            await Connection.objects.filter(pk=connection_id).aupdate(
                budget_waited_ms=F("budget_waited_ms") + round(call.waited_ms, 2)
            )
        if call.budget_used is not None:
            await Connection.objects.filter(pk=connection_id).aupdate(
                api_budget_used=call.budget_used,
                api_budget_limit=call.budget_limit,
                api_budget_at=timezone.now(),
            )
        now = timezone.now()
        await (
            Connection.objects.filter(pk=connection_id)
            .exclude(last_used_at__gt=now - _TOUCH_EVERY)
            .aupdate(last_used_at=now)
        )

    return record


async def call_log_prune(*, connection_id: uuid.UUID, keep: int = CALL_LOG_KEEP) -> int:
    """Delete all but the newest ``keep`` calls of a connection; returns how many went."""
    newest = ProviderCallLog.objects.filter(connection_id=connection_id).order_by("-id")
    boundary = await newest.values_list("id", flat=True)[keep : keep + 1].afirst()
    if boundary is None:
        return 0
    deleted, _ = await ProviderCallLog.objects.filter(
        connection_id=connection_id, id__lte=boundary
    ).adelete()
    return deleted


def crm_client_for(connection: Connection, *, token_reuse_seconds: float = 0.0) -> CrmClient:
    """``token_reuse_seconds``: see ``ConnectionTokens`` (0: the row is read for every call)."""
    provider = get_provider(connection.provider)
    return provider.crm_client(
        tokens=ConnectionTokens(connection.pk, reuse_seconds=token_reuse_seconds),
        record_call=call_recorder(connection.pk),
        token_extra=dict(connection.token_extra),
        budget=budget_for(connection.provider, connection.external_account_id),
    )
