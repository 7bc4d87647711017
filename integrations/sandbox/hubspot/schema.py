"""The HubSpot objects the sandbox knows: their properties, types and validation.

Each object type has HubSpot's standard properties that Switchboard touches plus two custom ones
(so pass-through of provider fields can be tested), and ``switchboard_write_id``, the custom
property Switchboard creates in every portal it writes to (a string, searchable, that tags each
record it creates, so a write whose answer was lost can be found). Contacts carry both
``lastmodifieddate`` and ``hs_lastmodifieddate``; companies and deals ``hs_lastmodifieddate``.
Contacts, companies and deals also carry ``notes_last_updated`` ("Last Activity Date", read-only:
set when a note or task is associated with them, see ``graph.py``).

Notes (``0-46``) and tasks (``0-27``) are activities: created ``hs_createdate`` rather than
``createdate``, ``hs_timestamp`` required on create (a note's time, a task's due time), scoped by
the contacts scopes (``crm.objects.contacts.read``/``write``, as HubSpot documents), and never
delivered to webhook subscriptions (HubSpot's app subscriptions cover contacts, companies and
deals). Values are stored as HubSpot returns them: strings, numbers normalised, datetimes as ISO
8601 with milliseconds and ``Z``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

PropertyKind = Literal["string", "number", "enumeration", "datetime"]

LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
LEAD_STATUSES = (
    "NEW",
    "OPEN",
    "IN_PROGRESS",
    "OPEN_DEAL",
    "UNQUALIFIED",
    "ATTEMPTED_TO_CONTACT",
    "CONNECTED",
    "BAD_TIMING",
)
DEAL_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)
INDUSTRIES = (
    "ACCOUNTING",
    "BANKING",
    "BUILDING_MATERIALS",
    "CIVIL_ENGINEERING",
    "COMPUTER_SOFTWARE",
    "CONSTRUCTION",
    "CONSUMER_GOODS",
    "EDUCATION_MANAGEMENT",
    "FINANCIAL_SERVICES",
    "HOSPITAL_HEALTH_CARE",
    "INFORMATION_TECHNOLOGY_AND_SERVICES",
    "INSURANCE",
    "INTERNET",
    "LOGISTICS_AND_SUPPLY_CHAIN",
    "MANUFACTURING",
    "REAL_ESTATE",
    "RETAIL",
    "TELECOMMUNICATIONS",
)
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY")
TASK_STATUSES = ("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED")
TASK_PRIORITIES = ("NONE", "LOW", "MEDIUM", "HIGH")
TASK_TYPES = ("EMAIL", "CALL", "TODO")
WRITE_ID = "switchboard_write_id"
LAST_ACTIVITY = "notes_last_updated"
READ_ONLY = frozenset(
    {
        "hs_object_id",
        "createdate",
        "hs_createdate",
        "lastmodifieddate",
        "hs_lastmodifieddate",
        LAST_ACTIVITY,
    }
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Prop:
    name: str
    kind: PropertyKind = "string"
    options: tuple[str, ...] = ()
    integer: bool = False


@dataclass(frozen=True)
class ObjectSchema:
    name: str  # the plural used in paths: contacts
    singular: str  # contact
    type_id: str  # 0-1
    last_modified: str  # contacts say lastmodifieddate, the others hs_lastmodifieddate
    defaults: tuple[str, ...]  # properties returned when none are asked for
    searchable: tuple[str, ...]  # properties a search ``query`` looks in
    props: dict[str, Prop] = field(default_factory=dict)
    created: str = "createdate"  # activities say hs_createdate
    scope: str = ""  # the scopes' object name, when not ``name`` (activities: contacts)
    activity: bool = False
    required: tuple[str, ...] = ()  # properties a create must set

    @property
    def scope_name(self) -> str:
        return self.scope or self.name

    def base_properties(self) -> tuple[str, ...]:
        """Always returned: the id and the create and modify dates."""
        return (self.created, "hs_object_id", self.last_modified)

    @property
    def modified_props(self) -> tuple[str, ...]:
        """Every property that holds the last modification time (bumped by each write)."""
        return tuple(dict.fromkeys((self.last_modified, "hs_lastmodifieddate")))


def _schema(
    name: str,
    singular: str,
    type_id: str,
    last_modified: str,
    *,
    defaults: tuple[str, ...],
    searchable: tuple[str, ...],
    props: list[Prop],
    activity: bool = False,
) -> ObjectSchema:
    created = "hs_createdate" if activity else "createdate"
    common = [
        Prop("hs_object_id", "number"),
        Prop(created, "datetime"),
        Prop(last_modified, "datetime"),
        Prop("hs_lastmodifieddate", "datetime"),
        Prop("hubspot_owner_id"),
        Prop(WRITE_ID),  # custom, created by Switchboard in every portal
    ]
    if not activity:
        common.append(Prop(LAST_ACTIVITY, "datetime"))
    return ObjectSchema(
        name,
        singular,
        type_id,
        last_modified,
        defaults,
        searchable,
        {prop.name: prop for prop in common + props},
        created=created,
        scope="contacts" if activity else "",
        activity=activity,
        required=("hs_timestamp",) if activity else (),
    )


CONTACTS = _schema(
    "contacts",
    "contact",
    "0-1",
    "lastmodifieddate",
    defaults=("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    searchable=("firstname", "lastname", "email", "phone", "mobilephone", "company"),
    props=[
        Prop("email"),
        Prop("firstname"),
        Prop("lastname"),
        Prop("phone"),
        Prop("mobilephone"),
        Prop("jobtitle"),
        Prop("company"),
        Prop("website"),
        Prop("city"),
        Prop("country"),
        Prop("lifecyclestage", "enumeration", LIFECYCLE_STAGES),
        Prop("hs_lead_status", "enumeration", LEAD_STATUSES),
        Prop("associatedcompanyid", "number", integer=True),
        Prop("favorite_color"),  # custom
        Prop("loyalty_points", "number", integer=True),  # custom
    ],
)
COMPANIES = _schema(
    "companies",
    "company",
    "0-2",
    "hs_lastmodifieddate",
    defaults=("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
    searchable=("website", "phone", "name", "domain"),
    props=[
        Prop("name"),
        Prop("domain"),
        Prop("website"),
        Prop("phone"),
        Prop("city"),
        Prop("country"),
        Prop("description"),
        Prop("industry", "enumeration", INDUSTRIES),
        Prop("numberofemployees", "number", integer=True),
        Prop("annualrevenue", "number"),
        Prop("lifecyclestage", "enumeration", LIFECYCLE_STAGES),
        Prop("account_tier"),  # custom
        Prop("credit_limit", "number"),  # custom
    ],
)
DEALS = _schema(
    "deals",
    "deal",
    "0-3",
    "hs_lastmodifieddate",
    defaults=(
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ),
    searchable=("dealname", "pipeline", "dealstage", "description", "dealtype"),
    props=[
        Prop("dealname"),
        Prop("amount", "number"),
        Prop("deal_currency_code", "enumeration", CURRENCIES),
        Prop("dealstage", "enumeration", DEAL_STAGES),
        Prop("pipeline", "enumeration", ("default",)),
        Prop("closedate", "datetime"),
        Prop("dealtype", "enumeration", ("newbusiness", "existingbusiness")),
        Prop("description"),
        Prop("deal_source"),  # custom
        Prop("renewal_count", "number", integer=True),  # custom
    ],
)
NOTES = _schema(
    "notes",
    "note",
    "0-46",
    "hs_lastmodifieddate",
    defaults=("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    searchable=("hs_note_body",),
    props=[
        Prop("hs_timestamp", "datetime"),
        Prop("hs_note_body"),
        Prop("hs_attachment_ids"),
    ],
    activity=True,
)
TASKS = _schema(
    "tasks",
    "task",
    "0-27",
    "hs_lastmodifieddate",
    defaults=("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
    searchable=("hs_task_subject", "hs_task_body"),
    props=[
        Prop("hs_timestamp", "datetime"),
        Prop("hs_task_subject"),
        Prop("hs_task_body"),
        Prop("hs_task_status", "enumeration", TASK_STATUSES),
        Prop("hs_task_priority", "enumeration", TASK_PRIORITIES),
        Prop("hs_task_type", "enumeration", TASK_TYPES),
        Prop("hs_task_reminders", "datetime"),
    ],
    activity=True,
)
SCHEMAS: dict[str, ObjectSchema] = {s.name: s for s in (CONTACTS, COMPANIES, DEALS, NOTES, TASKS)}
_ALIASES = {alias: s.name for s in SCHEMAS.values() for alias in (s.name, s.singular, s.type_id)}


def resolve_type(name: str) -> ObjectSchema | None:
    """The schema for a path's object type: ``contacts``, ``contact`` or ``0-1``."""
    key = _ALIASES.get(name.lower())
    return SCHEMAS[key] if key else None


@dataclass(frozen=True)
class PropertyError:
    name: str
    code: str
    message: str


def iso_ms(moment: datetime) -> str:
    """HubSpot's timestamp format: ``2024-01-17T19:55:04.281Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_datetime(value: Any) -> datetime | None:
    """Epoch milliseconds (number or digits) or an ISO 8601 date or datetime."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            return EPOCH + timedelta(milliseconds=int(value))
        except (OverflowError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(prop: Prop, value: Any) -> str | PropertyError:
    text = str(value).strip() if not isinstance(value, bool) else "x"
    try:
        number = Decimal(text)
        if not number.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        number = None
    if number is None or (prop.integer and number != number.to_integral_value()):
        code, noun = (
            ("INVALID_INTEGER", "integer") if prop.integer else ("INVALID_DECIMAL", "number")
        )
        return PropertyError(prop.name, code, f"{value} was not a valid {noun}.")
    if isinstance(value, float) and number == number.to_integral_value():
        return str(int(number))
    return text


def normalize_value(prop: Prop, value: Any) -> str | PropertyError | None:
    """The stored form of ``value`` (``None`` clears the property) or why it is invalid."""
    if value is None or value == "":
        return None
    if isinstance(value, dict | list):
        return PropertyError(prop.name, "INVALID_PROPERTY_VALUE", f"{value!r} is not a value.")
    if prop.kind == "number":
        return _number(prop, value)
    if prop.kind == "datetime":
        parsed = parse_datetime(value)
        if parsed is None:
            return PropertyError(prop.name, "INVALID_DATE", f"{value} was not a valid date.")
        return iso_ms(parsed)
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if prop.kind == "enumeration" and text not in prop.options:
        allowed = ", ".join(prop.options)
        message = f'"{text}" was not one of the allowed options: [{allowed}]'
        return PropertyError(prop.name, "INVALID_OPTION", message)
    if prop.name == "email" and not _EMAIL.match(text):
        return PropertyError(prop.name, "INVALID_EMAIL", f"Email address {text} is invalid")
    return text


def validate(
    schema: ObjectSchema, properties: Any
) -> tuple[dict[str, str | None], list[PropertyError]]:
    """Check input ``properties`` against the schema: stored values, or every error found."""
    if not isinstance(properties, dict):
        return {}, [
            PropertyError("properties", "INVALID_PROPERTY_VALUE", "properties must be an object")
        ]
    values: dict[str, str | None] = {}
    errors: list[PropertyError] = []
    for name, raw in properties.items():
        prop = schema.props.get(str(name))
        if prop is None:
            errors.append(
                PropertyError(
                    str(name), "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'
                )
            )
        elif name in READ_ONLY:
            errors.append(PropertyError(name, "READ_ONLY_VALUE", f'Property "{name}" is read-only'))
        else:
            result = normalize_value(prop, raw)
            if isinstance(result, PropertyError):
                errors.append(result)
            else:
                values[name] = result
    return values, errors


def sort_key(schema: ObjectSchema, name: str, value: str | None) -> tuple[int, Any]:
    """Orders values of one property: missing last, numbers and dates numerically."""
    if value is None:
        return (2, "")
    prop = schema.props.get(name)
    if prop is not None and prop.kind in ("number", "datetime"):
        number = comparable(prop, value)
        if isinstance(number, Decimal | int):
            return (0, number)
    return (1, value.lower())


Comparable = Decimal | int | str


def comparable(prop: Prop | None, value: Any) -> Comparable:
    """A value in the form filters compare: datetimes as epoch milliseconds (``int``), numbers
    as ``Decimal``, enumerations as they are, other text lower-cased."""
    if prop is not None and prop.kind == "datetime":
        parsed = parse_datetime(value)
        if parsed is not None:
            return (parsed - EPOCH) // timedelta(milliseconds=1)
    if prop is not None and prop.kind == "number":
        try:
            return Decimal(str(value).strip())
        except InvalidOperation:
            pass
    text = str(value)
    return text if prop is not None and prop.kind == "enumeration" else text.lower()
