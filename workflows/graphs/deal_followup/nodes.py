"""Deal follow-up's nodes: find the open deals that went quiet, draft a follow-up for each
(a template, or the model when one is configured), propose them as tasks or notes."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from integrations.models import CrmRecord, CrmWrite, WriteStatus

from ...context import RunContext
from ...tools import ProposedWrite
from ..agent import read_tools, record_json, run_agent
from .prompts import SYSTEM
from .state import Draft, FollowupConfig, FollowupState, drafts_schema

# Closed flags some CRMs keep beside the stage (Salesforce: IsClosed; HubSpot: hs_is_closed),
# so a custom closed stage missing from ``closed_stages`` still counts as closed.
CLOSED_FLAGS = ("IsClosed", "hs_is_closed")


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return parse_datetime(value) if isinstance(value, str) and value else None


def _closed(fields: dict[str, Any], flags: tuple[Any, ...], closed: set[str]) -> bool:
    stage = fields.get("stage")
    if isinstance(stage, str) and stage.casefold() in closed:
        return True
    return any(f is True or (isinstance(f, str) and f.lower() == "true") for f in flags)


def followed_up_since(connection_id: uuid.UUID, since: datetime) -> set[str]:
    """Deals a task or note was written on through the outbox since ``since`` (the mirror
    learns of that activity only at the next sync; this keeps a rerun from repeating it)."""
    rows = (
        CrmWrite.objects.filter(
            connection_id=connection_id, object_type__in=("task", "note"), created_at__gte=since
        )
        .exclude(status__in=(WriteStatus.FAILED, WriteStatus.DEAD))
        .values_list("payload__deal_id", flat=True)
    )
    return {str(deal_id) for deal_id in rows if deal_id}


def idle_deals(
    connection_id: uuid.UUID, config: FollowupConfig, deal_ids: list[str] | None, now: datetime
) -> dict[str, Any]:
    """The open deals idle for ``idle_days`` (idlest first, at most ``max_deals``) and counts
    of the others; with ``deal_ids``, why each given deal is not followed up."""
    rows = CrmRecord.objects.live().filter(connection_id=connection_id, object_type="deal")
    if deal_ids is not None:
        rows = rows.filter(external_id__in=deal_ids)
    cutoff = now - timedelta(days=config.idle_days)
    closed_stages = {s.casefold() for s in config.closed_stages}
    recent = followed_up_since(connection_id, cutoff)
    counts = {"open": 0, "closed": 0, "active": 0, "followed_up_recently": 0, "unowned": 0}
    why: dict[str, str] = {}
    idle: list[tuple[datetime | None, str, dict[str, Any]]] = []
    values = rows.values_list(
        "external_id", "fields", "remote_updated_at", *(f"raw__{f}" for f in CLOSED_FLAGS)
    )
    for external_id, fields, updated_at, *flags in values.iterator(chunk_size=2000):
        if _closed(fields, tuple(flags), closed_stages):
            counts["closed"] += 1
            why[external_id] = "closed"
            continue
        counts["open"] += 1
        last = _moment(fields.get("last_activity_at")) or updated_at
        reason = (
            "active"
            if last is not None and last > cutoff
            else "followed_up_recently"
            if external_id in recent
            else "unowned"
            if not fields.get("owner_id") and not config.include_unowned
            else ""
        )
        if reason:
            counts[reason] += 1
            why[external_id] = reason
            continue
        idle.append((last, external_id, fields))
    # Idlest first; a deal with no time at all has never shown activity.
    idle.sort(key=lambda item: (item[0] is not None, item[0] or now, item[1]))
    chosen = [_deal(i, fields, last, now) for last, i, fields in idle[: config.max_deals]]
    found: dict[str, Any] = {
        "as_of": now.isoformat(),
        "idle": len(idle),
        "truncated": len(idle) - len(chosen),
        **counts,
    }
    if deal_ids is not None:
        taken = {d["id"] for d in chosen}
        waiting = {i for _, i, _ in idle} - taken
        found["not_followed_up"] = {
            i: why.get(i) or ("over_max_deals" if i in waiting else "not_found")
            for i in deal_ids
            if i not in taken
        }
    return {"deals": chosen, "found": found}


def _deal(
    external_id: str, fields: dict[str, Any], last: datetime | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": external_id,
        "name": fields.get("name") or f"Deal {external_id}",
        "amount": fields.get("amount"),
        "currency": fields.get("currency"),
        "stage": fields.get("stage"),
        "close_date": fields.get("close_date"),
        "company_id": fields.get("company_id"),
        "owner_id": fields.get("owner_id"),
        "last_activity": last.isoformat() if last is not None else None,
        "idle_days": (now - last).days if last is not None else None,
    }


async def find(state: FollowupState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    config: FollowupConfig = runtime.context.cfg(FollowupConfig)
    connection_id = runtime.context.tools.connection.pk
    return await sync_to_async(idle_deals)(
        connection_id, config, state.get("deal_ids"), timezone.now()
    )


def template_draft(deal: dict[str, Any]) -> Draft:
    """The deterministic draft: what is known about the deal and the obvious next step."""
    name = deal["name"]
    quiet = (
        f"No activity for {deal['idle_days']} days (since {deal['last_activity'][:10]})"
        if deal.get("idle_days") is not None
        else "No activity on record"
    )
    facts = [f"stage {deal['stage'] or 'unknown'}"]
    if deal.get("amount") is not None:
        facts.append(f"amount {deal['amount']} {deal.get('currency') or ''}".rstrip())
    if deal.get("close_date"):
        facts.append(f"expected close {deal['close_date']}")
    body = (
        f"{quiet} on {name} ({', '.join(facts)}). Reach out to the buyer and agree the next "
        "step, or move the deal to its real stage if it has changed."
    )
    return Draft(deal_id=deal["id"], subject=f"Follow up: {name}"[:255], body=body)


async def draft(state: FollowupState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    config: FollowupConfig = runtime.context.cfg(FollowupConfig)
    deals = state.get("deals") or []
    model = runtime.context.model
    if model is None or not deals:
        drafts = [template_draft(d) for d in deals]
        return {"drafts": {"by": "rules", "items": [d.model_dump() for d in drafts]}}
    facts = {
        "today": str(state.get("found", {}).get("as_of", ""))[:10],
        "follow_up_as": config.activity,
        "due_in_days": config.due_in_days if config.activity == "task" else None,
        "deals": deals,
    }
    answer, _ = await run_agent(
        model,
        system=SYSTEM,
        messages=[HumanMessage(record_json(facts))],
        tools=read_tools(runtime.context.tools),
        answer=drafts_schema([d["id"] for d in deals]),
    )
    return {"drafts": {"by": "model", "items": [d.model_dump() for d in answer.drafts]}}


def _write(deal: dict[str, Any], text: Draft, config: FollowupConfig, today: date) -> ProposedWrite:
    reason = (
        f"{deal['name']}: no activity for {deal['idle_days']} days"
        if deal.get("idle_days") is not None
        else f"{deal['name']}: no activity on record"
    )
    links: dict[str, Any] = {"deal_id": deal["id"]}
    if deal.get("owner_id"):
        links["owner_id"] = deal["owner_id"]
    if config.activity == "note":
        body = f"{text.subject}\n\n{text.body}"
        return ProposedWrite(
            operation="create", object_type="note", payload={"body": body, **links}, reason=reason
        )
    if deal.get("company_id"):
        links["company_id"] = deal["company_id"]
    task: dict[str, Any] = {
        "subject": text.subject,
        "body": text.body,
        "due_date": (today + timedelta(days=config.due_in_days)).isoformat(),
        **links,
    }
    if config.priority:
        task["priority"] = config.priority
    return ProposedWrite(operation="create", object_type="task", payload=task, reason=reason)


async def propose(state: FollowupState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    config: FollowupConfig = runtime.context.cfg(FollowupConfig)
    found = state.get("found") or {}
    as_of = _moment(found.get("as_of")) or timezone.now()
    drafts = state.get("drafts") or {}
    by_deal = {d["deal_id"]: Draft.model_validate(d) for d in drafts.get("items") or []}
    deals = state.get("deals") or []
    writes = [_write(d, by_deal[d["id"]], config, as_of.date()) for d in deals]
    unowned = sum(1 for d in deals if not d.get("owner_id"))
    output = {
        **{k: v for k, v in found.items() if k != "as_of"},
        "followups": len(writes),
        "unassigned": unowned,
        "activity": config.activity,
        "drafted_by": drafts.get("by", "rules"),
        "deals": [d["id"] for d in deals],
    }
    summary = (
        f"{len(writes)} idle deal(s) (no activity for {config.idle_days}+ days): propose a "
        f"follow-up {config.activity} on each"
        + (f"; {unowned} without an owner" if unowned else "")
        + (
            f"; {found.get('truncated')} more left for a later run"
            if found.get("truncated")
            else ""
        )
        + "."
    )
    return {
        "proposals": [w.model_dump(mode="json") for w in writes],
        "summary": summary,
        "output": output,
    }
