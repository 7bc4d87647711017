"""What a graph's nodes get besides their state: LangGraph's runtime context (not checkpointed;
given again on every execution, so a resumed run gets the tools and model of its new worker)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from .tools import CrmTools


@dataclass(frozen=True)
class RunContext:
    run_id: uuid.UUID
    thread_id: str
    organization_id: uuid.UUID
    attempt: int
    config: BaseModel
    tools: CrmTools
    model: BaseChatModel | None = None

    def cfg(self, schema: type[Any]) -> Any:
        """The workflow config as its graph's schema (checked, so a wrong graph fails loudly)."""
        if not isinstance(self.config, schema):
            raise TypeError(f"config is {type(self.config).__name__}, not {schema.__name__}")
        return self.config
