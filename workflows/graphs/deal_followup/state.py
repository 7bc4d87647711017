"""Deal follow-up: its input, config, state and the model's drafts."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from ..common import ProposalState, WorkflowConfig, WorkflowInput

# Closed stages as each CRM names them: HubSpot's default pipeline (internal values) and
# Salesforce's standard Opportunity picklist. Compared case-insensitively.
CLOSED_STAGES = ("closedwon", "closedlost", "Closed Won", "Closed Lost")


class FollowupInput(WorkflowInput):
    deal_ids: list[str] | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Only these deals (still only the open, idle ones); all deals if omitted.",
    )

    @field_validator("deal_ids")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [v.strip() for v in value]
        if any(not v or len(v) > 64 for v in cleaned):
            raise ValueError("each deal id is 1 to 64 characters")
        return list(dict.fromkeys(cleaned))


class FollowupConfig(WorkflowConfig):
    idle_days: int = Field(
        14,
        ge=1,
        le=365,
        description="A deal is idle after this many days without activity (its last logged "
        "activity, else its last change).",
    )
    max_deals: int = Field(25, ge=1, le=200, description="Deals followed up per run, idlest first.")
    closed_stages: list[str] = Field(
        default_factory=lambda: list(CLOSED_STAGES),
        json_schema_extra={"default": list(CLOSED_STAGES)},
        max_length=50,
        description="Stages that mean a deal is over (case-insensitive).",
    )
    activity: Literal["task", "note"] = Field(
        "task", description="A task for the owner (due in due_in_days) or a note on the deal."
    )
    due_in_days: int = Field(2, ge=0, le=90)
    priority: Literal["low", "medium", "high"] | None = "medium"
    include_unowned: bool = Field(
        True, description="Follow up deals without an owner too (the task is unassigned)."
    )

    @field_validator("closed_stages")
    @classmethod
    def _stages(cls, value: list[str]) -> list[str]:
        if any(not s.strip() or len(s) > 100 for s in value):
            raise ValueError("each stage is 1 to 100 characters")
        return [s.strip() for s in value]


class Draft(BaseModel):
    deal_id: str
    subject: str = Field(min_length=1, max_length=255, description="The task's title.")
    body: str = Field(min_length=1, max_length=5000, description="What to do next, and why.")


class FollowupDrafts(BaseModel):
    """One follow-up draft for every deal you were given."""

    drafts: list[Draft] = Field(max_length=200)
    # The run's deal ids; set on a per-run subclass (``drafts_schema``).
    deal_ids: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _one_per_deal(self) -> FollowupDrafts:
        given = [d.deal_id for d in self.drafts]
        unknown = sorted(set(given) - self.deal_ids)
        if unknown:
            raise ValueError(f"unknown deal_id(s): {', '.join(unknown)}")
        twice = sorted({i for i in given if given.count(i) > 1})
        if twice:
            raise ValueError(f"one draft per deal; twice: {', '.join(twice)}")
        missing = sorted(self.deal_ids - set(given))
        if missing:
            raise ValueError(f"draft every deal; missing: {', '.join(missing)}")
        return self


def drafts_schema(deal_ids: list[str]) -> type[FollowupDrafts]:
    """The answer schema for these deals (checked against them, so a wrong answer goes back
    to the model as a validation error it can correct)."""
    schema: type[FollowupDrafts] = type(
        "FollowupDrafts",
        (FollowupDrafts,),
        {"deal_ids": frozenset(deal_ids), "__doc__": FollowupDrafts.__doc__},
    )
    return schema


class FollowupState(ProposalState, total=False):
    deal_ids: list[str] | None
    deals: list[dict[str, Any]]
    found: dict[str, Any]
    drafts: dict[str, Any]
