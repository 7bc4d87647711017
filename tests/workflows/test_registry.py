"""Graphs from ``WORKFLOW_GRAPH_MODULES``, and graphs compiled once per process."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from tests.processes import ROOT
from workflows.registry import compiled_graph, graph_spec, import_graph_modules

LIST_GRAPHS = (
    "import django; django.setup(); "
    "from workflows.registry import graph_specs; "
    "print(' '.join(s.key for s in graph_specs()))"
)


def graphs_at_start_up(modules: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "WORKFLOW_GRAPH_MODULES"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    if modules is not None:
        env["WORKFLOW_GRAPH_MODULES"] = modules
    return subprocess.run(
        [sys.executable, "-c", LIST_GRAPHS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_graph_modules_named_in_the_setting_register_their_graphs_at_start_up() -> None:
    plain = graphs_at_start_up(None)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "lead_qualification" in plain.stdout.split()
    assert "extra_echo" not in plain.stdout.split()

    extra = graphs_at_start_up("tests.workflows.extra_graph")
    assert extra.returncode == 0, extra.stderr[-3000:]
    assert set(extra.stdout.split()) == set(plain.stdout.split()) | {"extra_echo"}


def test_a_graph_module_that_cannot_be_imported_fails_start_up() -> None:
    with pytest.raises(ModuleNotFoundError):
        import_graph_modules(["tests.workflows.no_such_graphs"])
    failed = graphs_at_start_up("tests.workflows.no_such_graphs")
    assert failed.returncode != 0
    assert "No module named 'tests.workflows.no_such_graphs'" in failed.stderr


def test_a_graph_is_compiled_once_and_again_when_settings_change(settings: Any) -> None:
    first = compiled_graph("lead_qualification")
    assert compiled_graph("lead_qualification") is first
    assert first.checkpointer is None  # a run takes a copy with its own saver

    settings.WORKFLOW_NODE_ATTEMPTS = 7  # read when the graph is built (its retry policy)
    rebuilt = compiled_graph("lead_qualification")
    assert rebuilt is not first
    policies = rebuilt.nodes["load"].retry_policy or ()
    assert [p.max_attempts for p in policies] == [7]

    saver = InMemorySaver()
    copy = rebuilt.copy({"checkpointer": saver})
    assert (copy.checkpointer, rebuilt.checkpointer) == (saver, None)
    assert copy.nodes.keys() == rebuilt.nodes.keys()
    assert graph_spec("lead_qualification").key == "lead_qualification"
