"""Unified CRM records: one shape for contacts, companies and deals, whatever the provider.

Every record keeps the provider's own fields in ``properties`` untouched (custom fields
included), so nothing a provider returns is lost by unifying it. Inputs accept the unified
fields and, in ``properties``, any provider field to pass through as it is.

Notes and tasks (``ACTIVITY_TYPES``) are create-only activities logged on records: they are
written through the outbox like the others but are not ``OBJECT_TYPES``, so the mirror and
the sync never read them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypeIs  # typing.TypeIs from Python 3.13

ObjectType = Literal["contact", "company", "deal"]
OBJECT_TYPES: tuple[ObjectType, ...] = ("contact", "company", "deal")
ActivityType = Literal["note", "task"]
ACTIVITY_TYPES: tuple[ActivityType, ...] = ("note", "task")
WritableType = Literal["contact", "company", "deal", "note", "task"]
WRITABLE_TYPES: tuple[WritableType, ...] = (*OBJECT_TYPES, *ACTIVITY_TYPES)


class Record(BaseModel):
    id: str = Field(description="The provider's record id (used in URLs).")
    object_type: WritableType
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived: bool = False
    properties: dict[str, Any] = Field(
        default_factory=dict, description="The provider's own fields, as it returned them."
    )


class ContactFields(BaseModel):
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    job_title: str | None = None
    lifecycle_stage: str | None = None
    company_id: str | None = None
    owner_id: str | None = Field(None, description="The CRM user who owns the contact.")


class CompanyFields(BaseModel):
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    employees: int | None = None


class DealFields(BaseModel):
    name: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    stage: str | None = None
    close_date: date | None = None
    company_id: str | None = None
    owner_id: str | None = Field(None, description="The CRM user who owns the deal.")


class Contact(Record, ContactFields):
    object_type: ObjectType = "contact"


class Company(Record, CompanyFields):
    object_type: ObjectType = "company"


class Deal(Record, DealFields):
    object_type: ObjectType = "deal"
    last_activity_at: datetime | None = Field(
        None,
        description="When activity was last logged on the deal, as the CRM counts it "
        "(read-only). HubSpot: notes_last_updated, moved by notes and tasks. Salesforce: "
        "LastActivityDate (a date, midnight UTC here), moved by events and completed tasks "
        "only.",
    )


AnyRecord = Contact | Company | Deal
RECORD_MODELS: dict[ObjectType, type[Record]] = {
    "contact": Contact,
    "company": Company,
    "deal": Deal,
}


class RecordIn(BaseModel):
    """Fields to write. Unset fields are left alone; ``properties`` passes provider fields."""

    model_config = ConfigDict(extra="forbid")
    properties: dict[str, Any] = Field(default_factory=dict)


# Inputs take the same unified fields, with the checks that only make sense on the way in.
class ContactIn(RecordIn, ContactFields):
    company_id: str | None = Field(None, description="Associates the contact with this company.")


class CompanyIn(RecordIn, CompanyFields):
    employees: int | None = Field(None, ge=0)


class DealIn(RecordIn, DealFields):
    currency: str | None = Field(None, min_length=3, max_length=3)
    company_id: str | None = Field(None, description="Associates the deal with this company.")


INPUT_MODELS: dict[ObjectType, type[RecordIn]] = {
    "contact": ContactIn,
    "company": CompanyIn,
    "deal": DealIn,
}

# --- activities: create-only notes and tasks -----------------------------------------------


class Linked(BaseModel):
    """The records an activity is logged on (at least one on input)."""

    contact_id: str | None = None
    company_id: str | None = None
    deal_id: str | None = None


class NoteFields(Linked):
    body: str | None = None
    timestamp: datetime | None = Field(None, description="When it happened (the timeline).")
    owner_id: str | None = None


TaskStatus = Literal["not_started", "completed"]
TaskPriority = Literal["low", "medium", "high"]


class TaskFields(Linked):
    subject: str | None = None
    body: str | None = None
    due_date: date | None = None
    status: str | None = Field(
        None,
        description="not_started or completed (other provider states read as snake_case, "
        "e.g. in_progress, waiting, deferred).",
    )
    priority: str | None = Field(None, description="low, medium or high.")
    owner_id: str | None = None


class Note(Record, NoteFields):
    object_type: ActivityType = "note"


class Task(Record, TaskFields):
    object_type: ActivityType = "task"


AnyActivity = Note | Task
AnyWritten = Contact | Company | Deal | Note | Task
ACTIVITY_MODELS: dict[ActivityType, type[Record]] = {"note": Note, "task": Task}
WRITTEN_MODELS: dict[WritableType, type[Record]] = {
    "contact": Contact,
    "company": Company,
    "deal": Deal,
    "note": Note,
    "task": Task,
}


class ActivityIn(RecordIn):
    """An activity to log: on a contact, a company and/or a deal (at least one)."""

    contact_id: str | None = Field(None, min_length=1, max_length=64)
    company_id: str | None = Field(None, min_length=1, max_length=64)
    deal_id: str | None = Field(None, min_length=1, max_length=64)
    owner_id: str | None = Field(
        None, min_length=1, max_length=64, description="The CRM user it is assigned to."
    )

    @model_validator(mode="after")
    def _logged_on_something(self) -> ActivityIn:
        if not (self.contact_id or self.company_id or self.deal_id):
            raise ValueError("give at least one of contact_id, company_id or deal_id")
        return self


class NoteIn(ActivityIn):
    body: str = Field(min_length=1, max_length=65536)
    timestamp: datetime | None = Field(
        None, description="When it happened; the time the write was submitted when omitted."
    )


class TaskIn(ActivityIn):
    subject: str = Field(min_length=1, max_length=255)
    body: str | None = Field(None, max_length=65536)
    due_date: date | None = None
    status: TaskStatus = "not_started"
    priority: TaskPriority | None = None


ACTIVITY_INPUT_MODELS: dict[ActivityType, type[ActivityIn]] = {"note": NoteIn, "task": TaskIn}
WRITE_INPUT_MODELS: dict[WritableType, type[RecordIn]] = {
    "contact": ContactIn,
    "company": CompanyIn,
    "deal": DealIn,
    "note": NoteIn,
    "task": TaskIn,
}


def is_activity(object_type: WritableType) -> TypeIs[ActivityType]:
    """Whether a writable type is a note or task (else, narrowed: a contact, company, deal)."""
    return object_type in ACTIVITY_TYPES


R = TypeVar("R", bound=Record)


class Page(BaseModel, Generic[R]):
    results: list[R]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
    total: int | None = Field(None, description="Total matches, when the provider reports it.")


FilterOperator = Literal[
    "eq", "neq", "lt", "lte", "gt", "gte", "contains", "in", "has_property", "not_has_property"
]


class SearchFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str = Field(description="A unified field (e.g. `email`) or a provider property.")
    operator: FilterOperator = "eq"
    value: Any = None


class SearchSort(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str
    direction: Literal["asc", "desc"] = "asc"


class SearchQuery(BaseModel):
    """Filters in one group are ANDed; groups are ORed (at most 5 groups of 6 filters)."""

    model_config = ConfigDict(extra="forbid")
    filter_groups: list[list[SearchFilter]] = Field(default_factory=list, max_length=5)
    query: str | None = Field(None, description="Free text across the default text fields.")
    sort: list[SearchSort] = Field(default_factory=list, max_length=1)
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = None


class BatchItemError(BaseModel):
    index: int = Field(description="Position of the failed input in the request.")
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class BatchResult(BaseModel, Generic[R]):
    results: list[R]
    errors: list[BatchItemError] = Field(default_factory=list)


class Association(BaseModel):
    from_type: ObjectType
    from_id: str
    to_type: ObjectType
    to_id: str


class RawResponse(BaseModel):
    status: int
    headers: dict[str, str]
    body: Any
