"""Queueing outbox writes for a worker (``integrations.outbox.send`` on ``OUTBOX_QUEUE``).

Best effort by design: the row is the truth and the message only a nudge. A write whose
message is lost (the broker was down, a worker died holding it) is queued again by the sweep.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Final

from asgiref.sync import sync_to_async
from django.conf import settings

logger = logging.getLogger("switchboard.outbox")

MESSAGE_SIZE: Final = 100  # write ids per message


async def publish(ids: Sequence[uuid.UUID], *, delay: float = 0.0) -> None:
    """Queue the writes ``ids`` to be sent in ``delay`` seconds (from async code)."""
    if ids:
        await sync_to_async(publish_now, thread_sensitive=False)([str(i) for i in ids], delay=delay)


def publish_now(ids: Sequence[str], *, delay: float = 0.0) -> int:
    """Queue the writes ``ids`` (sync); returns how many messages went out."""
    from .tasks import write_send_task

    sent = 0
    for start in range(0, len(ids), MESSAGE_SIZE):
        chunk = list(ids[start : start + MESSAGE_SIZE])
        try:
            write_send_task.apply_async(
                (chunk,), queue=settings.OUTBOX_QUEUE, countdown=max(0.0, delay)
            )
        except Exception:  # the broker is down: the sweep queues these when they are due
            logger.warning("outbox: could not queue %d write(s)", len(chunk), exc_info=True)
        else:
            sent += 1
    return sent
