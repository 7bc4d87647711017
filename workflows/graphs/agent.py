"""The model path every graph shares: a tool-calling loop that ends when the model calls the
graph's answer tool.

The model gets read tools (search and get CRM records, from the mirror) plus one answer tool
whose arguments are the graph's answer schema; it never gets write tools: what it wants written
comes back as a proposal, and the graph's approval gate decides. Tool failures reach the model
as text (``error[code]: message``) so it can recover; a model that answers without calling the
answer tool, or keeps calling tools past ``LLM_MAX_TOOL_ROUNDS``, fails the step with
``validation_failed``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from django.conf import settings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field, ValidationError

from core.errors import ValidationFailed

from ..tools import CrmTools, as_text

A = TypeVar("A", bound=BaseModel)


class SearchArgs(BaseModel):
    object_type: str = Field(description="contact, company or deal")
    text: str | None = Field(None, description="Matches names, emails and domains.")
    limit: int = Field(10, ge=1, le=50)


class GetArgs(BaseModel):
    object_type: str = Field(description="contact, company or deal")
    record_id: str


def read_tools(tools: CrmTools) -> list[BaseTool]:
    """The CRM read tools, as LangChain tools a model can call."""

    async def search_records(object_type: str, text: str | None = None, limit: int = 10) -> str:
        return as_text(await tools.search(object_type, text=text, limit=limit))

    async def get_record(object_type: str, record_id: str) -> str:
        return as_text(await tools.get(object_type, record_id))

    return [
        StructuredTool.from_function(
            coroutine=search_records,
            name="search_records",
            description="Search the CRM's contacts, companies or deals.",
            args_schema=SearchArgs,
        ),
        StructuredTool.from_function(
            coroutine=get_record,
            name="get_record",
            description="Read one CRM record by its id.",
            args_schema=GetArgs,
        ),
    ]


async def run_agent(
    model: BaseChatModel,
    *,
    system: str,
    messages: list[BaseMessage],
    tools: list[BaseTool],
    answer: type[A],
) -> tuple[A, list[BaseMessage]]:
    """Loop model -> tools until the model calls the ``answer`` tool; return its validated
    arguments and the conversation."""
    by_name = {t.name: t for t in tools}
    bound = model.bind_tools([*tools, answer])
    history: list[BaseMessage] = [SystemMessage(system), *messages]
    for _ in range(settings.LLM_MAX_TOOL_ROUNDS):
        reply = await bound.ainvoke(history)
        history.append(reply)
        calls = reply.tool_calls if isinstance(reply, AIMessage) else []
        if not calls:
            raise ValidationFailed(
                "The model answered without calling its answer tool.",
                details={"answer_tool": answer.__name__},
            )
        for call in calls:
            name, args, call_id = call["name"], call.get("args") or {}, call.get("id") or ""
            if name == answer.__name__:
                try:
                    return answer.model_validate(args), history
                except ValidationError as exc:
                    text = f"error[validation_failed]: {_errors(exc)}"
            elif name in by_name:
                try:
                    text = str(await by_name[name].ainvoke(args))
                except ValidationError as exc:  # bad arguments: the model reads why
                    text = f"error[validation_failed]: {_errors(exc)}"
            else:
                text = f"error[not_found]: no tool named {name!r}"
            history.append(ToolMessage(content=text, tool_call_id=call_id, name=name))
    raise ValidationFailed(
        f"The model did not answer within {settings.LLM_MAX_TOOL_ROUNDS} tool rounds.",
        details={"answer_tool": answer.__name__},
    )


def _errors(exc: ValidationError) -> str:
    return orjson.dumps(
        [{"field": ".".join(map(str, e["loc"])), "error": e["msg"]} for e in exc.errors()]
    ).decode()


def record_json(value: Any) -> str:
    """A record (or anything JSON-able) as compact text for a prompt."""
    if isinstance(value, BaseModel):
        return value.model_dump_json(exclude_none=True)
    return orjson.dumps(value, default=str).decode()
