"""The end every workflow shares: proposed writes -> (approval) -> the outbox.

A graph's analysis nodes fill ``proposals`` (``ProposedWrite`` dicts) and ``summary``; then
``approval_gate`` pauses the run with ``interrupt()`` (the runner turns the interrupt into an
``Approval`` row with the field-level diff against the mirror) unless the workflow's config
says ``require_approval: false``; an approved proposal goes to ``apply_writes``, which sends
each write through the outbox under a key tied to the thread and the write's index, so no
execution of that step writes twice.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from django.conf import settings
from langgraph.graph import END
from langgraph.graph.state import StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy, interrupt
from pydantic import BaseModel, ConfigDict

from core.errors import AppError

from ..context import RunContext
from ..tools import ProposedWrite, mirror_fields, write_key

APPLY_NODE = "apply_writes"


def retryable(exc: Exception) -> bool:
    """Node retries are for failures that can pass: coded retryable errors (provider outages,
    rate limits) and network errors; a validation error or a refusal fails at once."""
    import httpx

    if isinstance(exc, AppError):
        return exc.retryable
    return isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError)


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        max_attempts=settings.WORKFLOW_NODE_ATTEMPTS,
        initial_interval=0.5,
        backoff_factor=2.0,
        max_interval=10.0,
        jitter=True,
        retry_on=retryable,
    )


class WorkflowInput(BaseModel):
    """Base of every graph's run input: an unknown key is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class WorkflowConfig(BaseModel):
    """Config every workflow has (unknown keys are refused: a typo must not pass)."""

    model_config = ConfigDict(extra="forbid")

    require_approval: bool = True


class Decision(TypedDict):
    approved: bool
    comment: NotRequired[str]
    decided_by: NotRequired[str]


class ProposalState(TypedDict, total=False):
    """The keys the shared end of every graph reads and writes."""

    proposals: list[dict[str, Any]]
    summary: str
    decision: Decision | None
    writes: list[dict[str, Any]]
    output: dict[str, Any]


class FieldChange(BaseModel):
    field: str
    before: Any = None
    after: Any = None


class WriteDiff(BaseModel):
    index: int
    operation: str
    object_type: str
    record_id: str | None
    changes: list[FieldChange]


async def proposal_diff(connection_id: Any, proposals: list[ProposedWrite]) -> list[WriteDiff]:
    """Each proposed write against the mirror: the fields an update changes (before/after),
    everything a create sets, and for an archive the record that goes."""
    diffs: list[WriteDiff] = []
    for index, write in enumerate(proposals):
        before: dict[str, Any] = {}
        if write.record_id and write.object_type in ("contact", "company", "deal"):
            try:
                before = await mirror_fields(connection_id, write.object_type, write.record_id)
            except AppError:
                before = {}
        if write.operation == "archive":
            changes = [FieldChange(field=k, before=v) for k, v in before.items() if v is not None]
        else:
            changes = [
                FieldChange(field=k, before=before.get(k), after=v)
                for k, v in write.payload.items()
                if k != "properties" and before.get(k) != v
            ]
            for k, v in (write.payload.get("properties") or {}).items():
                changes.append(FieldChange(field=f"properties.{k}", after=v))
        diffs.append(
            WriteDiff(
                index=index,
                operation=write.operation,
                object_type=write.object_type,
                record_id=write.record_id,
                changes=changes,
            )
        )
    return diffs


def proposals_of(state: ProposalState) -> list[ProposedWrite]:
    return [ProposedWrite.model_validate(p) for p in state.get("proposals") or []]


async def approval_gate(state: ProposalState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Ask a person (``interrupt``) unless there is nothing to write or no approval is needed.
    The interrupt's value is what the runner stores on the ``Approval``; the value the run is
    resumed with is the ``Decision``."""
    proposals = proposals_of(state)
    if not proposals:
        return {"decision": None}
    config = runtime.context.config
    if not getattr(config, "require_approval", True):
        return {"decision": Decision(approved=True, comment="", decided_by="auto")}
    diff = await proposal_diff(runtime.context.tools.connection.pk, proposals)
    decision: Decision = interrupt(
        {
            "kind": "approval",
            "summary": state.get("summary", ""),
            "proposal": [p.model_dump(mode="json") for p in proposals],
            "diff": [d.model_dump(mode="json") for d in diff],
        }
    )
    return {"decision": decision}


def after_gate(state: ProposalState) -> Literal["apply_writes", "finish"]:
    decision = state.get("decision")
    return "apply_writes" if decision and decision.get("approved") else "finish"


async def apply_writes(state: ProposalState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Send every approved write. A write the provider refused fails the step (and the run)
    with its code; the others stay written, and a retry finds them by their keys."""
    tools = runtime.context.tools
    results: list[dict[str, Any]] = []
    failures: list[AppError] = []
    for index, write in enumerate(proposals_of(state)):
        key = write_key(runtime.context.thread_id, APPLY_NODE, index)
        result = await tools.submit(write, key=key)
        if result.error is not None:
            failures.append(result.error)
            results.append(result.error.details.get("write") or {"error": result.error.message})
        else:
            results.append(result.unwrap().model_dump(mode="json"))
    if failures:
        first = failures[0]
        first.details = {**first.details, "writes": results, "failed": len(failures)}
        raise first
    return {"writes": results}


async def finish(state: ProposalState) -> dict[str, Any]:
    """The run's output: what was proposed, decided and written."""
    decision = state.get("decision")
    proposals = state.get("proposals") or []
    outcome = (
        "nothing_to_do"
        if not proposals
        else "written"
        if decision and decision.get("approved")
        else "rejected"
    )
    # The graph's own figures first: the shared keys below always mean the same thing.
    return {
        "output": {
            **(state.get("output") or {}),
            "outcome": outcome,
            "summary": state.get("summary", ""),
            "proposals": len(proposals),
            "writes": state.get("writes") or [],
            "comment": decision.get("comment", "") if decision else "",
        }
    }


def add_approval_end(graph: StateGraph[Any, Any, Any, Any], *, after: str) -> None:
    """Wire the shared end after the graph's ``after`` node: approval -> apply_writes (on
    approval) -> finish -> END."""
    graph.add_node("approval", approval_gate)
    graph.add_node(APPLY_NODE, apply_writes, retry_policy=retry_policy())
    graph.add_node("finish", finish)
    graph.add_edge(after, "approval")
    graph.add_conditional_edges("approval", after_gate)
    graph.add_edge(APPLY_NODE, "finish")
    graph.add_edge("finish", END)
