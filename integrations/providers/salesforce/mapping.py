"""Unified records and inputs <-> Salesforce sObject fields. Pure functions, no I/O.

contact = Contact, company = Account, deal = Opportunity. Reads parse the unified fields from
the record leniently (a value that does not parse leaves the unified field empty; the raw value
is still in ``properties``, which holds every field Salesforce returned except ``attributes``).

Writes (the merge rule, as for HubSpot): ``RecordIn.properties`` is sent as it is, custom
``__c`` fields included; a unified field the caller explicitly set overrides the same
Salesforce field in ``properties``. Unset fields are left alone; a field explicitly set to
``None`` clears it on update (JSON ``null``) and is skipped on create. ``company_id`` is the
``AccountId`` lookup. Contacts have no standard lifecycle-stage field: ``lifecycle_stage`` reads
as ``None`` and is written nowhere (pass a raw field in ``properties`` to store one).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from core.errors import ValidationFailed

from ..unified import (
    INPUT_MODELS,
    AnyRecord,
    Company,
    Contact,
    Deal,
    ObjectType,
    RecordIn,
    WritableType,
)

SOBJECTS: Final[dict[WritableType, str]] = {
    "contact": "Contact",
    "company": "Account",
    "deal": "Opportunity",
    "note": "Note",
    "task": "Task",
}

# Unified field -> Salesforce field, per object type (activities: read and searched here,
# written by ``activities.py``).
FIELD_MAP: Final[dict[WritableType, dict[str, str]]] = {
    "contact": {
        "email": "Email",
        "first_name": "FirstName",
        "last_name": "LastName",
        "phone": "Phone",
        "job_title": "Title",
        "company_id": "AccountId",
        "owner_id": "OwnerId",
    },
    "company": {
        "name": "Name",
        "domain": "Website",
        "industry": "Industry",
        "employees": "NumberOfEmployees",
    },
    "deal": {
        "name": "Name",
        "amount": "Amount",
        "currency": "CurrencyIsoCode",  # exists only in orgs with multiple currencies
        "stage": "StageName",
        "close_date": "CloseDate",
        "company_id": "AccountId",
        "owner_id": "OwnerId",
        "last_activity_at": "LastActivityDate",  # read-only, a date
    },
    "note": {"body": "Body", "owner_id": "OwnerId", "timestamp": "CreatedDate"},
    "task": {
        "subject": "Subject",
        "body": "Description",
        "due_date": "ActivityDate",
        "status": "Status",
        "priority": "Priority",
        "owner_id": "OwnerId",
        "contact_id": "WhoId",
        "company_id": "AccountId",
        "deal_id": "WhatId",
    },
}

# Unified record fields every object type shares.
COMMON_FIELDS: Final[dict[str, str]] = {
    "id": "Id",
    "created_at": "CreatedDate",
    "updated_at": "LastModifiedDate",
    "archived": "IsDeleted",
}

# Unified fields with no Salesforce field behind them.
UNMAPPED: Final[dict[WritableType, frozenset[str]]] = {
    "contact": frozenset({"lifecycle_stage"}),
    "company": frozenset(),
    "deal": frozenset(),
    # A note's one parent is ParentId, whichever type it is.
    "note": frozenset({"contact_id", "company_id", "deal_id"}),
    "task": frozenset(),
}

# Where a free-text search looks.
TEXT_FIELDS: Final[dict[WritableType, tuple[str, ...]]] = {
    "contact": ("FirstName", "LastName", "Email"),
    "company": ("Name", "Website"),
    "deal": ("Name",),
    "note": ("Title",),
    "task": ("Subject",),
}

# Salesforce field types (describe's ``type``) of the fields this module knows, so literals in
# SOQL are typed right without a describe call.
KNOWN_TYPES: Final[dict[str, str]] = {
    "Id": "id",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
    "IsDeleted": "boolean",
    "AccountId": "reference",
    "OwnerId": "reference",
    "LastActivityDate": "date",
    "WhoId": "reference",
    "WhatId": "reference",
    "ParentId": "reference",
    "Subject": "combobox",
    "ActivityDate": "date",
    "Status": "picklist",
    "Priority": "picklist",
    "Email": "email",
    "FirstName": "string",
    "LastName": "string",
    "Name": "string",
    "Phone": "phone",
    "Title": "string",
    "Website": "url",
    "Industry": "picklist",
    "NumberOfEmployees": "int",
    "Amount": "currency",
    "CurrencyIsoCode": "picklist",
    "StageName": "picklist",
    "CloseDate": "date",
}


def sobject(object_type: WritableType) -> str:
    return SOBJECTS[object_type]


def salesforce_field(object_type: WritableType, field: str) -> str:
    """A unified field name as the Salesforce field; other names pass through unchanged.

    Raises ``ValidationFailed`` for a unified field Salesforce has no field for."""
    if field in UNMAPPED[object_type]:
        raise ValidationFailed(
            f"Salesforce {SOBJECTS[object_type]} has no standard field for {field!r}; "
            "name a Salesforce field instead.",
            details={"fields": {field: "no Salesforce field"}},
        )
    return COMMON_FIELDS.get(field) or FIELD_MAP[object_type].get(field, field)


def default_fields(object_type: WritableType) -> list[str]:
    """The fields every read selects when the org's full field list is not at hand."""
    mapped = [f for f in FIELD_MAP[object_type].values() if f != "CurrencyIsoCode"]
    return list(dict.fromkeys(["Id", *mapped, "CreatedDate", "LastModifiedDate", "IsDeleted"]))


# --- reading ---------------------------------------------------------------------------


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _int(value: Any) -> int | None:
    number = _decimal(value)
    return int(number) if number is not None and number == number.to_integral_value() else None


def parse_date(value: Any) -> date | None:
    text = text_or_none(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def day_start(day: date | None) -> datetime | None:
    """A Salesforce date as midnight UTC (``LastActivityDate`` is a date)."""
    return datetime.combine(day, time(), tzinfo=UTC) if day is not None else None


def parse_datetime(value: Any) -> datetime | None:
    """Salesforce datetimes: ``2024-06-30T12:00:00.000+0000`` (ISO 8601)."""
    text = text_or_none(value)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def website_domain(value: Any) -> str | None:
    """``Website`` as a domain: the scheme, any path and a trailing dot dropped."""
    text = (text_or_none(value) or "").strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    host = text.split("/", 1)[0].split("?", 1)[0].rstrip(".")
    return host or None


def to_record(object_type: ObjectType, raw: Mapping[str, Any]) -> AnyRecord:
    """A Salesforce record (query row or sObject) as the unified record."""
    props = {k: v for k, v in raw.items() if k != "attributes"}
    common: dict[str, Any] = {
        "id": str(raw["Id"]),
        "created_at": parse_datetime(raw.get("CreatedDate")),
        "updated_at": parse_datetime(raw.get("LastModifiedDate")),
        "archived": raw.get("IsDeleted") is True,
        "properties": props,
    }
    if object_type == "contact":
        return Contact(
            **common,
            email=text_or_none(raw.get("Email")),
            first_name=text_or_none(raw.get("FirstName")),
            last_name=text_or_none(raw.get("LastName")),
            phone=text_or_none(raw.get("Phone")),
            job_title=text_or_none(raw.get("Title")),
            lifecycle_stage=None,
            company_id=text_or_none(raw.get("AccountId")),
            owner_id=text_or_none(raw.get("OwnerId")),
        )
    if object_type == "company":
        return Company(
            **common,
            name=text_or_none(raw.get("Name")),
            domain=website_domain(raw.get("Website")),
            industry=text_or_none(raw.get("Industry")),
            employees=_int(raw.get("NumberOfEmployees")),
        )
    return Deal(
        **common,
        name=text_or_none(raw.get("Name")),
        amount=_decimal(raw.get("Amount")),
        currency=text_or_none(raw.get("CurrencyIsoCode")),
        stage=text_or_none(raw.get("StageName")),
        close_date=parse_date(raw.get("CloseDate")),
        company_id=text_or_none(raw.get("AccountId")),
        owner_id=text_or_none(raw.get("OwnerId")),
        last_activity_at=day_start(parse_date(raw.get("LastActivityDate"))),
    )


# --- writing ---------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A unified value as JSON for Salesforce: numbers stay numbers, dates ISO 8601."""
    if isinstance(value, Decimal):
        # JSON has no decimal type; Salesforce's currency fields fit a double (18 digits max).
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def check_input(object_type: ObjectType, data: RecordIn) -> None:
    """Raise ``ValidationFailed`` when ``data`` is another object type's input model."""
    expected = INPUT_MODELS[object_type]
    if type(data) is not RecordIn and not isinstance(data, expected):
        raise ValidationFailed(
            f"A {object_type} takes {expected.__name__}, not {type(data).__name__}.",
            details={"object_type": object_type, "input": type(data).__name__},
        )


def to_fields(object_type: ObjectType, data: RecordIn, *, creating: bool) -> dict[str, Any]:
    """The Salesforce fields to send for ``data`` (merge rule in the module docstring)."""
    check_input(object_type, data)
    fields: dict[str, Any] = {k: json_value(v) for k, v in data.properties.items()}
    for field, name in FIELD_MAP[object_type].items():
        if field not in data.model_fields_set:
            continue
        value = getattr(data, field)
        if value is None and creating:
            continue
        fields[name] = json_value(value)
    fields.pop("attributes", None)  # the envelope key of a record, never a field
    return fields
