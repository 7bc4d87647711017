"""Workflows in the API: workflows with their schemas, runs with their steps and approvals,
and the payloads of the run event stream."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import NotFound

from .models import Approval, ApprovalStatus, RunStep, Workflow, WorkflowRun, run_duration
from .registry import GraphSpec, graph_spec

API_PREFIX = "/api/v1"

RunStatusName = Literal["queued", "running", "waiting_approval", "succeeded", "failed", "cancelled"]
StepStatusName = Literal["running", "succeeded", "failed", "interrupted", "cancelled"]
ApprovalStatusName = Literal["pending", "approved", "rejected", "cancelled"]
TriggerName = Literal["", "created", "changed"]


def run_url(run_id: uuid.UUID) -> str:
    return f"{API_PREFIX}/runs/{run_id}"


def approval_url(approval_id: uuid.UUID) -> str:
    return f"{API_PREFIX}/approvals/{approval_id}"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@functools.cache
def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON Schema, built once (a few milliseconds each time otherwise)."""
    return model.model_json_schema()


def _spec(graph: str) -> GraphSpec | None:
    try:
        return graph_spec(graph)
    except NotFound:  # a workflow of a graph that is no longer registered
        return None


class ErrorOut(BaseModel):
    code: str = Field(description="One of the API's error codes (`provider_error`, ...).")
    message: str


def _error(code: str, message: str) -> ErrorOut | None:
    return ErrorOut(code=code, message=message) if code or message else None


# --- workflows --------------------------------------------------------------------------------


class WorkflowOut(BaseModel):
    """A registered graph as this organisation configured it."""

    key: str = Field(description="Names the workflow in URLs.")
    graph: str = Field(description="The registered graph it runs.")
    name: str
    description: str = Field(description="What the graph does.")
    enabled: bool
    config: dict[str, Any]
    config_schema: dict[str, Any] | None = Field(
        description="JSON Schema of `config` (null: the graph is no longer registered)."
    )
    input_schema: dict[str, Any] | None = Field(
        description="JSON Schema of a run's `input` (`POST /workflows/{key}/runs`)."
    )
    connection_id: uuid.UUID | None = Field(
        description="The CRM connection it runs on; null: the organisation's only active one."
    )
    schedule_seconds: int | None = Field(description="Runs every this many seconds; null: no.")
    next_run_at: datetime | None
    trigger: TriggerName = Field(
        description="`created` / `changed`: a synced record of `trigger_object_type` starts a run."
    )
    trigger_object_type: str
    trigger_object_types: list[str] = Field(description="The types a trigger may name.")
    runs: dict[str, int] = Field(description="How many runs it has, by status.")
    created_at: datetime
    updated_at: datetime
    runs_url: str

    @classmethod
    def of(cls, workflow: Workflow, counts: dict[str, int] | None = None) -> WorkflowOut:
        spec = _spec(workflow.graph)
        return cls(
            key=workflow.key,
            graph=workflow.graph,
            name=workflow.name,
            description=spec.description if spec else "",
            enabled=workflow.enabled,
            config=workflow.config,
            config_schema=json_schema(spec.config_schema) if spec else None,
            input_schema=json_schema(spec.input_schema) if spec else None,
            connection_id=workflow.connection_id,
            schedule_seconds=workflow.schedule_seconds,
            next_run_at=workflow.next_run_at,
            trigger=workflow.trigger,  # type: ignore[arg-type]
            trigger_object_type=workflow.trigger_object_type,
            trigger_object_types=list(spec.trigger_object_types) if spec else [],
            runs=dict(counts or {}),
            created_at=workflow.created_at,
            updated_at=workflow.updated_at,
            runs_url=f"{API_PREFIX}/workflows/{workflow.key}/runs",
        )


# Fields a PATCH may set to null; the others must have a value when they are sent.
_NULLABLE = frozenset({"connection_id", "schedule_seconds"})


class WorkflowPatchIn(BaseModel):
    """Only the fields sent change. ``config`` is merged into the current config (a key set
    to null goes back to its default) and the result is validated by the graph's schema."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    enabled: bool | None = None
    config: dict[str, Any] | None = None
    connection_id: uuid.UUID | None = Field(
        None, description="null: the organisation's only active connection."
    )
    schedule_seconds: int | None = Field(None, description="At least 60; null: no schedule.")
    trigger: TriggerName | None = None
    trigger_object_type: str | None = Field(None, max_length=16)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> WorkflowPatchIn:
        nulls = sorted(
            name for name in self.model_fields_set - _NULLABLE if getattr(self, name) is None
        )
        if nulls:
            raise ValueError(f"these fields cannot be null: {', '.join(nulls)}")
        return self

    def changes(self, current_config: dict[str, Any]) -> dict[str, Any]:
        """What ``workflow_update`` gets: the fields sent, the config merged."""
        changes = {name: getattr(self, name) for name in self.model_fields_set}
        if self.config is not None:
            merged = dict(current_config) | self.config
            changes["config"] = {k: v for k, v in merged.items() if v is not None}
        return changes


# --- runs -------------------------------------------------------------------------------------


class RunStartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(
        default_factory=dict, description="Validated by the workflow's `input_schema`."
    )
    connection_id: uuid.UUID | None = Field(
        None, description="The connection to run on (default: the workflow's)."
    )


class StepOut(BaseModel):
    """One node execution (a node that ran again has a row per execution)."""

    id: int = Field(description="Increases in the order the steps started.")
    node: str
    task_id: str
    status: StepStatusName
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    input_summary: Any = Field(description="The node's input as JSON (cut past 4000 characters).")
    output_summary: Any = Field(description="What the node returned (cut the same way).")
    error: ErrorOut | None

    @classmethod
    def of(cls, step: RunStep) -> StepOut:
        return cls(
            id=step.pk,
            node=step.node,
            task_id=step.task_id,
            status=step.status,  # type: ignore[arg-type]
            started_at=step.started_at,
            finished_at=step.finished_at,
            duration_ms=None if step.duration_ms is None else round(step.duration_ms, 1),
            input_summary=step.input_summary,
            output_summary=step.output_summary,
            error=_error(step.error_code, step.error_message),
        )


class ApprovalOut(BaseModel):
    """A CRM write an agent proposed, waiting for (or after) a person's decision."""

    id: uuid.UUID
    run_id: uuid.UUID
    workflow: str = Field(description="The workflow's key.")
    graph: str
    status: ApprovalStatusName
    summary: str = Field(description="What the agent wants to do, in words.")
    proposal: list[dict[str, Any]] = Field(
        description="The writes: operation, object_type, record_id, payload, reason."
    )
    diff: list[dict[str, Any]] = Field(
        description="Per write: the field-level changes (`field`, `before`, `after`) against "
        "the mirror when it was proposed."
    )
    decided_by: str
    decided_at: datetime | None
    comment: str
    created_at: datetime
    url: str
    approve_url: str | None = Field(description="While pending: POST here to approve.")
    reject_url: str | None = Field(description="While pending: POST here to reject.")

    @classmethod
    def of(cls, approval: Approval, run: WorkflowRun | None = None) -> ApprovalOut:
        """``run``: the approval's run with its workflow loaded (default: ``approval.run``)."""
        run = run or approval.run
        url = approval_url(approval.pk)
        pending = approval.status == ApprovalStatus.PENDING
        return cls(
            id=approval.pk,
            run_id=approval.run_id,
            workflow=run.workflow.key,
            graph=run.graph,
            status=approval.status,  # type: ignore[arg-type]
            summary=approval.summary,
            proposal=approval.proposal,
            diff=approval.diff,
            decided_by=approval.decided_by,
            decided_at=approval.decided_at,
            comment=approval.comment,
            created_at=approval.created_at,
            url=url,
            approve_url=f"{url}/approve" if pending else None,
            reject_url=f"{url}/reject" if pending else None,
        )


class RunOut(BaseModel):
    """A run of a workflow and where it stands."""

    id: uuid.UUID
    workflow: str = Field(description="The workflow's key.")
    graph: str
    status: RunStatusName
    trigger: str = Field(description="api, admin, schedule or sync")
    requested_by: str
    connection_id: uuid.UUID
    input: dict[str, Any]
    output: Any = Field(description="When it succeeded: what it did.")
    error: ErrorOut | None = Field(description="When it failed.")
    attempt: int = Field(description="1, or the place of this retry in its chain.")
    retry_of: uuid.UUID | None = Field(description="The run this one retries.")
    cancel_requested: bool
    llm_model: str = Field(description="The chat model used; empty: the deterministic path.")
    tokens_in: int
    tokens_out: int
    created_at: datetime
    started_at: datetime | None = Field(description="When a worker first took it.")
    finished_at: datetime | None
    duration_ms: float | None = Field(
        description=(
            "From `started_at` to `finished_at` (to now while it runs), time waiting for "
            "approval included."
        ),
    )
    url: str
    events_url: str = Field(description="Its server-sent event stream.")

    @classmethod
    def of(cls, run: WorkflowRun) -> RunOut:
        """``run`` with its workflow loaded (``select_related``)."""
        return cls(**cls._fields_of(run))

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> RunOut:
        """A row of ``WorkflowRun.objects.values(*RUN_COLUMNS)``: no model instances to build."""
        return cls(**_run_fields(row))

    @staticmethod
    def _fields_of(run: WorkflowRun) -> dict[str, Any]:
        row = {column: getattr(run, column) for column in RUN_COLUMNS if "__" not in column}
        return _run_fields(row | {"workflow__key": run.workflow.key})


# What a run's summary reads (``RunOut.of_row``), workflow key included.
RUN_COLUMNS = (
    "id",
    "workflow__key",
    "graph",
    "status",
    "trigger",
    "requested_by",
    "connection_id",
    "input",
    "output",
    "error_code",
    "error_message",
    "attempt",
    "retry_of_id",
    "cancel_requested",
    "llm_model",
    "tokens_in",
    "tokens_out",
    "created_at",
    "started_at",
    "finished_at",
)


def _run_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    started, finished = row["started_at"], row["finished_at"]
    duration = run_duration(started, finished)
    url = run_url(row["id"])
    return {
        "id": row["id"],
        "workflow": row["workflow__key"],
        "graph": row["graph"],
        "status": row["status"],
        "trigger": row["trigger"],
        "requested_by": row["requested_by"],
        "connection_id": row["connection_id"],
        "input": row["input"],
        "output": row["output"],
        "error": _error(row["error_code"], row["error_message"]),
        "attempt": row["attempt"],
        "retry_of": row["retry_of_id"],
        "cancel_requested": row["cancel_requested"],
        "llm_model": row["llm_model"],
        "tokens_in": row["tokens_in"],
        "tokens_out": row["tokens_out"],
        "created_at": row["created_at"],
        "started_at": started,
        "finished_at": finished,
        "duration_ms": _ms(duration.total_seconds() if duration is not None else None),
        "url": url,
        "events_url": f"{url}/events",
    }


class RunDetailOut(RunOut):
    """A run with its timeline: steps in the order they started, its approvals, retries."""

    config: dict[str, Any] = Field(description="The workflow's config when the run started.")
    deliveries: int = Field(description="Times a worker took it (more than one: resumed).")
    steps: list[StepOut]
    approvals: list[ApprovalOut]
    pending_approval: ApprovalOut | None = Field(
        description="The decision the run waits for (with the proposal and its diff)."
    )
    retries: list[uuid.UUID] = Field(description="Runs that retried this one.")

    @classmethod
    def of_detail(
        cls,
        run: WorkflowRun,
        *,
        steps: list[RunStep],
        approvals: list[Approval],
        retries: list[uuid.UUID],
    ) -> RunDetailOut:
        approvals_out = [ApprovalOut.of(a, run) for a in approvals]
        pending = next((a for a in approvals_out if a.status == "pending"), None)
        return cls(
            **cls._fields_of(run),
            config=run.config,
            deliveries=run.deliveries,
            steps=[StepOut.of(s) for s in steps],
            approvals=approvals_out,
            pending_approval=pending,
            retries=retries,
        )


class ApprovalDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=5000, description="Why; kept with the decision.")


class ApprovalDecidedOut(BaseModel):
    approval: ApprovalOut
    run: RunOut = Field(description="The run, queued again to continue on the decision.")


# --- the event stream (GET /runs/{id}/events) -------------------------------------------------


class StepEvent(StepOut):
    """``event: step``: a step appeared or changed status."""

    run_id: uuid.UUID


class StatusEvent(BaseModel):
    """``event: status``: the run's status changed (sent first on every connection)."""

    run_id: uuid.UUID
    status: RunStatusName
    attempt: int
    cancel_requested: bool
    approval_id: uuid.UUID | None = Field(
        description="While `waiting_approval`: the approval the run waits for."
    )
    approval: ApprovalOut | None
    error: ErrorOut | None


class EndEvent(BaseModel):
    """``event: end``: the run ended; the stream closes after it."""

    run_id: uuid.UUID
    status: RunStatusName
    error: ErrorOut | None
    output: Any
    finished_at: datetime | None
    duration_ms: float | None

    @classmethod
    def of(cls, run: WorkflowRun) -> EndEvent:
        duration = run.duration
        return cls(
            run_id=run.pk,
            status=run.status,  # type: ignore[arg-type]
            error=_error(run.error_code, run.error_message),
            output=run.output,
            finished_at=run.finished_at,
            duration_ms=_ms(duration.total_seconds() if duration is not None else None),
        )
