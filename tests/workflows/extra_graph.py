"""A graph outside workflows.graphs, registered only when ``WORKFLOW_GRAPH_MODULES`` names this
module (test_registry)."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import StateGraph as Graph

from workflows.graphs.common import WorkflowConfig, WorkflowInput
from workflows.registry import GraphSpec, register


class EchoState(TypedDict, total=False):
    output: dict[str, Any]


async def echo(state: EchoState) -> dict[str, Any]:
    return {"output": {"echoed": True}}


def build() -> Graph[Any, Any, Any, Any]:
    graph = StateGraph(EchoState)
    graph.add_node("echo", echo)
    graph.add_edge(START, "echo")
    graph.add_edge("echo", END)
    return graph


register(
    GraphSpec(
        key="extra_echo",
        name="Extra echo",
        description="Registered from WORKFLOW_GRAPH_MODULES.",
        build=build,
        config_schema=WorkflowConfig,
        input_schema=WorkflowInput,
    )
)
