"""The graphs Switchboard can run, by key. Each graph package registers a ``GraphSpec`` when
``workflows.graphs`` is imported (the app's ``ready``), and so does each module named in
``WORKFLOW_GRAPH_MODULES`` (graphs that live outside the app, e.g. the benchmarks')."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from langgraph.graph.state import CompiledStateGraph, StateGraph
from pydantic import BaseModel, ValidationError

from core.errors import NotFound, ValidationFailed
from integrations.models import CrmRecord


@dataclass(frozen=True)
class GraphSpec:
    """A graph and what a workflow needs to know to run it.

    ``build`` returns the uncompiled graph (the runner compiles it with a checkpointer);
    ``config_schema`` validates ``Workflow.config``, ``input_schema`` a run's input.
    ``trigger_input`` turns a synced record into a run's input, for graphs a synced change
    can start (``trigger_object_types``).
    """

    key: str
    name: str
    description: str
    build: Callable[[], StateGraph[Any, Any, Any, Any]]
    config_schema: type[BaseModel]
    input_schema: type[BaseModel]
    trigger_object_types: tuple[str, ...] = ()
    trigger_input: Callable[[CrmRecord], dict[str, Any]] | None = None

    def validate_config(self, raw: dict[str, Any] | None) -> BaseModel:
        return _validated(self.config_schema, raw or {}, "config")

    def validate_input(self, raw: dict[str, Any] | None) -> BaseModel:
        return _validated(self.input_schema, raw or {}, "input")


def _validated(schema: type[BaseModel], raw: dict[str, Any], where: str) -> BaseModel:
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        fields = {
            ".".join(str(p) for p in (where, *err["loc"])): err["msg"] for err in exc.errors()
        }
        raise ValidationFailed(
            f"The workflow {where} is not valid.", details={"fields": fields}
        ) from exc


_GRAPHS: dict[str, GraphSpec] = {}


def register(spec: GraphSpec) -> GraphSpec:
    if spec.key in _GRAPHS:
        raise ValueError(f"graph {spec.key!r} registered twice")
    _GRAPHS[spec.key] = spec
    return spec


def graph_spec(key: str) -> GraphSpec:
    try:
        return _GRAPHS[key]
    except KeyError:
        raise NotFound(f"No graph named {key!r}.", details={"graphs": sorted(_GRAPHS)}) from None


def graph_specs() -> list[GraphSpec]:
    return [_GRAPHS[k] for k in sorted(_GRAPHS)]


_COMPILED: dict[str, CompiledStateGraph[Any, Any, Any, Any]] = {}


def compiled_graph(key: str) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The graph ``key`` built and compiled once per process, without a checkpointer: a run
    takes a copy with its own (``.copy({"checkpointer": saver})``), as cheap as building and
    compiling it is not (milliseconds for a real graph)."""
    graph = _COMPILED.get(key)
    if graph is None:
        graph = _COMPILED[key] = graph_spec(key).build().compile()
    return graph


@receiver(setting_changed)
def _forget_compiled(**kwargs: Any) -> None:
    # A graph reads settings when it is built (its nodes' retry policy): build it again.
    _COMPILED.clear()


def import_graph_modules(modules: Iterable[str]) -> None:
    """Import each module (it registers its graphs); a module that cannot be imported fails
    start-up loudly rather than leave its workflows failing later with ``not_found``."""
    for module in modules:
        import_module(module)
