"""What the workflow benchmark (``bench/workflows.py``) runs in the real worker: a three-node
graph that calls no model and no provider, and a no-op Celery task as the reference round trip.

Loaded only when ``WORKFLOW_GRAPH_MODULES`` names this module (the benchmark sets it for its
worker and for itself): Switchboard never registers them otherwise.
"""

from __future__ import annotations

from typing import Any, TypedDict

import redis
from celery import shared_task
from django.conf import settings
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import StateGraph as Graph
from langgraph.runtime import Runtime
from pydantic import Field

from workflows.context import RunContext
from workflows.graphs.common import WorkflowConfig, WorkflowInput, retry_policy
from workflows.registry import GraphSpec, register

GRAPH_KEY = "bench_three"
NOOP_TASK = "bench.noop"


class ThreeInput(WorkflowInput):
    values: list[float] = Field(default_factory=lambda: [3.0, 1.0, 2.0], max_length=1000)


class ThreeConfig(WorkflowConfig):
    require_approval: bool = False


class ThreeState(TypedDict, total=False):
    values: list[float]
    ordered: list[float]
    stats: dict[str, float]
    output: dict[str, Any]


# The node functions, as a graph of Switchboard's has them (async, state and runtime in, a
# partial state out); ``bench/workflows.py`` also calls them directly as the reference.


async def order(state: ThreeState, runtime: Runtime[RunContext] | None = None) -> dict[str, Any]:
    return {"ordered": sorted(state.get("values", []))}


async def measure(state: ThreeState, runtime: Runtime[RunContext] | None = None) -> dict[str, Any]:
    ordered = state.get("ordered", [])
    middle = ordered[len(ordered) // 2] if ordered else 0.0
    total = sum(ordered)
    return {"stats": {"count": len(ordered), "total": total, "median": middle}}


async def report(state: ThreeState, runtime: Runtime[RunContext] | None = None) -> dict[str, Any]:
    return {"output": {"summary": "measured", **state.get("stats", {})}}


NODES = (("order", order), ("measure", measure), ("report", report))


def build() -> Graph[Any, Any, Any, Any]:
    graph = StateGraph(ThreeState, context_schema=RunContext)
    retry = retry_policy()
    for name, node in NODES:
        graph.add_node(name, node, retry_policy=retry)
    graph.add_edge(START, "order")
    graph.add_edge("order", "measure")
    graph.add_edge("measure", "report")
    graph.add_edge("report", END)
    return graph


SPEC = register(
    GraphSpec(
        key=GRAPH_KEY,
        name="Benchmark: three nodes",
        description="Orders numbers, measures them, reports: no model, no provider calls.",
        build=build,
        config_schema=ThreeConfig,
        input_schema=ThreeInput,
    )
)

_redis: redis.Redis | None = None


@shared_task(name=NOOP_TASK)
def noop_task(reply_to: str) -> None:
    """Does nothing but say it ran: one push on the Redis list the benchmark waits on."""
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL)
    _redis.rpush(reply_to, b"1")
