"""CRM hygiene: its input, config, state, the finder's results and the model's review."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from ..common import ProposalState, WorkflowConfig, WorkflowInput

HygieneType = Literal["contact", "company"]
HYGIENE_TYPES: tuple[HygieneType, ...] = ("contact", "company")


class HygieneInput(WorkflowInput):
    object_types: list[HygieneType] = Field(
        default_factory=lambda: list(HYGIENE_TYPES),
        json_schema_extra={"default": list(HYGIENE_TYPES)},
        min_length=1,
        description="Which records to check for duplicates and fixes.",
    )

    @field_validator("object_types")
    @classmethod
    def _once_each(cls, value: list[HygieneType]) -> list[HygieneType]:
        return list(dict.fromkeys(value))


class HygieneConfig(WorkflowConfig):
    name_threshold: float = Field(
        0.88,
        ge=0.5,
        le=1.0,
        description="How alike two names must be (difflib ratio) to count as the same, "
        "compared only within one company or email domain (contacts) or one name block "
        "(companies).",
    )
    max_groups: int = Field(25, ge=1, le=200, description="Duplicate groups proposed per run.")
    max_group_size: int = Field(
        10, ge=2, le=50, description="Bigger groups are reported, not merged: too risky."
    )
    max_fixes: int = Field(100, ge=0, le=1000, description="Email/domain fixes per run.")
    primary: Literal["oldest", "most_complete"] = Field(
        "oldest",
        description="Which record of a group is kept: the oldest created (ties: the most "
        "complete), or the most complete (ties: the oldest).",
    )
    move_associations: bool = Field(
        True,
        description="Point the contacts and deals of a duplicate company at the company kept.",
    )


class Member(BaseModel):
    """A record of a duplicate group, as the mirror had it."""

    id: str
    fields: dict[str, Any]
    created_at: str | None = None


class DuplicateGroup(BaseModel):
    id: str = Field(description="contact-1, company-2, ...: unique within the run.")
    object_type: HygieneType
    members: list[Member] = Field(min_length=2)
    primary_id: str
    reasons: list[str]


class Fix(BaseModel):
    object_type: HygieneType
    record_id: str
    field: str
    before: Any = None
    after: Any = None


class GroupDecision(BaseModel):
    group_id: str
    action: Literal["merge", "skip"]
    primary_id: str | None = Field(
        None, description="The record to keep (a member of the group); the suggested one if empty."
    )
    reason: str = Field("", max_length=500)


class HygieneReview(BaseModel):
    """Your decision on every candidate group: merge it (keeping primary_id) or skip it."""

    decisions: list[GroupDecision] = Field(default_factory=list, max_length=200)
    # The run's groups (id -> member ids); set on a per-run subclass (``review_schema``).
    groups: ClassVar[dict[str, frozenset[str]]] = {}

    @model_validator(mode="after")
    def _every_group_once(self) -> HygieneReview:
        seen: set[str] = set()
        for d in self.decisions:
            members = self.groups.get(d.group_id)
            if members is None:
                raise ValueError(f"unknown group_id {d.group_id!r}")
            if d.group_id in seen:
                raise ValueError(f"group {d.group_id} decided twice")
            if d.primary_id is not None and d.primary_id not in members:
                raise ValueError(f"primary_id {d.primary_id!r} is not in group {d.group_id}")
            seen.add(d.group_id)
        missing = sorted(set(self.groups) - seen)
        if missing:
            raise ValueError(f"decide every group; missing: {', '.join(missing)}")
        return self


def review_schema(groups: list[DuplicateGroup]) -> type[HygieneReview]:
    """The answer schema for these groups: same name and fields, checked against them (so a
    wrong answer goes back to the model as a validation error it can correct)."""
    known = {g.id: frozenset(m.id for m in g.members) for g in groups}
    schema: type[HygieneReview] = type(
        "HygieneReview", (HygieneReview,), {"groups": known, "__doc__": HygieneReview.__doc__}
    )
    return schema


class HygieneState(ProposalState, total=False):
    object_types: list[HygieneType]
    groups: list[dict[str, Any]]
    fixes: list[dict[str, Any]]
    scan: dict[str, Any]
    review: dict[str, Any]
