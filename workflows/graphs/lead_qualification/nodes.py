"""Lead qualification's nodes: load the contact and company, read the company's website,
score (rules, or the model when one is configured), propose the stage and a note."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from core.errors import NotFound

from ...context import RunContext
from ...tools import ProposedWrite
from ..agent import read_tools, record_json, run_agent
from .enrich import fetch_website
from .prompts import SYSTEM
from .state import STAGES, LeadConfig, LeadState, Qualification

FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "icloud.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "live.com",
    }
)
SENIOR = (
    "chief",
    "ceo",
    "cto",
    "cfo",
    "coo",
    "cmo",
    "founder",
    "owner",
    "president",
    "vp",
    "vice president",
    "head of",
    "director",
    "partner",
)
MIDDLE = ("manager", "lead", "principal", "senior")


async def load(state: LeadState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The contact (mirror first, the provider if not mirrored yet) and its company."""
    tools = runtime.context.tools
    contact = (await tools.get("contact", state["contact_id"])).unwrap()
    company: dict[str, Any] | None = None
    company_id = contact.fields.get("company_id")
    if company_id:
        found = await tools.get("company", str(company_id))
        if found.is_ok:
            company = found.unwrap().model_dump(mode="json")
        elif not isinstance(found.error, NotFound):
            found.unwrap()  # a provider outage: let the retry policy try again
    return {"contact": contact.model_dump(mode="json"), "company": company}


async def enrich(state: LeadState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    config: LeadConfig = runtime.context.cfg(LeadConfig)
    company = state.get("company") or {}
    domain = (company.get("fields") or {}).get("domain")
    if not config.enrich_website or not domain:
        return {"website": None, "website_error": None if domain else "no company domain"}
    result = await fetch_website(str(domain))
    if result.error is not None:
        return {
            "website": None,
            "website_error": f"{result.error.code.value}: {result.error.message}",
        }
    return {"website": result.unwrap().model_dump(mode="json"), "website_error": None}


def rule_score(state: LeadState, config: LeadConfig) -> Qualification:
    """The deterministic path: points for seniority, a business email, company size and what
    the website shows."""
    contact = state["contact"]["fields"]
    company = (state.get("company") or {}).get("fields") or {}
    website = state.get("website") or {}
    score, reasons = 0, list[str]()
    title = str(contact.get("job_title") or "").lower()
    if any(word in title for word in SENIOR):
        score, reasons = score + 30, [*reasons, f"senior title ({contact.get('job_title')})"]
    elif any(word in title for word in MIDDLE):
        score, reasons = score + 15, [*reasons, f"manager-level title ({contact.get('job_title')})"]
    elif title:
        score += 5
    email = str(contact.get("email") or "").lower()
    mail_domain = email.rpartition("@")[2]
    if mail_domain and mail_domain not in FREE_MAIL:
        score, reasons = score + 15, [*reasons, "business email"]
        if company.get("domain") and mail_domain == str(company["domain"]).lower():
            score += 5
    employees = company.get("employees") or 0
    for floor, points in ((1000, 25), (200, 20), (50, 15), (10, 8)):
        if employees >= floor:
            score, reasons = score + points, [*reasons, f"{employees} employees"]
            break
    for signal, points in (("enterprise", 10), ("pricing", 5), ("api", 5), ("hiring", 5)):
        if signal in (website.get("signals") or []):
            score, reasons = score + points, [*reasons, f"website: {signal}"]
    if contact.get("phone"):
        score += 5
    score = min(score, 100)
    stage = (
        "salesqualifiedlead"
        if score >= config.sql_score
        else "marketingqualifiedlead"
        if score >= config.mql_score
        else "lead"
    )
    name = " ".join(str(contact.get(k) or "") for k in ("first_name", "last_name")).strip()
    note = f"Lead score {score}/100 for {name or email or 'this contact'}: {stage}.\n" + "\n".join(
        f"- {r}" for r in reasons
    )
    return Qualification(score=score, stage=stage, reasons=reasons, note=note)  # type: ignore[arg-type]


async def score(state: LeadState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    config: LeadConfig = runtime.context.cfg(LeadConfig)
    model = runtime.context.model
    if model is None:
        answer = rule_score(state, config)
        return {"qualification": answer.model_dump(mode="json") | {"by": "rules"}}
    facts = {
        "contact": state["contact"],
        "company": state.get("company"),
        "website": state.get("website"),
        "thresholds": {"mql": config.mql_score, "sql": config.sql_score},
    }
    answer, _ = await run_agent(
        model,
        system=SYSTEM,
        messages=[HumanMessage(record_json(facts))],
        tools=read_tools(runtime.context.tools),
        answer=Qualification,
    )
    return {"qualification": answer.model_dump(mode="json") | {"by": "model"}}


def _rank(stage: str | None) -> int:
    return STAGES.index(stage) if stage in STAGES else -1


async def propose(state: LeadState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The stage (only forwards) and the note, as proposed writes."""
    config: LeadConfig = runtime.context.cfg(LeadConfig)
    provider = runtime.context.tools.connection.provider
    q = Qualification.model_validate({k: v for k, v in state["qualification"].items() if k != "by"})
    contact = state["contact"]
    current = contact["fields"].get("lifecycle_stage")
    proposals: list[ProposedWrite] = []
    moves_forward = _rank(q.stage) > _rank(current)
    if moves_forward and provider == "hubspot":
        proposals.append(
            ProposedWrite(
                operation="update",
                object_type="contact",
                record_id=contact["id"],
                payload={"lifecycle_stage": q.stage},
                reason=f"score {q.score}",
            )
        )
    elif moves_forward and config.stage_property:
        proposals.append(
            ProposedWrite(
                operation="update",
                object_type="contact",
                record_id=contact["id"],
                payload={"properties": {config.stage_property: q.stage}},
                reason=f"score {q.score}",
            )
        )
    if config.add_note and q.note:
        note: dict[str, Any] = {"body": q.note, "contact_id": contact["id"]}
        if company_id := contact["fields"].get("company_id"):
            note["company_id"] = company_id
        proposals.append(
            ProposedWrite(operation="create", object_type="note", payload=note, reason="why")
        )
    summary = (
        f"Qualified contact {contact['id']}: score {q.score}, stage {q.stage}"
        f" (was {current or 'unset'})."
    )
    return {
        "proposals": [p.model_dump(mode="json") for p in proposals],
        "summary": summary,
        "output": {"score": q.score, "stage": q.stage, "previous_stage": current},
    }
