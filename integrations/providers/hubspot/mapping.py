"""Unified records and inputs <-> HubSpot properties. Pure functions, no I/O.

Reads: the unified fields are parsed from HubSpot's property strings leniently (a value that
does not parse leaves the unified field empty; the raw value is still in ``properties``).

Writes (the merge rule): ``RecordIn.properties`` is sent as it is, custom properties
included; a unified field the caller explicitly set overrides the same HubSpot property in
``properties``. Unset fields are left alone; a field explicitly set to ``None`` clears the
property on update (HubSpot clears with an empty string) and is skipped on create.
``company_id`` is not a property write: it becomes an association (see ``company_to_associate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
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
from .wire import HubSpotObject

# HubSpot's object type names, as they appear in URLs.
OBJECT_PATHS: Final[dict[WritableType, str]] = {
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
    "note": "notes",
    "task": "tasks",
}

# Unified field -> HubSpot property, per object type.
PROPERTY_MAP: Final[dict[WritableType, dict[str, str]]] = {
    "contact": {
        "email": "email",
        "first_name": "firstname",
        "last_name": "lastname",
        "phone": "phone",
        "job_title": "jobtitle",
        "lifecycle_stage": "lifecyclestage",
        "company_id": "associatedcompanyid",
        "owner_id": "hubspot_owner_id",
    },
    "company": {
        "name": "name",
        "domain": "domain",
        "industry": "industry",
        "employees": "numberofemployees",
    },
    "deal": {
        "name": "dealname",
        "amount": "amount",
        "currency": "deal_currency_code",
        "stage": "dealstage",
        "close_date": "closedate",
        "owner_id": "hubspot_owner_id",
        # HubSpot's "Last Activity Date", set when a note or task is logged on the deal.
        "last_activity_at": "notes_last_updated",
    },
    # Activities: written by ``activities.py`` (values need converting), read and searched here.
    "note": {"body": "hs_note_body", "timestamp": "hs_timestamp", "owner_id": "hubspot_owner_id"},
    "task": {
        "subject": "hs_task_subject",
        "body": "hs_task_body",
        "status": "hs_task_status",
        "priority": "hs_task_priority",
        "due_date": "hs_timestamp",
        "owner_id": "hubspot_owner_id",
    },
}

# Contacts keep their modification time in ``lastmodifieddate``; companies and deals in
# ``hs_lastmodifieddate`` (HubSpot's default search properties say the same), as do
# activities, whose creation time is ``hs_createdate`` rather than ``createdate``.
UPDATED_PROPERTY: Final[dict[WritableType, str]] = {
    "contact": "lastmodifieddate",
    "company": "hs_lastmodifieddate",
    "deal": "hs_lastmodifieddate",
    "note": "hs_lastmodifieddate",
    "task": "hs_lastmodifieddate",
}
CREATED_PROPERTY: Final[dict[WritableType, str]] = {
    "contact": "createdate",
    "company": "createdate",
    "deal": "createdate",
    "note": "hs_createdate",
    "task": "hs_createdate",
}

# Object types whose unified record carries ``company_id`` from an association.
COMPANY_LINKED: Final[frozenset[ObjectType]] = frozenset({"contact", "deal"})

# HUBSPOT_DEFINED association type ids of the default (unlabelled) association to a company,
# the same association the v4 "default" endpoint creates.
COMPANY_ASSOCIATION_TYPE: Final[dict[ObjectType, int]] = {"contact": 279, "deal": 341}


def read_properties(object_type: WritableType, extra: Sequence[str] = ()) -> list[str]:
    """The properties to request on reads: the mapped ones, id and timestamps, and ``extra``
    (HubSpot answers reads with the properties asked for only, so custom ones must be named)."""
    mapped = PROPERTY_MAP[object_type].values()
    base = ("hs_object_id", CREATED_PROPERTY[object_type], UPDATED_PROPERTY[object_type])
    return list(dict.fromkeys([*mapped, *base, *extra]))


def read_associations(object_type: WritableType) -> list[str]:
    if object_type in ("note", "task"):
        return ["contacts", "companies", "deals"]
    return ["companies"] if object_type in COMPANY_LINKED else []


def search_property(object_type: WritableType, field: str) -> str:
    """A unified field name as the HubSpot property to filter or sort on; others pass through."""
    if field == "id":
        return "hs_object_id"
    if field == "created_at":
        return CREATED_PROPERTY[object_type]
    if field == "updated_at":
        return UPDATED_PROPERTY[object_type]
    if field == "company_id" and object_type == "deal":
        return "associations.company"  # HubSpot's pseudo-property for associated records
    return PROPERTY_MAP[object_type].get(field, field)


# --- reading ---------------------------------------------------------------------------


def text_or_none(value: str | None) -> str | None:
    return value if value not in (None, "") else None


def _decimal(value: str | None) -> Decimal | None:
    text = text_or_none(value)
    if text is None:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _int(value: str | None) -> int | None:
    number = _decimal(value)
    return int(number) if number is not None and number == number.to_integral_value() else None


def parse_date(value: str | None) -> date | None:
    """HubSpot dates: ISO 8601 (``2024-06-30`` or a midnight datetime) or epoch milliseconds."""
    text = text_or_none(value)
    if text is None:
        return None
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC).date()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed.astimezone(UTC) if parsed.tzinfo else parsed).date()


def parse_moment(value: str | None) -> datetime | None:
    """HubSpot datetimes: ISO 8601 (``2024-06-30T12:00:00.000Z``) or epoch milliseconds."""
    text = text_or_none(value)
    if text is None:
        return None
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _company_id(object_type: ObjectType, obj: HubSpotObject) -> str | None:
    if object_type == "contact" and text_or_none(obj.properties.get("associatedcompanyid")):
        return obj.properties["associatedcompanyid"]
    linked = obj.associations.get("companies")
    if linked is None or not linked.results:
        return None
    # Labelled (primary) associations first, then the unlabelled ones.
    ordered = sorted(linked.results, key=lambda a: (a.type or "").endswith("unlabeled"))
    return ordered[0].id


def to_record(object_type: ObjectType, obj: HubSpotObject) -> AnyRecord:
    """A HubSpot object as the unified record; ``properties`` is HubSpot's, untouched."""
    props = obj.properties
    common: dict[str, Any] = {
        "id": obj.id,
        "created_at": obj.created_at,
        "updated_at": obj.updated_at,
        "archived": obj.archived,
        "properties": dict(props),
    }
    if object_type == "contact":
        return Contact(
            **common,
            email=text_or_none(props.get("email")),
            first_name=text_or_none(props.get("firstname")),
            last_name=text_or_none(props.get("lastname")),
            phone=text_or_none(props.get("phone")),
            job_title=text_or_none(props.get("jobtitle")),
            lifecycle_stage=text_or_none(props.get("lifecyclestage")),
            company_id=_company_id(object_type, obj),
            owner_id=text_or_none(props.get("hubspot_owner_id")),
        )
    if object_type == "company":
        return Company(
            **common,
            name=text_or_none(props.get("name")),
            domain=text_or_none(props.get("domain")),
            industry=text_or_none(props.get("industry")),
            employees=_int(props.get("numberofemployees")),
        )
    return Deal(
        **common,
        name=text_or_none(props.get("dealname")),
        amount=_decimal(props.get("amount")),
        currency=text_or_none(props.get("deal_currency_code")),
        stage=text_or_none(props.get("dealstage")),
        close_date=parse_date(props.get("closedate")),
        company_id=_company_id(object_type, obj),
        owner_id=text_or_none(props.get("hubspot_owner_id")),
        last_activity_at=parse_moment(props.get("notes_last_updated")),
    )


# --- writing ---------------------------------------------------------------------------


def property_value(value: Any) -> str:
    """A unified value as HubSpot's property string."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def check_input(object_type: ObjectType, data: RecordIn) -> None:
    """Raise ``ValidationFailed`` when ``data`` is another object type's input model."""
    expected = INPUT_MODELS[object_type]
    if type(data) is not RecordIn and not isinstance(data, expected):
        raise ValidationFailed(
            f"A {object_type} takes {expected.__name__}, not {type(data).__name__}.",
            details={"object_type": object_type, "input": type(data).__name__},
        )


def to_properties(object_type: ObjectType, data: RecordIn, *, creating: bool) -> dict[str, Any]:
    """The HubSpot ``properties`` to send for ``data`` (merge rule in the module docstring)."""
    check_input(object_type, data)
    properties: dict[str, Any] = dict(data.properties)
    for field, prop in PROPERTY_MAP[object_type].items():
        if field == "company_id" or field not in data.model_fields_set:
            continue
        value = getattr(data, field)
        if value is None and creating:
            continue
        properties[prop] = property_value(value)
    return properties


def company_to_associate(object_type: ObjectType, data: RecordIn) -> str | None:
    """The company a contact/deal input asks to be associated with, if any."""
    if object_type not in COMPANY_LINKED:
        return None
    company_id = getattr(data, "company_id", None)
    return str(company_id) if company_id else None
