"""Unified CRM records: one shape for contacts, companies and deals, whatever the provider.

Every record keeps the provider's own fields in ``properties`` untouched (custom fields
included), so nothing a provider returns is lost by unifying it. Inputs accept the unified
fields and, in ``properties``, any provider field to pass through as it is.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

ObjectType = Literal["contact", "company", "deal"]
OBJECT_TYPES: tuple[ObjectType, ...] = ("contact", "company", "deal")


class Record(BaseModel):
    id: str = Field(description="The provider's record id (used in URLs).")
    object_type: ObjectType
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


class Contact(Record, ContactFields):
    object_type: ObjectType = "contact"


class Company(Record, CompanyFields):
    object_type: ObjectType = "company"


class Deal(Record, DealFields):
    object_type: ObjectType = "deal"


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
