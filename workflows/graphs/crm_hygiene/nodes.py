"""CRM hygiene's nodes: scan the mirror for duplicate groups and fixable values, review the
groups (rules: merge every group; with a model: the model decides), propose the writes."""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import sync_to_async
from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from integrations.models import CrmRecord

from ...context import RunContext
from ...tools import ProposedWrite
from ..agent import read_tools, record_json, run_agent
from .candidates import Match, MirrorRecord, company_matches, contact_matches, field_fixes
from .merge import FILL_FIELDS, fix_payloads, fix_writes, iso, merge_writes, pick_primary
from .prompts import SYSTEM
from .state import (
    HYGIENE_TYPES,
    DuplicateGroup,
    Fix,
    GroupDecision,
    HygieneConfig,
    HygieneState,
    HygieneType,
    Member,
    review_schema,
)


def mirror_records(connection_id: uuid.UUID, object_type: HygieneType) -> list[MirrorRecord]:
    """The live mirror records of a type, oldest row first (only what matching needs)."""
    rows = (
        CrmRecord.objects.live()
        .filter(connection_id=connection_id, object_type=object_type)
        .order_by("id")
        .values_list("external_id", "fields", "remote_created_at")
    )
    return [MirrorRecord(e, f or {}, c) for e, f, c in rows.iterator(chunk_size=2000)]


def _group(
    number: int, match: Match, by_id: dict[str, MirrorRecord], config: HygieneConfig
) -> DuplicateGroup:
    kind = match.object_type
    members = [
        Member(
            id=i,
            fields={k: by_id[i].fields.get(k) for k in FILL_FIELDS[kind]},
            created_at=iso(by_id[i].created_at),
        )
        for i in match.ids
    ]
    return DuplicateGroup(
        id=f"{kind}-{number}",
        object_type=kind,
        members=members,
        primary_id=pick_primary(kind, members, config.primary),
        reasons=list(match.reasons),
    )


def find_candidates(
    connection_id: uuid.UUID, object_types: list[HygieneType], config: HygieneConfig
) -> dict[str, Any]:
    """Duplicate groups (at most ``max_groups``, surest first) and fixes (``max_fixes``)."""
    groups: list[DuplicateGroup] = []
    fixes: list[Fix] = []
    scanned: dict[str, int] = {}
    found = oversized = 0
    for kind in object_types:
        records = mirror_records(connection_id, kind)
        scanned[kind] = len(records)
        finder = contact_matches if kind == "contact" else company_matches
        by_id = {r.id: r for r in records}
        number = 0
        for match in finder(records, config.name_threshold):
            if len(match.ids) > config.max_group_size:
                oversized += 1
                continue
            found += 1
            if len(groups) < config.max_groups:
                number += 1
                groups.append(_group(number, match, by_id, config))
        for fix in field_fixes(kind, records):
            if len(fixes) >= config.max_fixes:
                break
            fixes.append(fix)
    return {
        "groups": [g.model_dump(mode="json") for g in groups],
        "fixes": [f.model_dump(mode="json") for f in fixes],
        "scan": {
            "scanned": scanned,
            "groups_found": found,
            "truncated": found - len(groups),
            "oversized": oversized,
        },
    }


async def scan(state: HygieneState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    config: HygieneConfig = runtime.context.cfg(HygieneConfig)
    kinds = list(state.get("object_types") or HYGIENE_TYPES)
    connection_id = runtime.context.tools.connection.pk
    return await sync_to_async(find_candidates)(connection_id, kinds, config)


def _groups(state: HygieneState) -> list[DuplicateGroup]:
    return [DuplicateGroup.model_validate(g) for g in state.get("groups") or []]


async def review(state: HygieneState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Without a model every candidate group is merged (a person approves anyway); with one,
    the model decides each group after looking at whatever it needs."""
    groups = _groups(state)
    model = runtime.context.model
    if model is None or not groups:
        decisions = [
            GroupDecision(
                group_id=g.id,
                action="merge",
                primary_id=g.primary_id,
                reason="; ".join(g.reasons)[:500],
            )
            for g in groups
        ]
        return {"review": {"by": "rules", "decisions": [d.model_dump() for d in decisions]}}
    facts = {
        "groups": [g.model_dump(mode="json") for g in groups],
        "fixes_planned": len(state.get("fixes") or []),
    }
    answer, _ = await run_agent(
        model,
        system=SYSTEM,
        messages=[HumanMessage(record_json(facts))],
        tools=read_tools(runtime.context.tools),
        answer=review_schema(groups),
    )
    return {"review": {"by": "model", "decisions": [d.model_dump() for d in answer.decisions]}}


def associated(
    connection_id: uuid.UUID, company_ids: list[str]
) -> dict[str, list[tuple[str, str]]]:
    """Contacts and deals in the mirror on these companies: company id -> (type, id)s."""
    found: dict[str, list[tuple[str, str]]] = {}
    if not company_ids:
        return found
    rows = (
        CrmRecord.objects.live()
        .filter(
            connection_id=connection_id,
            object_type__in=("contact", "deal"),
            fields__company_id__in=company_ids,
        )
        .order_by("object_type", "id")
        .values_list("object_type", "external_id", "fields__company_id")
    )
    for kind, record_id, company_id in rows:
        found.setdefault(str(company_id), []).append((kind, record_id))
    return found


async def propose(state: HygieneState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    config: HygieneConfig = runtime.context.cfg(HygieneConfig)
    groups = {g.id: g for g in _groups(state)}
    review_ = state.get("review") or {}
    decisions = [GroupDecision.model_validate(d) for d in review_.get("decisions") or []]
    fixes = fix_payloads([Fix.model_validate(f) for f in state.get("fixes") or []])
    merges = [
        (groups[d.group_id], d.primary_id or groups[d.group_id].primary_id, d.reason)
        for d in decisions
        if d.action == "merge"
    ]
    dropped = {g.id: [m.id for m in g.members if m.id != keep] for g, keep, _ in merges}
    archived = {(g.object_type, i) for g, _, _ in merges for i in dropped[g.id]}
    # Where each merged company's duplicates went: a write naming one names its primary.
    company_to = {
        i: keep for g, keep, _ in merges if g.object_type == "company" for i in dropped[g.id]
    }
    on_company: dict[str, list[tuple[str, str]]] = {}
    if config.move_associations and company_to:
        on_company = await sync_to_async(associated)(
            runtime.context.tools.connection.pk, sorted(company_to)
        )
    writes: list[ProposedWrite] = []
    written: set[tuple[str, str]] = set(archived)
    moves = 0
    for group, keep, reason in merges:
        moved = [
            record
            for dup in dropped[group.id]
            for record in on_company.get(dup, [])
            if record not in archived
        ]
        moves += len(moved)
        writes += merge_writes(group, keep, fixes=fixes, moved=moved, reason=reason)
        written |= {(group.object_type, keep), *moved}
    writes += fix_writes(fixes, written)
    for write in writes:
        if write.payload.get("company_id") in company_to:
            write.payload["company_id"] = company_to[write.payload["company_id"]]
    counts = {
        "merged": len(merges),
        "archived": len(archived),
        "moved": moves,
        "fixes": sum(1 for key in fixes if key not in archived),
    }
    return _proposal(state, review_.get("by", "rules"), decisions, writes, counts)


def _proposal(
    state: HygieneState,
    by: str,
    decisions: list[GroupDecision],
    writes: list[ProposedWrite],
    counts: dict[str, int],
) -> dict[str, Any]:
    scan_ = state.get("scan") or {}
    skipped = [{"group": d.group_id, "reason": d.reason} for d in decisions if d.action == "skip"]
    output = {
        "scanned": scan_.get("scanned", {}),
        "groups_found": scan_.get("groups_found", 0),
        "groups_reviewed": len(decisions),
        "groups_truncated": scan_.get("truncated", 0),
        "groups_oversized": scan_.get("oversized", 0),
        **counts,
        "skipped": skipped,
        "reviewed_by": by,
    }
    summary = (
        f"{len(decisions)} duplicate group(s) reviewed ({by}): merge {counts['merged']}, "
        f"archiving {counts['archived']} record(s) and moving {counts['moved']} to the kept "
        f"companies; skip {len(skipped)}; fix {counts['fixes']} value(s)."
    )
    return {
        "proposals": [w.model_dump(mode="json") for w in writes],
        "summary": summary,
        "output": output,
    }
