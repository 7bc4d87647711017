"""deal_followup: idle open deals -> drafts -> proposal -> approval -> tasks or notes."""

from __future__ import annotations

from typing import Any

from langgraph.graph import START, StateGraph
from langgraph.graph.state import StateGraph as Graph

from ...context import RunContext
from ...registry import GraphSpec, register
from ..common import add_approval_end, retry_policy
from . import nodes
from .state import FollowupConfig, FollowupInput, FollowupState


def build() -> Graph[Any, Any, Any, Any]:
    graph = StateGraph(FollowupState, context_schema=RunContext)
    retry = retry_policy()
    graph.add_node("find", nodes.find, retry_policy=retry)
    graph.add_node("draft", nodes.draft, retry_policy=retry)
    graph.add_node("propose", nodes.propose)
    graph.add_edge(START, "find")
    graph.add_edge("find", "draft")
    graph.add_edge("draft", "propose")
    add_approval_end(graph, after="propose")
    return graph


SPEC = register(
    GraphSpec(
        key="deal_followup",
        name="Deal follow-up",
        description=(
            "Finds open deals with no activity for idle_days and drafts a follow-up for each "
            "(a task for the deal's owner, or a note), from a template or by the model when "
            "one is configured; a person approves before anything is logged in the CRM."
        ),
        build=build,
        config_schema=FollowupConfig,
        input_schema=FollowupInput,
    )
)
