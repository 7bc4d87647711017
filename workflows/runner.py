"""Runs one workflow run's graph in a worker: claim, execute with the checkpointer, record the
steps as they happen, and end in the state the graph reached.

A run is claimed by one atomic update (``queued`` -> ``running``, with a lease owner and a
heartbeat), so a redelivered task or a second worker does nothing while another holds it.
Every later update of the run is fenced on that owner. The graph runs with
``durability="sync"``: a step's checkpoint is saved before the next step starts, so a worker
that dies mid-run loses at most the step it was in; the watchdog queues the run again, the
next worker resumes from the checkpoint, and the step that was cut off runs again with the same
write keys (``tools.write_key``), so the outbox sends nothing twice.

How a claimed run continues depends on its thread's checkpoint: none -> start with the input;
an interrupt -> resume with the ``Approval`` decision (or wait for one); otherwise -> continue
(a resumed crash, a retry of a failed run).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Final, cast

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Field, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.types import Command, Durability, StateSnapshot, StreamMode

from accounts.audit import Actor
from core.errors import AppError, ErrorCode

from .checkpoints import checkpointer
from .context import RunContext
from .llm import chat_model, model_name
from .models import (
    Approval,
    ApprovalStatus,
    RunStatus,
    RunStep,
    StepStatus,
    WorkflowRun,
)
from .registry import compiled_graph, graph_spec
from .tools import CrmTools

logger = logging.getLogger("switchboard.workflows")

SUMMARY_MAX: Final = 4000  # characters of a step's input/output kept on its row
RECURSION_LIMIT: Final = 60
# Each step's checkpoint is saved before the next step starts (see the module's docstring).
DURABILITY: Final[Durability] = "sync"
# Each task's start and end (the step rows), and the state after each step (the run's output).
STREAM_MODES: Final[list[StreamMode]] = ["tasks", "values"]


class TokenCounter(BaseCallbackHandler):
    """Adds up the token usage every chat model reply reports (LangChain's own handler skips
    replies that do not name their model).

    Called in the event loop (``run_inline``: a handler that is not would be sent to a thread
    for every event) and for model events only: LangChain skips it for the graph's and each
    node's start and end."""

    run_inline = True
    ignore_chain = True
    ignore_agent = True
    ignore_retriever = True
    ignore_retry = True
    ignore_custom_event = True

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.tokens_in = 0
        self.tokens_out = 0

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations:
                message = generation.message if isinstance(generation, ChatGeneration) else None
                usage = message.usage_metadata if isinstance(message, AIMessage) else None
                if usage:
                    with self._lock:
                        self.tokens_in += usage.get("input_tokens", 0)
                        self.tokens_out += usage.get("output_tokens", 0)


def _claim(run_id: uuid.UUID, owner: str) -> WorkflowRun | None:
    """Take a queued run: one atomic update (it counts the delivery too), then read it."""
    now = timezone.now()
    taken = WorkflowRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING,
        lease_owner=owner,
        heartbeat_at=now,
        started_at=Coalesce(F("started_at"), Value(now)),
        finished_at=None,
        deliveries=F("deliveries") + 1,
        updated_at=now,
    )
    if not taken:
        return None
    return WorkflowRun.objects.select_related("connection").get(pk=run_id)


def _fenced(run_id: uuid.UUID, owner: str, **changes: Any) -> bool:
    """Update the run only while this worker still holds it."""
    changes.setdefault("updated_at", timezone.now())
    return bool(
        WorkflowRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, lease_owner=owner).update(
            **changes
        )
    )


def summarise(value: Any) -> Any:
    """A step's input or output as stored: JSON, cut to ``SUMMARY_MAX`` characters."""
    raw = orjson.dumps(value, default=_jsonable, option=orjson.OPT_NON_STR_KEYS).decode()
    if len(raw) <= SUMMARY_MAX:
        return orjson.loads(raw)
    return {"truncated": True, "preview": raw[:SUMMARY_MAX]}


def _jsonable(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    content = getattr(value, "content", None)
    if content is not None:  # a LangChain message
        return {"type": getattr(value, "type", "message"), "content": content}
    return str(value)


class StepRecorder:
    """Turns LangGraph's ``tasks`` stream into ``RunStep`` rows as they happen."""

    def __init__(self, run_id: uuid.UUID) -> None:
        self.run_id = run_id
        self.open: dict[str, int] = {}

    async def started(self, payload: dict[str, Any]) -> None:
        """A task started: its step row, running."""
        step = await RunStep.objects.acreate(
            run_id=self.run_id,
            task_id=str(payload.get("id", "")),
            node=str(payload.get("name", ""))[:64],
            status=StepStatus.RUNNING,
            input_summary=summarise(payload.get("input")),
        )
        self.open[str(payload.get("id", ""))] = step.pk

    async def ended(self, payload: dict[str, Any]) -> bool:
        """A task ended: its step row's outcome. Returns whether the run's cancel was
        requested, read in the same trip to the database (steps end where a cancel is
        honoured)."""
        step_id = self.open.pop(str(payload.get("id", "")), None)
        if step_id is None:
            return await _cancel_requested(self.run_id)
        error = payload.get("error")
        interrupts = payload.get("interrupts") or []
        status = (
            StepStatus.FAILED
            if error
            else StepStatus.INTERRUPTED
            if interrupts
            else StepStatus.SUCCEEDED
        )
        code = error.code.value if isinstance(error, AppError) else ErrorCode.INTERNAL_ERROR
        return await sync_to_async(_step_ended)(
            self.run_id,
            step_id,
            status=status,
            output_summary=summarise(payload.get("result")) if not error else None,
            error_code=code if error else "",
            error_message=_message(error) if error else "",
            finished_at=timezone.now(),
        )

    async def close(self, status: StepStatus, error: BaseException | None = None) -> None:
        """End the steps still open (the run stopped under them)."""
        if not self.open:
            return
        await RunStep.objects.filter(pk__in=list(self.open.values())).aupdate(
            status=status,
            error_code=_code(error) if error else "",
            error_message=_message(error) if error else "",
            finished_at=timezone.now(),
        )
        self.open.clear()


# Every step's end runs these two, so they are written once rather than compiled by the ORM each
# time (the compile cost three times what the statements do). Names come from the models;
# every value is a parameter, prepared by its field as the ORM prepares it for a save.
_STEP_END_FIELDS = [
    cast("Field[Any, Any]", RunStep._meta.get_field(name))
    for name in ("status", "output_summary", "error_code", "error_message", "finished_at")
]
_STEP_END_SQL = (
    f"UPDATE {RunStep._meta.db_table} SET "  # noqa: S608
    + ", ".join(f"{field.column} = %s" for field in _STEP_END_FIELDS)
    + f" WHERE {RunStep._meta.pk.column} = %s"
)
_CANCEL_REQUESTED = cast("Field[Any, Any]", WorkflowRun._meta.get_field("cancel_requested"))
_CANCEL_SQL = (
    f"SELECT {_CANCEL_REQUESTED.column} FROM {WorkflowRun._meta.db_table}"  # noqa: S608
    f" WHERE {WorkflowRun._meta.pk.column} = %s"
)


def _step_ended(run_id: uuid.UUID, step_id: int, **outcome: Any) -> bool:
    """Record a step's outcome; whether the run's cancel was requested."""
    params = [f.get_db_prep_save(outcome[f.name], connection) for f in _STEP_END_FIELDS]
    run_pk = WorkflowRun._meta.pk.get_db_prep_value(run_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_STEP_END_SQL, [*params, step_id])
        cursor.execute(_CANCEL_SQL, [run_pk])
        row = cursor.fetchone()
    return bool(row and row[0])


def _code(error: BaseException | None) -> str:
    if isinstance(error, AppError):
        return error.code.value
    if isinstance(error, GraphRecursionError):
        return "recursion_limit"
    return ErrorCode.INTERNAL_ERROR.value


def _message(error: BaseException | None) -> str:
    if isinstance(error, AppError):
        return error.message
    if isinstance(error, GraphRecursionError):
        return "The workflow took more steps than allowed; it was stopped."
    # Unexpected errors keep their type only: their text may hold anything.
    return f"Unexpected {type(error).__name__} in the workflow; see the worker log."


def _approval_for(run: WorkflowRun, interrupt_id: str) -> Approval | None:
    return Approval.objects.filter(run=run, interrupt_id=interrupt_id).first()


def _store_approvals(run: WorkflowRun, owner: str, snapshot: StateSnapshot) -> bool:
    """The run's pending interrupts as ``Approval`` rows; the run waits for them."""
    with transaction.atomic():
        if not _fenced(run.pk, owner, status=RunStatus.WAITING_APPROVAL, lease_owner=""):
            return False
        for pending in snapshot.interrupts:
            value = pending.value if isinstance(pending.value, dict) else {}
            Approval.objects.get_or_create(
                run=run,
                interrupt_id=pending.id,
                defaults={
                    "organization_id": run.organization_id,
                    "summary": str(value.get("summary", ""))[:5000],
                    "proposal": value.get("proposal", []),
                    "diff": value.get("diff", []),
                },
            )
    return True


def _decided(run: WorkflowRun, snapshot: StateSnapshot) -> dict[str, Any] | None:
    """The resume values for the pending interrupts, when every one of them is decided."""
    values: dict[str, Any] = {}
    for pending in snapshot.interrupts:
        approval = _approval_for(run, pending.id)
        if approval is None or approval.status == ApprovalStatus.PENDING:
            return None
        values[pending.id] = {
            "approved": approval.status == ApprovalStatus.APPROVED,
            "comment": approval.comment,
            "decided_by": approval.decided_by,
        }
    return values


async def run_execute(
    run_id: uuid.UUID | str,
    *,
    owner: str,
    on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> str:
    """Execute a queued run until it ends, waits for a person or is cancelled. Returns the
    run's status afterwards, or ``"skipped"`` when it was not this worker's to run."""
    run = await sync_to_async(_claim)(uuid.UUID(str(run_id)), owner)
    if run is None:
        return "skipped"
    if run.cancel_requested:
        await sync_to_async(_finish)(run, owner, RunStatus.CANCELLED)
        return RunStatus.CANCELLED
    heartbeat = asyncio.create_task(_heartbeat(run.pk, owner))
    usage = TokenCounter()
    recorder = StepRecorder(run.pk)
    try:
        return await _execute(run, owner, recorder, usage, on_event)
    except Exception as exc:
        if not isinstance(exc, AppError | GraphRecursionError):
            logger.exception("workflow run %s failed", run.pk)
        await recorder.close(StepStatus.FAILED, exc)
        await sync_to_async(_finish)(
            run, owner, RunStatus.FAILED, error_code=_code(exc), error_message=_message(exc)
        )
        return RunStatus.FAILED
    finally:
        heartbeat.cancel()
        if usage.tokens_in or usage.tokens_out:
            await sync_to_async(_add_usage)(run.pk, usage)


def graph_config(graph: str, thread_id: str, usage: TokenCounter | None = None) -> RunnableConfig:
    """How the runner runs a graph: its thread, the token counter when a model is in use (no
    callbacks otherwise: LangChain then skips its callback events entirely), the step limit."""
    return {
        "configurable": {"thread_id": thread_id},
        "callbacks": [usage] if usage is not None else None,
        "recursion_limit": RECURSION_LIMIT,
        "run_name": graph,
    }


async def _execute(
    run: WorkflowRun,
    owner: str,
    recorder: StepRecorder,
    usage: TokenCounter,
    on_event: Callable[[dict[str, Any]], Awaitable[None]] | None,
) -> str:
    spec = graph_spec(run.graph)
    config = spec.validate_config(run.config)
    model = chat_model()
    if model is not None and not run.llm_model:
        await WorkflowRun.objects.filter(pk=run.pk).aupdate(llm_model=model_name(model))
    actor = Actor(label=f"workflow:{run.graph}:{run.pk}")
    context = RunContext(
        run_id=run.pk,
        thread_id=run.thread_id,
        organization_id=run.organization_id,
        attempt=run.attempt,
        config=config,
        tools=CrmTools(run.connection, actor=actor),
        model=model,
    )
    runnable = graph_config(run.graph, run.thread_id, usage if model is not None else None)
    async with checkpointer() as saver:
        graph = compiled_graph(run.graph).copy({"checkpointer": saver})
        graph_input: Any
        if run.deliveries == 1 and run.attempt == 1:
            # The first delivery of a first attempt: its thread (new with the run) has no
            # checkpoint yet, so there is nothing to read before starting.
            graph_input = spec.validate_input(run.input).model_dump(mode="json")
        else:
            snapshot = await graph.aget_state(runnable)
            if snapshot.created_at is None:
                graph_input = spec.validate_input(run.input).model_dump(mode="json")
            elif snapshot.interrupts:
                decided = await sync_to_async(_decided)(run, snapshot)
                if decided is None:
                    await sync_to_async(_store_approvals)(run, owner, snapshot)
                    return RunStatus.WAITING_APPROVAL
                graph_input = Command(resume=decided)
            elif not snapshot.next:
                # The graph had ended (a crash between its last step and this row's update).
                return await _succeed(run, owner, snapshot.values)
            else:
                graph_input = None  # continue from the checkpoint
        cancelled = interrupted = False
        values: Any = None  # the state after the last step ("values" stream)
        async for mode, event in graph.astream(
            graph_input,
            runnable,
            context=context,
            stream_mode=STREAM_MODES,
            durability=DURABILITY,
        ):
            if mode == "values":
                values = event
                continue
            payload: dict[str, Any] = event if isinstance(event, dict) else {}
            if "input" in payload:  # a task started: ``on_event`` sees it once recorded
                await recorder.started(payload)
                if on_event is not None:
                    await on_event(payload)
                continue
            # A task ended: ``on_event`` sees it before its outcome is recorded, so what it does
            # (a cancel) happens during the step and is honoured as the step ends.
            interrupted = interrupted or bool(payload.get("interrupts"))
            if on_event is not None:
                await on_event(payload)
            if await recorder.ended(payload):
                cancelled = True
                break
        if cancelled:
            await recorder.close(StepStatus.CANCELLED)
            await sync_to_async(_finish)(run, owner, RunStatus.CANCELLED)
            return RunStatus.CANCELLED
        if interrupted or values is None:
            snapshot = await graph.aget_state(runnable)
            if snapshot.interrupts:
                stored = await sync_to_async(_store_approvals)(run, owner, snapshot)
                return RunStatus.WAITING_APPROVAL if stored else "lost_lease"
            values = snapshot.values
        return await _succeed(run, owner, values)


async def _succeed(run: WorkflowRun, owner: str, values: Any) -> str:
    state = values if isinstance(values, dict) else {}
    output = summarise(state.get("output") or {})
    await sync_to_async(_finish)(run, owner, RunStatus.SUCCEEDED, output=output)
    return RunStatus.SUCCEEDED


async def _cancel_requested(run_id: uuid.UUID) -> bool:
    return bool(await WorkflowRun.objects.filter(pk=run_id, cancel_requested=True).aexists())


def _finish(
    run: WorkflowRun,
    owner: str,
    status: RunStatus,
    *,
    output: Any = None,
    error_code: str = "",
    error_message: str = "",
) -> None:
    changes: dict[str, Any] = {
        "status": status,
        "finished_at": timezone.now(),
        "lease_owner": "",
        "error_code": error_code,
        "error_message": error_message,
    }
    if output is not None:
        changes["output"] = output
    if status != RunStatus.CANCELLED:
        if not _fenced(run.pk, owner, **changes):  # one statement: no transaction to open
            return
    else:
        with transaction.atomic():
            if not _fenced(run.pk, owner, **changes):
                return
            run.approvals.filter(status=ApprovalStatus.PENDING).update(
                status=ApprovalStatus.CANCELLED, decided_at=timezone.now()
            )
    logger.info(
        "workflow run %s %s",
        run.pk,
        status,
        extra={"run_id": str(run.pk), "graph": run.graph, "error_code": error_code},
    )


def _add_usage(run_id: uuid.UUID, usage: TokenCounter) -> None:
    if usage.tokens_in or usage.tokens_out:
        WorkflowRun.objects.filter(pk=run_id).update(
            tokens_in=F("tokens_in") + usage.tokens_in,
            tokens_out=F("tokens_out") + usage.tokens_out,
        )


async def _heartbeat(run_id: uuid.UUID, owner: str) -> None:
    """Keep the lease while the graph runs (a third of the lease between beats)."""
    interval = max(settings.WORKFLOW_LEASE_SECONDS / 3, 0.5)
    while True:
        await asyncio.sleep(interval)
        held = await sync_to_async(_fenced)(run_id, owner, heartbeat_at=timezone.now())
        if not held:
            return


def stale_before() -> Any:
    return timezone.now() - timedelta(seconds=settings.WORKFLOW_LEASE_SECONDS)
