"""The model path of every graph, with a scripted LangChain fake chat model: the model reads
the CRM through a tool, gives a bad answer, gets the validation error back, answers again; the
run's proposals come from that answer, the model saw every tool result, and the tokens its
replies report are recorded on the run."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import pytest
from asgiref.sync import async_to_sync
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    UsageMetadata,
)
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from accounts.audit import Actor
from core.errors import ErrorCode
from integrations.models import Connection, CrmWrite
from integrations.providers.unified import ContactIn
from integrations.services.calls import crm_client_for
from workflows.llm import set_chat_model_factory
from workflows.models import Approval, RunStatus, Workflow, WorkflowRun
from workflows.services import approval_decide, run_start

from .conftest import create, drive, make_lead
from .test_deal_followup import make_pipeline

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="tester")
USAGE = UsageMetadata(input_tokens=120, output_tokens=30, total_tokens=150)
_ids = itertools.count(1)


class ScriptedChatModel(GenericFakeChatModel):
    """GenericFakeChatModel that takes tools (the script already names the tools it calls)
    and keeps every conversation it was sent."""

    model_name: str = "scripted-fake"
    disable_streaming: bool = True  # the fake's streaming drops tool calls
    received: list[list[BaseMessage]] = Field(default_factory=list)
    bound: list[str] = Field(default_factory=list)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        self.bound = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        return cast(Runnable[LanguageModelInput, AIMessage], self)

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.received.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def call(name: str, **args: Any) -> AIMessage:
    """A model reply calling one tool, with token usage as a provider reports it."""
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": args, "id": f"call_{next(_ids)}", "type": "tool_call"}],
        usage_metadata=USAGE,
        response_metadata={"model_name": "scripted-fake"},
    )


@pytest.fixture
def use_model() -> Iterator[Callable[..., ScriptedChatModel]]:
    """Install a scripted model for the runs of this test (the runner asks ``workflows.llm``)."""

    def install(*replies: AIMessage) -> ScriptedChatModel:
        model = ScriptedChatModel(messages=iter(replies))
        set_chat_model_factory(lambda: model)
        return model

    yield install
    set_chat_model_factory(None)


def read(connection: Connection, object_type: str, record_id: str) -> Any:
    """A record as the sandbox has it now (a ``Result``)."""
    client = crm_client_for(connection)
    if object_type in ("note", "task"):
        return async_to_sync(client.get_activity)(object_type, record_id)  # type: ignore[arg-type]
    return async_to_sync(client.get)(object_type, record_id)  # type: ignore[arg-type]


def start(workflow: Workflow, **input: Any) -> WorkflowRun:
    return run_start(workflow=workflow, actor=ACTOR, trigger="api", input=input)


def waiting(run: WorkflowRun) -> tuple[WorkflowRun, Approval]:
    run = drive(run)
    assert run.status == RunStatus.WAITING_APPROVAL, (run.error_code, run.error_message)
    return run, Approval.objects.get(run=run)


def approve(approval: Approval) -> WorkflowRun:
    approval_decide(approval=approval, approved=True, actor=ACTOR)
    run = drive(approval.run)
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert run.output is not None
    return run


def tool_result(model: ScriptedChatModel, turn: int) -> ToolMessage:
    """What the model was sent back after its reply ``turn - 1``: the last message of the
    conversation it got on call ``turn``."""
    last = model.received[turn][-1]
    assert isinstance(last, ToolMessage), last
    return last


def assert_tokens_recorded(run: WorkflowRun, replies: int) -> None:
    run.refresh_from_db()
    assert run.llm_model == "scripted-fake"
    assert (run.tokens_in, run.tokens_out) == (120 * replies, 30 * replies)


def test_lead_qualification_scores_with_the_model(
    hubspot: Connection, workflows: dict[str, Workflow], use_model: Any
) -> None:
    lead = make_lead(hubspot)
    model = use_model(
        call("search_records", object_type="company", text="initech"),
        call("Qualification", score=150, stage="salesqualifiedlead"),
        call(
            "Qualification",
            score=91,
            stage="salesqualifiedlead",
            reasons=["VP at a 500-person company"],
            note="Model: strong fit, book a demo.",
        ),
    )
    run, approval = waiting(start(workflows["lead_qualification"], contact_id=lead.contact_id))
    assert model.bound == ["search_records", "get_record", "Qualification"]
    assert len(model.received) == 3
    first = model.received[0]
    assert isinstance(first[0], SystemMessage)
    assert isinstance(first[1], HumanMessage)
    assert lead.contact_id in str(first[1].content)
    found = tool_result(model, 1)
    assert found.name == "search_records"
    assert lead.company_id in str(found.content)  # the search result reached the model
    refused = tool_result(model, 2)
    assert str(refused.content).startswith("error[validation_failed]")
    assert "score" in str(refused.content)

    stage, note = approval.proposal
    assert stage["payload"] == {"lifecycle_stage": "salesqualifiedlead"}
    assert stage["reason"] == "score 91"
    assert note["payload"]["body"] == "Model: strong fit, book a demo."
    assert "score 91" in approval.summary
    assert_tokens_recorded(run, 3)

    done = approve(approval)
    assert done.output is not None
    assert (done.output["score"], done.output["outcome"]) == (91, "written")
    assert len(model.received) == 3  # the resume did not ask the model again
    contact = read(hubspot, "contact", lead.contact_id).unwrap()
    assert contact.lifecycle_stage == "salesqualifiedlead"
    assert_tokens_recorded(done, 3)


def test_crm_hygiene_lets_the_model_decide_the_groups(
    hubspot: Connection, workflows: dict[str, Workflow], use_model: Any, sandbox: Any
) -> None:
    def contact(email: str, first: str, last: str, **more: Any) -> str:
        data = ContactIn(email=email, first_name=first, last_name=last, **more)
        return str(create(hubspot, "contact", data).id)

    pat = contact("pat.lee@gmail.com", "Pat", "Lee", owner_id="7001")
    pat_again = contact("patlee+crm@gmail.com", "Pat", "Lee", phone="+1 555 0100")
    jon = contact("jon.smith@initech.test", "Jon", "Smith")
    john = contact("john.smith@initech.test", "John", "Smith")
    model = use_model(
        call("get_record", object_type="contact", record_id=pat_again),
        call(
            "HygieneReview",
            decisions=[{"group_id": "contact-1", "action": "merge", "primary_id": pat_again}],
        ),
        call(
            "HygieneReview",
            decisions=[
                {
                    "group_id": "contact-1",
                    "action": "merge",
                    "primary_id": pat_again,
                    "reason": "same mailbox; the newer record has the phone",
                },
                {"group_id": "contact-2", "action": "skip", "reason": "could be two people"},
            ],
        ),
    )
    run, approval = waiting(start(workflows["crm_hygiene"], object_types=["contact"]))
    assert model.bound == ["search_records", "get_record", "HygieneReview"]
    asked = str(model.received[0][1].content)
    assert all(i in asked for i in ("contact-1", "contact-2", pat, pat_again, jon, john))
    looked_up = tool_result(model, 1)
    assert looked_up.name == "get_record"
    assert "patlee+crm@gmail.com" in str(looked_up.content)
    refused = tool_result(model, 2)
    assert str(refused.content).startswith("error[validation_failed]")
    assert "missing: contact-2" in str(refused.content)

    # The model's choice of primary, not the rules' (the oldest): pat goes, pat_again stays.
    proposal = [(p["operation"], p["record_id"], p["payload"]) for p in approval.proposal]
    assert proposal == [("archive", pat, {}), ("update", pat_again, {"owner_id": "7001"})]
    assert "same mailbox; the newer record has the phone" in approval.proposal[0]["reason"]
    assert_tokens_recorded(run, 3)

    done = approve(approval)
    assert done.output is not None
    assert done.output["reviewed_by"] == "model"
    assert done.output["skipped"] == [{"group": "contact-2", "reason": "could be two people"}]
    assert (done.output["merged"], done.output["archived"]) == (1, 1)
    assert read(hubspot, "contact", pat).error.code == ErrorCode.NOT_FOUND
    assert read(hubspot, "contact", pat_again).unwrap().owner_id == "7001"
    assert read(hubspot, "contact", john).is_ok  # skipped: still there
    assert CrmWrite.objects.count() == 2


def test_deal_followup_drafts_with_the_model(
    hubspot: Connection, workflows: dict[str, Workflow], use_model: Any
) -> None:
    p = make_pipeline(hubspot)
    model = use_model(
        call("get_record", object_type="deal", record_id=p.quiet),
        call(
            "FollowupDrafts",
            drafts=[{"deal_id": p.quiet, "subject": "Call Initech", "body": "Renewal is due."}],
        ),
        call(
            "FollowupDrafts",
            drafts=[
                {
                    "deal_id": p.quiet,
                    "subject": "Call Initech about the renewal",
                    "body": "A month without contact; confirm the renewal date.",
                },
                {
                    "deal_id": p.quiet_longer,
                    "subject": "Revive the Initech upsell",
                    "body": "Forty days quiet; offer a call before the March close.",
                },
            ],
        ),
    )
    run, approval = waiting(
        start(workflows["deal_followup"], deal_ids=[p.quiet, p.quiet_longer, p.busy])
    )
    assert model.bound == ["search_records", "get_record", "FollowupDrafts"]
    assert p.busy not in str(model.received[0][1].content)  # only the idle deals are drafted
    looked_up = tool_result(model, 1)
    assert "Initech renewal" in str(looked_up.content)
    refused = tool_result(model, 2)
    assert "missing: " + p.quiet_longer in str(refused.content)

    tasks = {t["payload"]["deal_id"]: t["payload"] for t in approval.proposal}
    assert tasks[p.quiet]["subject"] == "Call Initech about the renewal"
    assert tasks[p.quiet]["body"] == "A month without contact; confirm the renewal date."
    assert tasks[p.quiet_longer]["subject"] == "Revive the Initech upsell"
    assert tasks[p.quiet]["owner_id"] == "7001"
    assert_tokens_recorded(run, 3)

    done = approve(approval)
    assert done.output is not None
    assert done.output["drafted_by"] == "model"
    tasks_read = [read(hubspot, "task", w["record_id"]).unwrap() for w in done.output["writes"]]
    subjects = {t.deal_id: t.subject for t in tasks_read}
    assert subjects == {
        p.quiet: "Call Initech about the renewal",
        p.quiet_longer: "Revive the Initech upsell",
    }


def test_a_model_that_never_answers_fails_the_run_coded(
    hubspot: Connection, workflows: dict[str, Workflow], use_model: Any
) -> None:
    make_pipeline(hubspot)
    use_model(AIMessage(content="Sure, I will draft them.", response_metadata={}))
    run = drive(start(workflows["deal_followup"]))
    assert run.status == RunStatus.FAILED
    assert run.error_code == ErrorCode.VALIDATION_FAILED
    assert "answer tool" in run.error_message
    assert not Approval.objects.filter(run=run).exists()
    assert not CrmWrite.objects.exists()
