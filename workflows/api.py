"""Workflows under /api/v1: the organisation's workflows, their runs (start, follow, cancel,
retry) and the approvals runs wait for.

Who may do what: every member and API key of the organisation reads everything and may start,
cancel and retry runs and decide approvals (each is audited with who did it); changing a
workflow (``PATCH``) is for owners and admins. Another organisation's workflow, run or
approval is a 404.

No ``from __future__ import annotations``: Ninja reads the real types of these signatures.
"""

import uuid
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import Query, Router, Status
from ninja.params.functions import Header
from pydantic import BaseModel, Field, model_validator

from accounts.auth import Principal, principal_of
from accounts.models import Organization
from core.envelope import ERROR_STATUSES, Envelope, ErrorEnvelope, api_responses, ok
from core.errors import NotFound
from core.pagination import PageParams, UtcDatetime, paginate

from .events import parse_last_event_id, run_events
from .models import ApprovalStatus, RunStatus, Workflow, WorkflowRun
from .registry import graph_specs
from .schemas import (
    RUN_COLUMNS,
    ApprovalDecidedOut,
    ApprovalDecisionIn,
    ApprovalOut,
    EndEvent,
    RunDetailOut,
    RunOut,
    RunStartIn,
    RunStatusName,
    StatusEvent,
    StepEvent,
    WorkflowOut,
    WorkflowPatchIn,
    run_url,
)
from .selectors import (
    approval_for,
    approval_list,
    run_approval_list,
    run_for,
    run_list,
    run_retry_ids,
    run_step_list,
    workflow_for,
    workflow_list,
    workflow_run_counts,
)
from .services import (
    approval_decide,
    arun_start,
    run_cancel,
    run_retry,
    workflow_ensure_defaults,
    workflow_update,
)

router = Router(tags=["workflows"])


# --- helpers ----------------------------------------------------------------------------------


async def _ensure_defaults(organization_id: uuid.UUID) -> None:
    organization = await Organization.objects.aget(pk=organization_id)
    await sync_to_async(workflow_ensure_defaults)(organization)


async def _workflow(p: Principal, key: str) -> Workflow:
    """The caller's workflow; a registered graph's default workflow is made on first use."""
    try:
        return await workflow_for(organization_id=p.organization_id, key=key)
    except NotFound:
        if key not in {spec.key for spec in graph_specs()}:
            raise
    await _ensure_defaults(p.organization_id)
    return await workflow_for(organization_id=p.organization_id, key=key)


async def _workflow_out(workflow: Workflow) -> WorkflowOut:
    counts = await workflow_run_counts(
        organization_id=workflow.organization_id, workflow_id=workflow.pk
    )
    return WorkflowOut.of(workflow, counts.get(workflow.pk))


def _detail_of(run: WorkflowRun) -> RunDetailOut:
    steps = list(run_step_list(run_id=run.pk))
    approvals = list(run_approval_list(run_id=run.pk))
    retries = list(run_retry_ids(run_id=run.pk))
    return RunDetailOut.of_detail(run, steps=steps, approvals=approvals, retries=retries)


async def _run_detail(run: WorkflowRun) -> RunDetailOut:
    """The run with its steps, approvals and retries (three reads, one database hop)."""
    return await sync_to_async(_detail_of)(run)


async def _accepted(response: HttpResponse, run: WorkflowRun) -> Status[Envelope[RunDetailOut]]:
    """202 with the run just queued (it has no steps, approvals or retries yet) and
    ``Location`` pointing at it, to follow what a worker makes of it."""
    response["Location"] = run_url(run.pk)
    return Status(202, ok(RunDetailOut.of_detail(run, steps=[], approvals=[], retries=[])))


# --- workflows --------------------------------------------------------------------------------


@router.get(
    "/workflows",
    response=api_responses(Envelope[list[WorkflowOut]]),
    summary="The organisation's workflows, with their config and input schemas",
    description="One per registered graph at least (made with its default config on first "
    "use), with run counts by status.",
)
async def workflows_list(request: HttpRequest) -> Envelope[list[WorkflowOut]]:
    p = principal_of(request)
    await _ensure_defaults(p.organization_id)
    counts = await workflow_run_counts(organization_id=p.organization_id)
    workflows = [w async for w in workflow_list(organization_id=p.organization_id)]
    return ok([WorkflowOut.of(w, counts.get(w.pk)) for w in workflows])


@router.get(
    "/workflows/{key}",
    response=api_responses(Envelope[WorkflowOut]),
    summary="A workflow, its config and the JSON schemas of its config and run input",
)
async def workflows_get(request: HttpRequest, key: str) -> Envelope[WorkflowOut]:
    workflow = await _workflow(principal_of(request), key)
    return ok(await _workflow_out(workflow))


@router.patch(
    "/workflows/{key}",
    response=api_responses(Envelope[WorkflowOut]),
    summary="Change a workflow (owners and admins)",
    description="Send only what changes. `config` is merged into the current config (a key "
    "set to null returns to its default) and validated by the graph's `config_schema`; "
    "`schedule_seconds` is at least 60 (null: no schedule); a `trigger` needs a "
    "`trigger_object_type` the graph supports.",
)
async def workflows_update(
    request: HttpRequest, key: str, body: WorkflowPatchIn
) -> Envelope[WorkflowOut]:
    p = principal_of(request)
    workflow = await _workflow(p, key)
    p.require_manager()
    changes = body.changes(workflow.config)
    if changes:  # an empty PATCH changes (and audits) nothing
        workflow = await sync_to_async(workflow_update)(
            workflow=workflow, actor=p.actor, changes=changes
        )
    return ok(await _workflow_out(workflow))


@router.post(
    "/workflows/{key}/runs",
    response=api_responses(Envelope[RunDetailOut], status=202),
    summary="Start a run (any member); 202 with the queued run, `Location` to follow it",
    description="The input is validated by the workflow's `input_schema` (422 "
    "`validation_failed` with `details.fields`); a disabled workflow is 409 `conflict`. "
    "Follow the run at `Location`, or its events at `events_url`.",
)
async def runs_start(
    request: HttpRequest, key: str, response: HttpResponse, body: RunStartIn | None = None
) -> Status[Envelope[RunDetailOut]]:
    p = principal_of(request)
    body = body or RunStartIn()
    workflow = await _workflow(p, key)
    run = await arun_start(
        workflow=workflow,
        actor=p.actor,
        trigger="api",
        input=body.input,
        connection_id=body.connection_id,
    )
    return await _accepted(response, run)


# --- runs -------------------------------------------------------------------------------------


class RunFilters(BaseModel):
    status: RunStatusName | None = None
    workflow: str | None = Field(None, max_length=64, description="A workflow's key.")
    graph: str | None = Field(None, max_length=64)
    trigger: str | None = Field(None, max_length=16, description="api, admin, schedule or sync")
    # A time without an offset is taken as UTC (naive times are ambiguous on a server).
    created_after: UtcDatetime | None = Field(
        None, description="ISO 8601; runs created at or after it (no offset: UTC)."
    )
    created_before: UtcDatetime | None = Field(
        None, description="ISO 8601; runs created before it (no offset: UTC)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> "RunFilters":
        if self.created_after and self.created_before and self.created_after >= self.created_before:
            raise ValueError("created_after must be before created_before")
        return self


@router.get(
    "/runs",
    response=api_responses(Envelope[list[RunOut]]),
    summary="Runs of the organisation's workflows, newest first",
)
async def runs_list(
    request: HttpRequest, filters: Query[RunFilters], page: Query[PageParams]
) -> Envelope[list[RunOut]]:
    p = principal_of(request)
    runs = run_list(
        organization_id=p.organization_id,
        status=RunStatus(filters.status) if filters.status else None,
        workflow_key=filters.workflow,
        graph=filters.graph,
        trigger=filters.trigger,
        created_after=filters.created_after,
        created_before=filters.created_before,
    )
    rows, meta = await paginate(runs.values(*RUN_COLUMNS), page)
    return ok([RunOut.of_row(r) for r in rows], pagination=meta)


@router.get(
    "/runs/{run_id}",
    response=api_responses(Envelope[RunDetailOut]),
    summary="A run with its steps, approvals (the pending one with its diff) and timings",
)
async def runs_get(request: HttpRequest, run_id: str) -> Envelope[RunDetailOut]:
    p = principal_of(request)
    run = await run_for(organization_id=p.organization_id, run_id=run_id)
    return ok(await _run_detail(run))


_EVENTS_DOC = """Server-sent events (`text/event-stream`) until the run ends, then the stream
closes. Events (each `data:` is one line of JSON):

- `event: step`: a step appeared or changed status (a `StepOut` plus `run_id`). Its `id:` only
  grows; reconnect with `Last-Event-ID` (or `?last_event_id=`) to resume after it.
- `event: status`: the run's status changed (sent first on every connection): `run_id`,
  `status`, `attempt`, `cancel_requested`, `approval_id` and `approval` while it waits for
  approval, `error` when it failed.
- `event: end`: the run ended: `run_id`, `status`, `error`, `output`, `finished_at`,
  `duration_ms`.

A comment (`: keep-alive`) is sent every 15 s of silence. A stream open for an hour without an
end closes; reconnect with `Last-Event-ID`. Errors before the stream starts (401, 404) are the
usual JSON envelope."""

_EVENTS_EXAMPLE = (
    "retry: 2000\n\n"
    'event: status\ndata: {"run_id":"…","status":"running",…}\n\n'
    'id: 84\nevent: step\ndata: {"id":42,"node":"load","status":"running",…}\n\n'
    'id: 85\nevent: step\ndata: {"id":42,"node":"load","status":"succeeded",…}\n\n'
    'event: end\ndata: {"run_id":"…","status":"succeeded",…}\n\n'
)


def _event(name: str, model: type[BaseModel], *, with_id: bool) -> dict[str, Any]:
    """One kind of event as a parsed server-sent event: its name, and a ``data`` line of JSON
    in the shape of ``model`` (documented in the components by ``config.api``)."""
    properties: dict[str, Any] = {
        "event": {"const": name},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": f"#/components/schemas/{model.__name__}"},
        },
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer", "minimum": 0},
    }
    return {
        "type": "object",
        "title": f"{name} event",
        "required": ["event", "data", *(["id"] if with_id else [])],
        "properties": properties,
    }


# Each event of the stream (OpenAPI before 3.2: a text/event-stream ``schema`` describes one
# event). A status or end event carries no id of its own; after a step event, the client's
# last event id (``id``) is that step's.
EVENT_MODELS: tuple[type[BaseModel], ...] = (StatusEvent, StepEvent, EndEvent)
_EVENT_SCHEMA = {
    "oneOf": [
        _event("status", StatusEvent, with_id=False),
        _event("step", StepEvent, with_id=True),
        _event("end", EndEvent, with_id=False),
    ]
}


@router.get(
    "/runs/{run_id}/events",
    response={ERROR_STATUSES - {200}: ErrorEnvelope},
    summary="Follow a run: its steps and status changes as server-sent events",
    description=_EVENTS_DOC,
    openapi_extra={
        "responses": {
            200: {
                # The example is a whole stream; the schema describes one event of it.
                "description": f"The event stream, for example:\n\n```\n{_EVENTS_EXAMPLE}```",
                "content": {"text/event-stream": {"schema": _EVENT_SCHEMA}},
            }
        }
    },
)
async def runs_events(
    request: HttpRequest,
    run_id: str,
    last_event_id_header: Annotated[
        str | None,
        Header(
            None,
            alias="Last-Event-ID",
            description="Resume after this event (EventSource sends it when it reconnects).",
        ),
    ] = None,
    last_event_id: str | None = None,
) -> StreamingHttpResponse:
    p = principal_of(request)
    run = await run_for(organization_id=p.organization_id, run_id=run_id)
    after = parse_last_event_id(last_event_id_header or last_event_id)
    response = StreamingHttpResponse(
        run_events(run.pk, last_event_id=after), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


@router.post(
    "/runs/{run_id}/cancel",
    response={
        **api_responses(Envelope[RunDetailOut]),
        202: Envelope[RunDetailOut],
    },
    summary="Cancel a run (any member): 200 when it stopped, 202 when it stops after its step",
    description="A queued run or one waiting for approval is cancelled at once (200); a "
    "running one stops between two steps (202, `cancel_requested`). An ended run is 409.",
)
async def runs_cancel(request: HttpRequest, run_id: str) -> Status[Envelope[RunDetailOut]]:
    p = principal_of(request)
    run = await run_for(organization_id=p.organization_id, run_id=run_id)
    cancelled = await sync_to_async(run_cancel)(run=run, actor=p.actor)
    fresh = await run_for(organization_id=p.organization_id, run_id=cancelled.pk)
    return Status(200 if fresh.is_terminal else 202, ok(await _run_detail(fresh)))


@router.post(
    "/runs/{run_id}/retry",
    response=api_responses(Envelope[RunDetailOut], status=202),
    summary="Retry a failed or cancelled run (any member); 202 with the new run",
    description="The new run continues the old one from its last checkpoint (`attempt` + 1, "
    "`retry_of`); `Location` points at it. Any other status, or a run already retried, is "
    "409.",
)
async def runs_retry(
    request: HttpRequest, run_id: str, response: HttpResponse
) -> Status[Envelope[RunDetailOut]]:
    p = principal_of(request)
    run = await run_for(organization_id=p.organization_id, run_id=run_id)
    retry = await sync_to_async(run_retry)(run=run, actor=p.actor)
    return await _accepted(response, retry)


# --- approvals --------------------------------------------------------------------------------


class ApprovalFilters(BaseModel):
    status: ApprovalStatus | None = Field(None, description="pending, approved, rejected, ...")
    run_id: uuid.UUID | None = None
    workflow: str | None = Field(None, max_length=64, description="A workflow's key.")


@router.get(
    "/approvals",
    response=api_responses(Envelope[list[ApprovalOut]]),
    summary="Approvals, newest first (`?status=pending`: what waits for a person)",
)
async def approvals_list(
    request: HttpRequest, filters: Query[ApprovalFilters], page: Query[PageParams]
) -> Envelope[list[ApprovalOut]]:
    p = principal_of(request)
    approvals = approval_list(
        organization_id=p.organization_id,
        status=filters.status,
        run_id=filters.run_id,
        workflow_key=filters.workflow,
    )
    rows, meta = await paginate(approvals, page)
    return ok([ApprovalOut.of(a) for a in rows], pagination=meta)


@router.get(
    "/approvals/{approval_id}",
    response=api_responses(Envelope[ApprovalOut]),
    summary="An approval: the proposed writes and their field-level diff",
)
async def approvals_get(request: HttpRequest, approval_id: str) -> Envelope[ApprovalOut]:
    p = principal_of(request)
    approval = await approval_for(organization_id=p.organization_id, approval_id=approval_id)
    return ok(ApprovalOut.of(approval))


async def _decide(
    request: HttpRequest, approval_id: str, body: ApprovalDecisionIn | None, *, approved: bool
) -> Envelope[ApprovalDecidedOut]:
    p = principal_of(request)
    approval = await approval_for(organization_id=p.organization_id, approval_id=approval_id)
    await sync_to_async(approval_decide)(
        approval=approval, approved=approved, actor=p.actor, comment=body.comment if body else ""
    )
    decided = await approval_for(organization_id=p.organization_id, approval_id=approval.pk)
    return ok(ApprovalDecidedOut(approval=ApprovalOut.of(decided), run=RunOut.of(decided.run)))


_DECIDE_DOC = (
    "Any member may decide. The run is queued to continue on the decision once no approval "
    "of it is pending. An approval already decided (or cancelled with its run) is 409."
)


@router.post(
    "/approvals/{approval_id}/approve",
    response=api_responses(Envelope[ApprovalDecidedOut]),
    summary="Approve the proposed writes; the run continues and writes them",
    description=_DECIDE_DOC,
)
async def approvals_approve(
    request: HttpRequest, approval_id: str, body: ApprovalDecisionIn | None = None
) -> Envelope[ApprovalDecidedOut]:
    return await _decide(request, approval_id, body, approved=True)


@router.post(
    "/approvals/{approval_id}/reject",
    response=api_responses(Envelope[ApprovalDecidedOut]),
    summary="Reject the proposed writes; the run continues without writing",
    description=_DECIDE_DOC,
)
async def approvals_reject(
    request: HttpRequest, approval_id: str, body: ApprovalDecisionIn | None = None
) -> Envelope[ApprovalDecidedOut]:
    return await _decide(request, approval_id, body, approved=False)
