"""Links between records, the Salesforce way.

A contact or deal belongs to a company through its ``AccountId`` lookup (one company each:
associating another company moves it). A contact and a deal are linked by an
``OpportunityContactRole`` row, made once per pair. Reading links back is SOQL, paged by
``Id`` until every row is seen.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from core.errors import AppError, NotFound, ValidationFailed
from core.result import Result

from ..unified import Association, ObjectType
from .mapping import sobject
from .soql import is_record_id, quote, statement
from .transport import Sdk, Transport
from .wire import QueryAnswer, SaveResult, validate

CONTACT_ROLE: Final = "OpportunityContactRole"
LOOKUP: Final = "AccountId"
PAGE: Final = 2000  # rows per query when reading links (Salesforce's largest query batch)
# Error codes of a write naming a related record that does not exist (or is another type).
BAD_REFERENCE_CODES: Final = frozenset(
    {"INVALID_CROSS_REFERENCE_KEY", "FIELD_INTEGRITY_EXCEPTION", "MALFORMED_ID"}
)
SUPPORTED: Final = ({"contact", "company"}, {"deal", "company"}, {"contact", "deal"})
ROLE_FIELDS: Final[dict[ObjectType, str]] = {"contact": "ContactId", "deal": "OpportunityId"}


def _unsupported(from_type: ObjectType, to_type: ObjectType) -> ValidationFailed:
    return ValidationFailed(
        f"Salesforce has no {from_type} to {to_type} association.",
        details={"fields": {"to_type": f"a {from_type} links to a company, contact or deal"}},
    )


def _missing(object_type: ObjectType, record_id: str) -> NotFound:
    return NotFound(
        f"{object_type.capitalize()} {record_id} was not found in Salesforce.",
        details={"provider": "salesforce", "id": record_id},
    )


def _reference_missing(error: AppError, object_type: ObjectType, record_id: str) -> AppError:
    """A write's 'no such related record' answer as ``not_found`` naming that record."""
    if isinstance(error, ValidationFailed) and error.details.get("error_code") in (
        BAD_REFERENCE_CODES
    ):
        return _missing(object_type, record_id)
    return error


async def link(transport: Transport, association: Association) -> Result[None]:
    a = association
    for object_type, record_id in ((a.from_type, a.from_id), (a.to_type, a.to_id)):
        if not is_record_id(record_id):
            return Result.fail(_missing(object_type, record_id))
    if {a.from_type, a.to_type} not in SUPPORTED:
        return Result.fail(_unsupported(a.from_type, a.to_type))
    pair = {a.from_type: a.from_id, a.to_type: a.to_id}
    if "company" in pair:
        child_type: ObjectType = a.from_type if a.to_type == "company" else a.to_type
        return await _set_lookup(transport, child_type, pair[child_type], pair["company"])
    return await _add_contact_role(transport, pair["contact"], pair["deal"])


async def _set_lookup(
    transport: Transport, child_type: ObjectType, child_id: str, company_id: str
) -> Result[None]:
    name = sobject(child_type)

    def invoke(sdk: Sdk) -> None:
        sdk.sobject(name).update(child_id, {LOOKUP: company_id})

    done = await transport.call(invoke, subject=f"{child_type.capitalize()} {child_id}")
    if done.error is not None:
        return Result.fail(_reference_missing(done.error, "company", company_id))
    return done


async def _add_contact_role(transport: Transport, contact_id: str, deal_id: str) -> Result[None]:
    where = [f"ContactId = {quote(contact_id)}", f"OpportunityId = {quote(deal_id)}"]
    soql = statement(CONTACT_ROLE, ["Id"], where=where, limit=1)
    existing = await transport.call(lambda sdk: validate(QueryAnswer, sdk.salesforce.query(soql)))
    if existing.error is not None:
        return Result.fail(existing.error)
    if existing.unwrap().records:
        return Result.ok(None)
    row = {"ContactId": contact_id, "OpportunityId": deal_id}
    made = await transport.call(
        lambda sdk: validate(SaveResult, sdk.sobject(CONTACT_ROLE).create(row)), sent=row
    )
    if made.error is not None:
        fields = made.error.details.get("fields") or {}
        if "OpportunityId" in fields:
            return Result.fail(_reference_missing(made.error, "deal", deal_id))
        return Result.fail(_reference_missing(made.error, "contact", contact_id))
    return Result.ok(None)


async def linked_ids(
    transport: Transport, object_type: ObjectType, record_id: str, to_type: ObjectType
) -> Result[list[str]]:
    """Ids of the ``to_type`` records linked to this record."""
    if not is_record_id(record_id):
        return Result.fail(_missing(object_type, record_id))
    if {object_type, to_type} not in SUPPORTED:
        return Result.fail(_unsupported(object_type, to_type))
    if to_type == "company":
        soql = statement(
            sobject(object_type), ["Id", LOOKUP], where=[f"Id = {quote(record_id)}"], limit=1
        )
        answer = await transport.call(lambda sdk: validate(QueryAnswer, sdk.salesforce.query(soql)))
        if answer.error is not None:
            return Result.fail(answer.error)
        rows = answer.unwrap().records
        if not rows:
            return Result.fail(_missing(object_type, record_id))
        company = rows[0].get(LOOKUP)
        return Result.ok([str(company)] if company else [])
    if object_type == "company":
        return await _collect(transport, sobject(to_type), LOOKUP, record_id, "Id")
    return await _collect(
        transport, CONTACT_ROLE, ROLE_FIELDS[object_type], record_id, ROLE_FIELDS[to_type]
    )


async def _collect(
    transport: Transport, name: str, match: str, value: str, wanted: str
) -> Result[list[str]]:
    """Every ``wanted`` of the ``name`` rows whose ``match`` is ``value``, in ``Id`` order."""
    found: dict[str, None] = {}
    after: str | None = None
    while True:
        where = [f"{match} = {quote(value)}"]
        if after is not None:
            where.append(f"Id > {quote(after)}")
        fields = list(dict.fromkeys(["Id", wanted]))
        soql = statement(name, fields, where=where, limit=PAGE)
        answer = await transport.call(partial(_query, soql=soql))
        if answer.error is not None:
            return Result.fail(answer.error)
        rows = answer.unwrap().records
        found.update(dict.fromkeys(str(r[wanted]) for r in rows if r.get(wanted)))
        if not rows or (len(rows) < PAGE and answer.unwrap().done):
            return Result.ok(list(found))
        after = str(rows[-1]["Id"])


def _query(sdk: Sdk, *, soql: str) -> QueryAnswer:
    data: Any = sdk.salesforce.query(soql)
    return validate(QueryAnswer, data)
