"""The sObjects the sandbox knows, their fields, and how values are checked and stored.

Contact, Account, Opportunity, OpportunityContactRole, Task and (classic) Note are writable;
Organization is read-only. Each has the standard fields Switchboard touches, the system fields
every sObject has (``Id``, ``IsDeleted``, ``CreatedDate``, ``CreatedById``, ``LastModifiedDate``,
``LastModifiedById``, ``SystemModstamp``), on Contact a custom field (``Favorite_Color__c``) and,
on Contact, Account and Opportunity, the External ID field ``Switchboard_Write_Id__c``; Task has
it as an activity custom field (activities take no External IDs), and Note has none (Note takes
no custom fields). Contact, Account and Opportunity carry the read-only ``LastActivityDate``. Values are stored as
the REST API returns them: strings, numbers, booleans, dates as ``YYYY-MM-DD`` and datetimes as
``YYYY-MM-DDTHH:MM:SS.sss+0000``. Field names are matched case-insensitively, as Salesforce does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from . import ids

FieldType = Literal[
    "id",
    "string",
    "combobox",
    "email",
    "phone",
    "url",
    "textarea",
    "picklist",
    "reference",
    "boolean",
    "currency",
    "double",
    "percent",
    "int",
    "date",
    "datetime",
]
TEXT_TYPES = frozenset({"string", "combobox", "email", "phone", "url", "textarea", "picklist"})
ID_TYPES = frozenset({"id", "reference"})
NUMBER_TYPES = frozenset({"currency", "double", "percent", "int"})
SOAP_TYPES: dict[str, str] = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "currency": "xsd:double",
    "double": "xsd:double",
    "percent": "xsd:double",
    "int": "xsd:int",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})?$"
)

INDUSTRIES = (
    "Agriculture",
    "Banking",
    "Communications",
    "Consulting",
    "Education",
    "Electronics",
    "Energy",
    "Engineering",
    "Finance",
    "Healthcare",
    "Insurance",
    "Manufacturing",
    "Media",
    "Retail",
    "Technology",
    "Telecommunications",
    "Transportation",
    "Other",
)
ACCOUNT_TYPES = ("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other")
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
ROLES = (
    "Business User",
    "Decision Maker",
    "Economic Buyer",
    "Economic Decision Maker",
    "Evaluator",
    "Executive Sponsor",
    "Influencer",
    "Technical Buyer",
    "Other",
)
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
CLOSED_TASK_STATUSES = frozenset({"Completed"})
TASK_PRIORITIES = ("High", "Normal", "Low")
TASK_SUBTYPES = ("Task", "Email", "ListEmail", "Cadence", "Call")


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    type: FieldType = "string"
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted: bool = False  # defaultedOnCreate
    reference_to: tuple[str, ...] = ()
    relationship: str | None = None
    picklist: tuple[str, ...] = ()
    calculated: bool = False
    name_field: bool = False
    custom: bool = False
    external_id: bool = False
    polymorphic: bool = False  # a lookup to more than one sObject (WhoId, WhatId, ParentId)

    @property
    def required(self) -> bool:
        """What a create must set: not nillable, createable and not defaulted."""
        return not self.nillable and self.createable and not self.defaulted


@dataclass(frozen=True)
class SObject:
    name: str
    label: str
    plural: str
    prefix: str
    fields: tuple[Field, ...]
    writable: bool = True
    by_lower: dict[str, Field] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_lower", {f.name.lower(): f for f in self.fields})

    def field(self, name: str) -> Field | None:
        return self.by_lower.get(name.lower())


def _system(owner: bool = True) -> tuple[Field, ...]:
    def audit(name: str, label: str, kind: FieldType) -> Field:
        return Field(
            name,
            label,
            kind,
            length=18 if kind == "reference" else 0,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
            reference_to=("User",) if kind == "reference" else (),
            relationship=name[:-2] if kind == "reference" else None,
        )

    head = (
        Field(
            "Id",
            "Record ID",
            "id",
            length=18,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
        ),
        Field(
            "IsDeleted",
            "Deleted",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
        ),
    )
    tail: tuple[Field, ...] = (
        audit("CreatedDate", "Created Date", "datetime"),
        audit("CreatedById", "Created By ID", "reference"),
        audit("LastModifiedDate", "Last Modified Date", "datetime"),
        audit("LastModifiedById", "Last Modified By ID", "reference"),
        audit("SystemModstamp", "System Modstamp", "datetime"),
    )
    if owner:
        tail = (
            Field(
                "OwnerId",
                "Owner ID",
                "reference",
                length=18,
                nillable=False,
                defaulted=True,
                reference_to=("User",),
                relationship="Owner",
            ),
            *tail,
        )
    return head + tail


WRITE_ID = "Switchboard_Write_Id__c"
# The External ID field Switchboard creates on the objects it writes: it tags every record it
# creates, so a write whose answer was lost can be found (filterable, not unique).
WRITE_ID_FIELD = Field(WRITE_ID, "Switchboard Write ID", length=255, custom=True, external_id=True)
LAST_ACTIVITY_FIELD = Field(
    "LastActivityDate", "Last Activity", "date", createable=False, updateable=False
)


def _ref(name: str, label: str, target: str, *, required: bool = False, **kw: Any) -> Field:
    return Field(
        name,
        label,
        "reference",
        length=18,
        nillable=not required,
        reference_to=(target,),
        relationship=name[:-2],
        **kw,
    )


CONTACT = SObject(
    "Contact",
    "Contact",
    "Contacts",
    "003",
    (
        *_system()[:2],
        _ref("AccountId", "Account ID", "Account"),
        Field("LastName", "Last Name", length=80, nillable=False),
        Field("FirstName", "First Name", length=40),
        Field(
            "Name",
            "Full Name",
            length=121,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
            calculated=True,
            name_field=True,
        ),
        Field("Email", "Email", "email", length=80),
        Field("Phone", "Business Phone", "phone", length=40),
        Field("MobilePhone", "Mobile Phone", "phone", length=40),
        Field("Title", "Title", length=128),
        Field("Department", "Department", length=80),
        Field("LeadSource", "Lead Source", "picklist", length=255, picklist=LEAD_SOURCES),
        Field("Birthdate", "Birthdate", "date"),
        Field("MailingCity", "Mailing City", length=40),
        Field("MailingCountry", "Mailing Country", length=80),
        Field("Description", "Contact Description", "textarea", length=32000),
        Field("Favorite_Color__c", "Favorite Color", length=255, custom=True),
        LAST_ACTIVITY_FIELD,
        WRITE_ID_FIELD,
        *_system()[2:],
    ),
)
ACCOUNT = SObject(
    "Account",
    "Account",
    "Accounts",
    "001",
    (
        *_system()[:2],
        Field("Name", "Account Name", length=255, nillable=False, name_field=True),
        Field("Type", "Account Type", "picklist", length=255, picklist=ACCOUNT_TYPES),
        Field("Website", "Website", "url", length=255),
        Field("Industry", "Industry", "picklist", length=255, picklist=INDUSTRIES),
        Field("NumberOfEmployees", "Employees", "int"),
        Field("AnnualRevenue", "Annual Revenue", "currency"),
        Field("Phone", "Account Phone", "phone", length=40),
        Field("BillingCity", "Billing City", length=40),
        Field("BillingCountry", "Billing Country", length=80),
        Field("Description", "Account Description", "textarea", length=32000),
        LAST_ACTIVITY_FIELD,
        WRITE_ID_FIELD,
        *_system()[2:],
    ),
)
OPPORTUNITY = SObject(
    "Opportunity",
    "Opportunity",
    "Opportunities",
    "006",
    (
        *_system()[:2],
        _ref("AccountId", "Account ID", "Account"),
        Field("Name", "Name", length=120, nillable=False, name_field=True),
        Field("Description", "Description", "textarea", length=32000),
        Field("StageName", "Stage", "picklist", length=255, nillable=False, picklist=STAGES),
        Field("Amount", "Amount", "currency"),
        Field("Probability", "Probability (%)", "percent"),
        Field("CloseDate", "Close Date", "date", nillable=False),
        Field("Type", "Opportunity Type", "picklist", length=255, picklist=ACCOUNT_TYPES),
        Field("LeadSource", "Lead Source", "picklist", length=255, picklist=LEAD_SOURCES),
        Field(
            "IsClosed",
            "Closed",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
        ),
        Field(
            "IsWon",
            "Won",
            "boolean",
            nillable=False,
            createable=False,
            updateable=False,
            defaulted=True,
        ),
        LAST_ACTIVITY_FIELD,
        WRITE_ID_FIELD,
        *_system()[2:],
    ),
)
CONTACT_ROLE = SObject(
    "OpportunityContactRole",
    "Opportunity Contact Role",
    "Opportunity Contact Role",
    "00K",
    (
        *_system(owner=False)[:2],
        _ref("OpportunityId", "Opportunity ID", "Opportunity", required=True, updateable=False),
        _ref("ContactId", "Contact ID", "Contact", required=True),
        Field("Role", "Role", "picklist", length=40, picklist=ROLES),
        Field("IsPrimary", "Primary", "boolean", nillable=False, defaulted=True),
        *_system(owner=False)[2:],
    ),
)


def _derived(name: str, label: str, kind: FieldType, **kw: Any) -> Field:
    """A field Salesforce computes: never written, defaulted on create."""
    return Field(name, label, kind, createable=False, updateable=False, defaulted=True, **kw)


TASK = SObject(
    "Task",
    "Task",
    "Tasks",
    "00T",
    (
        *_system()[:2],
        Field(
            "WhoId",
            "Name ID",
            "reference",
            length=18,
            reference_to=("Contact", "Lead"),
            relationship="Who",
            polymorphic=True,
        ),
        Field(
            "WhatId",
            "Related To ID",
            "reference",
            length=18,
            reference_to=("Account", "Opportunity"),
            relationship="What",
            polymorphic=True,
        ),
        Field("Subject", "Subject", "combobox", length=255, name_field=True),
        Field("ActivityDate", "Due Date Only", "date"),
        Field(
            "Status",
            "Status",
            "picklist",
            length=40,
            nillable=False,
            defaulted=True,
            picklist=TASK_STATUSES,
        ),
        Field(
            "Priority",
            "Priority",
            "picklist",
            length=40,
            nillable=False,
            defaulted=True,
            picklist=TASK_PRIORITIES,
        ),
        _derived("IsHighPriority", "High Priority", "boolean", nillable=False),
        Field("Description", "Description", "textarea", length=32000),
        _derived("IsClosed", "Closed", "boolean", nillable=False),
        _derived(
            "AccountId",
            "Account ID",
            "reference",
            length=18,
            reference_to=("Account",),
            relationship="Account",
        ),
        Field(
            "TaskSubtype",
            "Task Subtype",
            "picklist",
            length=40,
            updateable=False,
            defaulted=True,
            picklist=TASK_SUBTYPES,
        ),
        _derived("CompletedDateTime", "Completed Date/Time", "datetime"),
        replace(WRITE_ID_FIELD, external_id=False),
        *_system()[2:],
    ),
)
NOTE = SObject(
    "Note",
    "Note",
    "Notes",
    "002",
    (
        *_system()[:2],
        Field(
            "ParentId",
            "Parent ID",
            "reference",
            length=18,
            nillable=False,
            updateable=False,
            reference_to=("Account", "Contact", "Opportunity"),
            relationship="Parent",
            polymorphic=True,
        ),
        Field("Title", "Title", length=80, nillable=False, name_field=True),
        Field("IsPrivate", "Private", "boolean", nillable=False, defaulted=True),
        Field("Body", "Body", "textarea", length=32000),
        *_system()[2:],
    ),
)


def _read_only(*fields: Field) -> tuple[Field, ...]:
    return tuple(replace(f, createable=False, updateable=False) for f in fields)


ORGANIZATION = SObject(
    "Organization",
    "Organization",
    "Organizations",
    "00D",
    _read_only(
        *_system(owner=False)[:1],
        Field("Name", "Name", length=80, nillable=False, name_field=True),
        Field("Division", "Division", length=80),
        Field("OrganizationType", "Edition", "picklist", length=40),
        Field("IsSandbox", "Is Sandbox", "boolean", nillable=False, defaulted=True),
        Field("InstanceName", "Instance Name", length=5),
        Field("NamespacePrefix", "Namespace Prefix", length=15),
        Field("Country", "Country", length=80),
        Field("LanguageLocaleKey", "Language", "picklist", length=40),
        Field("DefaultLocaleSidKey", "Locale", "picklist", length=40),
        Field("TimeZoneSidKey", "Time Zone", "picklist", length=40),
        *_system(owner=False)[2:],
    ),
    writable=False,
)

SOBJECTS: dict[str, SObject] = {
    s.name: s for s in (ACCOUNT, CONTACT, OPPORTUNITY, CONTACT_ROLE, TASK, NOTE, ORGANIZATION)
}
_BY_LOWER = {name.lower(): s for name, s in SOBJECTS.items()}
BY_PREFIX = {s.prefix: s for s in SOBJECTS.values()}
PREFIX_NAMES = {s.prefix: s.name for s in SOBJECTS.values()} | {"005": "User"}
ID_LABEL = {s.name: f"{s.label} ID" for s in SOBJECTS.values()}


def resolve(name: str) -> SObject | None:
    """An sObject by name, case-insensitively."""
    return _BY_LOWER.get(name.lower())


def sobject_of(record_id: str) -> SObject | None:
    return BY_PREFIX.get(record_id[:3])


# --- values ------------------------------------------------------------------------------------


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """An exact UTC datetime from epoch milliseconds (no float rounding)."""
    return EPOCH + timedelta(milliseconds=ms)


def format_datetime(moment: datetime) -> str:
    """Salesforce's datetime format: ``2024-05-01T12:34:56.789+0000`` (always UTC)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime | None:
    """A datetime in any ISO 8601 form Salesforce takes (no zone means UTC)."""
    match = _DATETIME.match(text)
    if not match:
        return None
    day, hour, minute, second, fraction, zone = match.groups()
    try:
        base = date.fromisoformat(day)
        micro = int(((fraction or ".0")[1:] + "000000")[:6])
        moment = datetime(
            base.year, base.month, base.day, int(hour), int(minute), int(second), micro, UTC
        )
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 60 + int(digits[2:]))
        moment -= timedelta(minutes=offset)
    return moment


def parse_date(text: str) -> date | None:
    if not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


@dataclass
class WriteError:
    """One error of a write: Salesforce's ``statusCode``/``errorCode``, message and fields.

    ``fields`` is None where Salesforce leaves the key out of a single-record answer (errors of
    the JSON body itself, such as an unknown column or a value of the wrong JSON type).
    """

    code: str
    message: str
    fields: list[str] | None = None


def _parser_error(kind: str, raw: Any, position: int) -> WriteError:
    shown = raw if isinstance(raw, str) else str(raw).lower() if isinstance(raw, bool) else raw
    event = "VALUE_STRING" if isinstance(raw, str) else "VALUE_NUMBER_INT"
    if isinstance(raw, bool):
        event = "VALUE_TRUE" if raw else "VALUE_FALSE"
    elif isinstance(raw, float):
        event = "VALUE_NUMBER_FLOAT"
    elif isinstance(raw, list | dict):
        event, shown = ("START_ARRAY" if isinstance(raw, list) else "START_OBJECT"), ""
    return WriteError(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {event} value {shown} "
        f"or request may be missing a required field at [line:1, column:{position}]",
    )


def coerce(spec: Field, raw: Any, position: int) -> tuple[Any, WriteError | None]:
    """The stored value of ``raw`` written to ``spec``, or the error Salesforce answers."""
    if raw is None:
        return None, None
    kind = spec.type
    if kind in TEXT_TYPES or kind in ID_TYPES:
        if isinstance(raw, list | dict):
            return None, _parser_error("string", raw, position)
        text = (
            raw if isinstance(raw, str) else str(raw).lower() if isinstance(raw, bool) else str(raw)
        )
        if text == "":
            return None, None  # Salesforce stores an empty string as null
        if spec.length and len(text) > spec.length:
            return None, WriteError(
                "STRING_TOO_LONG",
                f"{spec.label}: data value too large: {text} (max length={spec.length})",
                [spec.name],
            )
        if kind == "email" and not _EMAIL.match(text):
            return None, WriteError(
                "INVALID_EMAIL_ADDRESS", f"{spec.label}: invalid email address: {text}", [spec.name]
            )
        return text, None
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw, None
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true", None
        return None, _parser_error("boolean", raw, position)
    if kind in NUMBER_TYPES:
        return _number(spec, raw, position)
    if kind == "date":
        if isinstance(raw, str):
            if raw == "":
                return None, None
            day = parse_date(raw[:10]) if len(raw) >= 10 else None
            if day is not None and (len(raw) == 10 or parse_datetime(raw) is not None):
                return day.isoformat(), None
        return None, _parser_error("date", raw, position)
    # datetime
    if isinstance(raw, str):
        if raw == "":
            return None, None
        moment = parse_datetime(raw)
        if moment is not None:
            return format_datetime(moment), None
    return None, _parser_error("datetime", raw, position)


def _number(spec: Field, raw: Any, position: int) -> tuple[Any, WriteError | None]:
    kind = "int" if spec.type == "int" else "double" if spec.type != "currency" else "currency"
    if isinstance(raw, bool | list | dict):
        return None, _parser_error(kind, raw, position)
    value: float
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        try:
            value = float(str(raw))
        except ValueError:
            return None, _parser_error(kind, raw, position)
        if str(raw).strip() == "" or value != value or value in (float("inf"), float("-inf")):
            return None, _parser_error(kind, raw, position)
    if spec.type == "int":
        if not value.is_integer():
            return None, WriteError(
                "INVALID_TYPE_ON_FIELD_IN_RECORD",
                f"{spec.label}: value not of required type: {raw}",
                [spec.name],
            )
        if abs(value) >= 2**31:
            return None, WriteError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{spec.label}: value outside of valid range on numeric field: {raw}",
                [spec.name],
            )
        return int(value), None
    if abs(value) >= 1e16:
        return None, WriteError(
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"{spec.label}: value outside of valid range on numeric field: {raw}",
            [spec.name],
        )
    return round(value, 2) if spec.type == "currency" else value, None


def check_reference(spec: Field, value: str) -> tuple[str | None, WriteError | None]:
    """A reference value's 18-character id, or MALFORMED_ID / FIELD_INTEGRITY_EXCEPTION."""
    normal = ids.normalize(value)
    if normal is None:
        return None, WriteError(
            "MALFORMED_ID", f"{spec.label}: id value of incorrect type: {value}", [spec.name]
        )
    if PREFIX_NAMES.get(normal[:3]) not in spec.reference_to:
        return None, WriteError(
            "FIELD_INTEGRITY_EXCEPTION",
            f"{spec.label}: id value of incorrect type: {value}",
            [spec.name],
        )
    return normal, None


def describe_field(spec: Field) -> dict[str, Any]:
    """One entry of a describe's ``fields``, with the keys Salesforce answers."""
    kind = spec.type
    numeric = kind in NUMBER_TYPES
    return {
        "aggregatable": kind not in ("textarea",),
        "aiPredictionField": False,
        "autoNumber": False,
        "byteLength": spec.length * 3 if kind in TEXT_TYPES or kind in ID_TYPES else 0,
        "calculated": spec.calculated,
        "calculatedFormula": None,
        "cascadeDelete": False,
        "caseSensitive": False,
        "compoundFieldName": None,
        "controllerName": None,
        "createable": spec.createable,
        "custom": spec.custom,
        "defaultValue": False if kind == "boolean" and spec.defaulted else None,
        "defaultValueFormula": None,
        "defaultedOnCreate": spec.defaulted,
        "dependentPicklist": False,
        "deprecatedAndHidden": False,
        "digits": 9 if kind == "int" else 0,
        "displayLocationInDecimal": False,
        "encrypted": False,
        "externalId": spec.external_id,
        "extraTypeInfo": None,
        "filterable": kind != "textarea",
        "filteredLookupInfo": None,
        "formulaTreatNullNumberAsZero": False,
        "groupable": kind not in ("textarea", "currency", "double", "percent", "datetime"),
        "highScaleNumber": False,
        "htmlFormatted": False,
        "idLookup": kind == "id" or kind == "email" or spec.external_id,
        "inlineHelpText": None,
        "label": spec.label,
        "length": spec.length if kind in TEXT_TYPES or kind in ID_TYPES else 0,
        "mask": None,
        "maskType": None,
        "name": spec.name,
        "nameField": spec.name_field,
        "namePointing": False,
        "nillable": spec.nillable,
        "permissionable": spec.nillable and spec.createable,
        "picklistValues": [
            {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
            for v in spec.picklist
        ],
        "polymorphicForeignKey": spec.polymorphic,
        "precision": 18 if numeric and kind != "int" else 0,
        "queryByDistance": False,
        "referenceTargetField": None,
        "referenceTo": list(spec.reference_to),
        "relationshipName": spec.relationship,
        "relationshipOrder": None,
        "restrictedDelete": False,
        "restrictedPicklist": False,
        "scale": 2 if kind == "currency" else 0,
        "searchPrefilterable": kind == "reference",
        "soapType": SOAP_TYPES.get(kind, "xsd:string"),
        "sortable": kind != "textarea",
        "type": kind,
        "unique": False,
        "updateable": spec.updateable,
        "writeRequiresMasterRead": False,
    }


def urls(sobject: SObject, version: str) -> dict[str, str]:
    base = f"/services/data/v{version}/sobjects/{sobject.name}"
    return {
        "compactLayouts": f"{base}/describe/compactLayouts",
        "rowTemplate": f"{base}/{{ID}}",
        "approvalLayouts": f"{base}/describe/approvalLayouts",
        "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
        "listviews": f"{base}/listviews",
        "describe": f"{base}/describe",
        "quickActions": f"{base}/quickActions",
        "layouts": f"{base}/describe/layouts",
        "sobject": base,
    }


def summary(sobject: SObject, version: str) -> dict[str, Any]:
    """An sObject as the global describe (``GET /sobjects``) lists it."""
    writable = sobject.writable
    return {
        "activateable": False,
        "associateEntityType": None,
        "associateParentEntity": None,
        "createable": writable,
        "custom": False,
        "customSetting": False,
        "deepCloneable": False,
        "deletable": writable,
        "deprecatedAndHidden": False,
        "feedEnabled": writable,
        "hasSubtypes": False,
        "isInterface": False,
        "isSubtype": False,
        "keyPrefix": sobject.prefix,
        "label": sobject.label,
        "labelPlural": sobject.plural,
        "layoutable": True,
        "mergeable": sobject.name in ("Account", "Contact"),
        "mruEnabled": writable,
        "name": sobject.name,
        "queryable": True,
        "replicateable": True,
        "retrieveable": True,
        "searchable": writable,
        "triggerable": writable,
        "undeletable": writable,
        "updateable": writable,
        "urls": urls(sobject, version),
    }


CHILDREN: dict[str, list[tuple[str, str, str]]] = {
    # parent -> (child sObject, field, relationship name)
    "Account": [
        ("Contact", "AccountId", "Contacts"),
        ("Opportunity", "AccountId", "Opportunities"),
        ("Task", "WhatId", "Tasks"),
        ("Note", "ParentId", "Notes"),
    ],
    "Contact": [
        ("OpportunityContactRole", "ContactId", "OpportunityContactRoles"),
        ("Task", "WhoId", "Tasks"),
        ("Note", "ParentId", "Notes"),
    ],
    "Opportunity": [
        ("OpportunityContactRole", "OpportunityId", "OpportunityContactRoles"),
        ("Task", "WhatId", "Tasks"),
        ("Note", "ParentId", "Notes"),
    ],
}


def describe(sobject: SObject, version: str) -> dict[str, Any]:
    """``GET /sobjects/{type}/describe``."""
    return summary(sobject, version) | {
        "actionOverrides": [],
        "childRelationships": [
            {
                "cascadeDelete": child in ("OpportunityContactRole", "Task", "Note"),
                "childSObject": child,
                "deprecatedAndHidden": False,
                "field": name,
                "junctionIdListNames": [],
                "junctionReferenceTo": [],
                "relationshipName": relationship,
                "restrictedDelete": False,
            }
            for child, name, relationship in CHILDREN.get(sobject.name, [])
        ],
        "compactLayoutable": True,
        "defaultImplementation": None,
        "extendedBy": None,
        "extendsInterfaces": None,
        "fields": [describe_field(f) for f in sobject.fields],
        "implementedBy": None,
        "implementsInterfaces": None,
        "listviewable": None,
        "lookupLayoutable": None,
        "namedLayoutInfos": [],
        "networkScopeFieldName": None,
        "recordTypeInfos": [],
        "searchLayoutable": sobject.writable,
        "sobjectDescribeOption": "FULL",
        "supportedScopes": [
            {"label": "All " + sobject.plural.lower(), "name": "everything"},
            {"label": "My " + sobject.plural.lower(), "name": "mine"},
        ],
    }
