"""lead_qualification: contact + company -> website -> score -> proposal -> approval -> write."""

from __future__ import annotations

from typing import Any

from langgraph.graph import START, StateGraph
from langgraph.graph.state import StateGraph as Graph

from ...context import RunContext
from ...registry import GraphSpec, register
from ..common import add_approval_end, retry_policy
from . import nodes
from .state import LeadConfig, LeadInput, LeadState


def build() -> Graph[Any, Any, Any, Any]:
    graph = StateGraph(LeadState, context_schema=RunContext)
    retry = retry_policy()
    graph.add_node("load", nodes.load, retry_policy=retry)
    graph.add_node("enrich", nodes.enrich)
    graph.add_node("score", nodes.score, retry_policy=retry)
    graph.add_node("propose", nodes.propose)
    graph.add_edge(START, "load")
    graph.add_edge("load", "enrich")
    graph.add_edge("enrich", "score")
    graph.add_edge("score", "propose")
    add_approval_end(graph, after="propose")
    return graph


SPEC = register(
    GraphSpec(
        key="lead_qualification",
        name="Lead qualification",
        description=(
            "Reads a contact and its company, enriches from the company's website, scores the "
            "lead and proposes its lifecycle stage and a note; a person approves the write."
        ),
        build=build,
        config_schema=LeadConfig,
        input_schema=LeadInput,
        trigger_object_types=("contact",),
        trigger_input=lambda record: {"contact_id": record.external_id},
    )
)
