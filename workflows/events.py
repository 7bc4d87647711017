"""A run's server-sent events (``GET /api/v1/runs/{id}/events``), read by polling the database.

The stream sends ``event: step`` each time a step appears or changes status, ``event: status``
each time the run's status changes (first on every connection, so a client always knows where
the run stands) and ``event: end`` when the run has ended, then closes. Comments keep idle
connections open through proxies.

Step events carry ids that only grow, derived from the rows (``2 * step id``: the step runs,
``+ 1``: it ended), so a reconnecting client's ``Last-Event-ID`` resumes exactly after the
last step event it saw, on any web process. A step's ``running`` event is skipped when the step
ended before a poll saw it; a step that starts while an earlier one still runs (parallel
branches) is sent once that one has ended, so ids stay in order. Status events carry no id:
the client's ``Last-Event-ID`` stays that of its last step event.

Polling works on PostgreSQL and SQLite alike and costs two small indexed queries a poll; it
slows down while nothing changes, and the database connection goes back to the pool between
polls. A stream ends after ``MAX_STREAM_SECONDS`` without an end
(an approval may wait for days): the client reconnects with its ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final

from asgiref.sync import sync_to_async
from django.db import connection
from pydantic import BaseModel

from .models import (
    TERMINAL_RUN_STATUSES,
    ApprovalStatus,
    RunStatus,
    RunStep,
    StepStatus,
    WorkflowRun,
)
from .schemas import ApprovalOut, EndEvent, ErrorOut, StatusEvent, StepEvent, StepOut
from .selectors import run_approval_list, run_step_list, run_with_workflow

logger = logging.getLogger("switchboard.workflows")

# Read at each use (tests shorten them).
POLL_SECONDS = 0.4
IDLE_POLL_SECONDS = 2.0  # once nothing changed for IDLE_AFTER_SECONDS
IDLE_AFTER_SECONDS = 60.0
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 3600.0

RETRY_MS: Final = 2000  # how long a disconnected EventSource waits before reconnecting
KEEPALIVE: Final = ": keep-alive\n\n"


def step_event_id(step: RunStep) -> int:
    """The id of a step's event: even while it runs, odd once it has ended."""
    return step.pk * 2 + (0 if step.status == StepStatus.RUNNING else 1)


def parse_last_event_id(raw: str | None) -> int:
    """A client's ``Last-Event-ID`` (0 when absent or not one of ours: start over)."""
    try:
        value = int((raw or "").strip())
    except ValueError:
        return 0
    return max(value, 0)


def sse_frame(event: str, data: BaseModel, event_id: int | None = None) -> str:
    """One event: compact JSON on one ``data:`` line."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data.model_dump_json()}\n\n"


@dataclass
class RunEventCursor:
    """What one stream has sent: the last step event id, the last status, and how many
    times a worker had taken the run."""

    run_id: uuid.UUID
    last_id: int = 0
    status_key: tuple[str, uuid.UUID | None, bool] | None = None
    deliveries: int | None = None

    def frames(self, run: WorkflowRun, approval: ApprovalOut | None, steps: list[RunStep]) -> str:
        """Everything new since the last poll, in the order it happened as far as the rows
        tell: "it runs" before the steps it ran, "it waits / it ended" after them."""
        status = self.status(run, approval)
        # A worker took the run again between two polls (after an approval, say) and it has
        # already left ``running``: say it ran, or its steps would seem to come from nowhere.
        taken_again = self.deliveries is not None and run.deliveries > self.deliveries
        if taken_again and run.status != RunStatus.RUNNING:
            status = [self._status_frame(run, RunStatus.RUNNING, None), *status]
        self.deliveries = run.deliveries
        step_frames = self.steps(steps)
        if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
            ordered = status + step_frames
        else:
            ordered = status[:-1] + step_frames + status[-1:]
        if run.status in TERMINAL_RUN_STATUSES:
            ordered.append(sse_frame("end", EndEvent.of(run)))
        return "".join(ordered)

    def steps(self, steps: list[RunStep]) -> list[str]:
        """Frames for the steps not sent yet, in id order (stops at a step still running)."""
        frames: list[str] = []
        for step in steps:
            event_id = step_event_id(step)
            if event_id > self.last_id:
                event = StepEvent(run_id=self.run_id, **StepOut.of(step).model_dump())
                frames.append(sse_frame("step", event, event_id))
                self.last_id = event_id
            if step.status == StepStatus.RUNNING:
                break  # later steps wait until this one's end is sent
        return frames

    def status(self, run: WorkflowRun, approval: ApprovalOut | None) -> list[str]:
        """The run's status frame when it changed since the last one sent."""
        key = (run.status, approval.id if approval else None, run.cancel_requested)
        if key == self.status_key:
            return []
        self.status_key = key
        return [self._status_frame(run, RunStatus(run.status), approval)]

    @staticmethod
    def _status_frame(run: WorkflowRun, status: RunStatus, approval: ApprovalOut | None) -> str:
        current = status == run.status
        event = StatusEvent(
            run_id=run.pk,
            status=status.value,  # type: ignore[arg-type]
            attempt=run.attempt,
            cancel_requested=run.cancel_requested,
            approval_id=approval.id if approval else None,
            approval=approval,
            error=ErrorOut(code=run.error_code, message=run.error_message)
            if current and (run.error_code or run.error_message)
            else None,
        )
        return sse_frame("status", event)


async def _pending_approval(run: WorkflowRun) -> ApprovalOut | None:
    if run.status != RunStatus.WAITING_APPROVAL:
        return None
    approval = await run_approval_list(run_id=run.pk).filter(status=ApprovalStatus.PENDING).afirst()
    return ApprovalOut.of(approval, run) if approval is not None else None


def _release() -> None:
    if not connection.in_atomic_block:
        connection.close()


async def _release_connection() -> None:
    """Give the database connection back between polls: a stream lives for minutes, and
    holding a pooled connection that long would starve the pool (``DATABASE_POOL_MAX_SIZE``
    streams would block every other request). Runs in the thread the ORM calls use."""
    await sync_to_async(_release)()


async def run_events(
    run_id: uuid.UUID,
    *,
    last_event_id: int = 0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[str]:
    """The run's event stream as SSE text chunks, until the run ends (or the client leaves:
    the server cancels the iteration, which stops the polling)."""
    cursor = RunEventCursor(run_id=run_id, last_id=last_event_id)
    opened = last_output = last_change = clock()
    yield f"retry: {RETRY_MS}\n\n"
    try:
        while True:
            # The run first, then its steps: a run seen ended has all its steps ended.
            run = await run_with_workflow(run_id=run_id)
            if run is None:  # deleted under the stream
                return
            steps = [
                s async for s in run_step_list(run_id=run_id, from_step_id=cursor.last_id // 2)
            ]
            chunk = cursor.frames(run, await _pending_approval(run), steps)
            await _release_connection()
            ended = run.status in TERMINAL_RUN_STATUSES
            now = clock()
            if chunk:
                yield chunk
                last_output = last_change = now
            if ended:
                return
            if now - opened >= MAX_STREAM_SECONDS:
                return  # the client reconnects with its Last-Event-ID
            if now - last_output >= KEEPALIVE_SECONDS:
                yield KEEPALIVE
                last_output = now
            idle = now - last_change >= IDLE_AFTER_SECONDS
            await asyncio.sleep(IDLE_POLL_SECONDS if idle else POLL_SECONDS)
    finally:
        logger.debug("run %s event stream closed (last event id %s)", run_id, cursor.last_id)
