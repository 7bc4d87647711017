"""The registered graphs, one package each (``graph.py`` wires the nodes; ``state.py``,
``nodes.py``, ``prompts.py`` beside it)."""

from . import crm_hygiene, deal_followup, lead_qualification  # noqa: F401
