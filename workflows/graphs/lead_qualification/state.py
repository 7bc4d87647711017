"""Lead qualification: its input, config, state and the model's answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from ..common import ProposalState, WorkflowConfig, WorkflowInput

# HubSpot's lifecycle stages in their order; a qualification never moves a contact back.
STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
)


class LeadInput(WorkflowInput):
    contact_id: str = Field(min_length=1, max_length=64, description="The contact to qualify.")


class LeadConfig(WorkflowConfig):
    enrich_website: bool = True
    mql_score: int = Field(40, ge=0, le=100)
    sql_score: int = Field(70, ge=0, le=100)
    add_note: bool = True
    stage_property: str | None = Field(
        None,
        description=(
            "A provider field to store the stage in where the CRM has no lifecycle stage "
            "(Salesforce); empty: only the note is written there."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> LeadConfig:
        if self.mql_score > self.sql_score:
            raise ValueError("mql_score must not be above sql_score")
        return self


class Qualification(BaseModel):
    """The answer: a 0-100 score, the stage it implies and why."""

    score: int = Field(ge=0, le=100)
    stage: Literal["lead", "marketingqualifiedlead", "salesqualifiedlead"]
    reasons: list[str] = Field(default_factory=list, max_length=10)
    note: str = Field("", max_length=5000, description="A note for the contact's timeline.")


class LeadState(ProposalState, total=False):
    contact_id: str
    contact: dict[str, Any]
    company: dict[str, Any] | None
    website: dict[str, Any] | None
    website_error: str | None
    qualification: dict[str, Any]
