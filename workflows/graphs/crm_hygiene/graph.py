"""crm_hygiene: mirror -> duplicate groups and fixes -> review -> proposal -> approval -> write."""

from __future__ import annotations

from typing import Any

from langgraph.graph import START, StateGraph
from langgraph.graph.state import StateGraph as Graph

from ...context import RunContext
from ...registry import GraphSpec, register
from ..common import add_approval_end, retry_policy
from . import nodes
from .state import HygieneConfig, HygieneInput, HygieneState


def build() -> Graph[Any, Any, Any, Any]:
    graph = StateGraph(HygieneState, context_schema=RunContext)
    retry = retry_policy()
    graph.add_node("scan", nodes.scan, retry_policy=retry)
    graph.add_node("review", nodes.review, retry_policy=retry)
    graph.add_node("propose", nodes.propose, retry_policy=retry)
    graph.add_edge(START, "scan")
    graph.add_edge("scan", "review")
    graph.add_edge("review", "propose")
    add_approval_end(graph, after="propose")
    return graph


SPEC = register(
    GraphSpec(
        key="crm_hygiene",
        name="CRM hygiene",
        description=(
            "Finds likely duplicate contacts and companies in the mirror (same mailbox or "
            "domain, alike names within a company) and badly stored emails and domains; "
            "proposes merges (keep one, archive the rest, fill in what the kept one lacks) "
            "and fixes; a model, when configured, decides which groups to merge; a person "
            "approves the writes."
        ),
        build=build,
        config_schema=HygieneConfig,
        input_schema=HygieneInput,
    )
)
