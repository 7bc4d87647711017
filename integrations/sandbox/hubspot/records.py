"""CRM records: writing them (validation, unique email, side effects) and reading them back in
HubSpot's shape (``id``, ``properties``, ``createdAt``, ``updatedAt``, ``archived``).

Every write takes a new modification time from the portal's clock (milliseconds, strictly
increasing within the portal), sets ``updatedAt`` and the modification-date properties to it, and
queues its webhook events (``creation``, one ``propertyChange`` per changed property, ``deletion``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from . import errors, graph, webhooks
from .schema import (
    SCHEMAS,
    ObjectSchema,
    PropertyError,
    iso_ms,
    resolve_type,
    validate,
)
from .state import HubSpotState, PortalData, Record, to_ms

Links = list[tuple[str, str, set[int]]]  # (to type, to id, type ids)


def now() -> datetime:
    return datetime.now(UTC)


def live(
    data: PortalData, schema: ObjectSchema, record_id: str, *, archived: bool = False
) -> Record | None:
    """The record with this id, if it exists and its archived state is the one asked for."""
    record = data.table(schema.name).get(record_id)
    return record if record is not None and record.archived == archived else None


def find(
    data: PortalData, schema: ObjectSchema, value: str, id_property: str | None
) -> Record | None:
    """By id, or by a unique property (``idProperty=email`` for contacts)."""
    if not id_property or id_property == "hs_object_id":
        return live(data, schema, value)
    if schema.name == "contacts" and id_property == "email":
        return contact_by_email(data, value)
    return None


def contact_by_email(data: PortalData, email: str, *, exclude: str | None = None) -> Record | None:
    found = data.emails.get(email.strip().lower())
    if found is None or found == exclude:
        return None
    record = data.table("contacts").get(found)
    return record if record is not None and not record.archived else None


def check_write(
    data: PortalData, schema: ObjectSchema, properties: Any, *, record_id: str | None = None
) -> dict[str, str | None] | Response:
    """Validated values to store, or HubSpot's 400 / 409 answer (``record_id``: an update's
    record; without it the write is a create, which must set the required properties)."""
    values, problems = validate(schema, properties)
    if record_id is None and isinstance(properties, dict):
        named = {p.name for p in problems}
        problems.extend(
            PropertyError(name, "REQUIRED_PROPERTY", f"{name} is required")
            for name in schema.required
            if values.get(name) is None and name not in named
        )
    company = values.get("associatedcompanyid")
    if schema.name == "contacts" and company and live(data, resolve_companies(), company) is None:
        problems.append(
            PropertyError(
                "associatedcompanyid", "INVALID_ASSOCIATION", f"No company with ID {company} exists"
            )
        )
    if problems:
        return errors.invalid_properties(problems, data.portal.hub_id)
    email = values.get("email")
    if schema.name == "contacts" and email:
        values["email"] = email.lower()
        existing = contact_by_email(data, email, exclude=record_id)
        if existing is not None:
            return errors.conflict(existing.id)
    return values


def resolve_companies() -> ObjectSchema:
    return SCHEMAS["companies"]


def parse_links(data: PortalData, schema: ObjectSchema, raw: Any) -> Links | Response:
    """The ``associations`` of a create input: ``[{"to": {"id"}, "types": [{...}]}]``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return errors.validation("associations must be a list")
    found: Links = []
    for item in raw:
        to_id = str((item.get("to") or {}).get("id", "")) if isinstance(item, dict) else ""
        types = item.get("types") if isinstance(item, dict) else None
        if not to_id or not isinstance(types, list) or not types:
            return errors.validation("Each association needs a to.id and at least one type")
        ids: set[int] = set()
        to_type = ""
        for spec in types:
            type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
            kind = graph.TYPES.get(type_id) if isinstance(type_id, int) else None
            if (
                kind is None
                or kind.from_type != schema.name
                or (to_type and kind.to_type != to_type)
            ):
                return errors.validation(f"Invalid association type {type_id} for {schema.name}")
            to_type = kind.to_type
            ids.add(kind.type_id)
        target = resolve_type(to_type)
        if target is None or live(data, target, to_id) is None:
            return errors.validation(f"No {to_type[:-1]} with ID {to_id} exists")
        found.append((to_type, to_id, ids))
    return found


def create(
    hubspot: HubSpotState,
    data: PortalData,
    schema: ObjectSchema,
    values: dict[str, str | None],
    links: Links | None = None,
) -> Record:
    record_id = hubspot.next_id()
    moment = data.stamp()
    properties = {k: v for k, v in values.items() if v is not None}
    properties |= {"hs_object_id": record_id, schema.created: iso_ms(moment)}
    properties |= dict.fromkeys(schema.modified_props, iso_ms(moment))
    record = Record(record_id, schema.name, properties, moment, moment)
    data.insert(record)
    _index_email(data, schema, record, None)
    notify(data, schema, record, "creation")
    _company_side_effect(data, schema, record, values)
    for to_type, to_id, ids in links or []:
        graph.link(data, schema.name, record_id, to_type, to_id, ids)
    return record


def notify(
    data: PortalData,
    schema: ObjectSchema,
    record: Record,
    change: webhooks.Change,
    changed: dict[str, str | None] | None = None,
) -> None:
    """Queue the webhook events of one change (each changed property of an update)."""
    sink = data.webhooks
    if sink is None or schema.activity:  # app subscriptions cover contacts, companies, deals
        return
    moment = record.archived_at if change == "deletion" and record.archived_at else None
    occurred = to_ms(moment or record.updated_at)
    hub_id, singular = data.portal.hub_id, schema.singular
    if change != "propertyChange":
        sink.emit(
            portal_id=hub_id,
            object_type=singular,
            change=change,
            object_id=record.id,
            occurred_ms=occurred,
        )
        return
    for name, value in (changed or {}).items():
        sink.emit(
            portal_id=hub_id,
            object_type=singular,
            change=change,
            object_id=record.id,
            occurred_ms=occurred,
            property_name=name,
            property_value=value,
        )


def _index_email(data: PortalData, schema: ObjectSchema, record: Record, old: str | None) -> None:
    if schema.name != "contacts":
        return
    if old is not None and data.emails.get(old) == record.id:
        del data.emails[old]
    email = record.properties.get("email")
    if email and not record.archived:
        data.emails[email] = record.id


def update(
    data: PortalData, schema: ObjectSchema, record: Record, values: dict[str, str | None]
) -> None:
    old_email = record.properties.get("email")
    changed: dict[str, str | None] = {}
    for name, value in values.items():
        if record.properties.get(name) != value:
            changed[name] = value
        if value is None:
            record.properties.pop(name, None)
        else:
            record.properties[name] = value
    touch(data, schema, record)
    _index_email(data, schema, record, old_email)
    notify(data, schema, record, "propertyChange", changed)
    _company_side_effect(data, schema, record, values)


def touch(data: PortalData, schema: ObjectSchema, record: Record) -> None:
    """A write happened: a new modification time (``updatedAt`` and the date properties)."""
    stamp = iso_ms(data.touch(record))
    for name in schema.modified_props:
        record.properties[name] = stamp


def _company_side_effect(
    data: PortalData, schema: ObjectSchema, record: Record, values: dict[str, str | None]
) -> None:
    """Writing a contact's ``associatedcompanyid`` makes that company its primary company."""
    if schema.name != "contacts" or "associatedcompanyid" not in values:
        return
    company = values["associatedcompanyid"]
    current = [
        c
        for c, kinds in graph.associated(data, "contacts", record.id, "companies").items()
        if 1 in kinds
    ]
    for old in current:
        if old != company:
            graph.unlink(data, "contacts", record.id, "companies", old, {1})
    if company:
        graph.link(data, "contacts", record.id, "companies", company, {1})


def archive(data: PortalData, schema: ObjectSchema, record: Record) -> None:
    if not record.archived:
        data.retire(record)
        record.archived = True
        record.archived_at = data.stamp()
        _index_email(data, schema, record, record.properties.get("email"))
        notify(data, schema, record, "deletion")


def read_properties(
    schema: ObjectSchema, record: Record, wanted: list[str] | None
) -> dict[str, Any]:
    """Asked-for properties (defined ones only; unset ones as ``null``) and the base three, or
    the object's default properties when none are asked for."""
    if wanted:
        names = {name for name in wanted if name in schema.props} | set(schema.base_properties())
    else:
        names = set(schema.defaults)
    return {name: record.properties.get(name) for name in sorted(names)}


def shape(
    schema: ObjectSchema,
    record: Record,
    properties: dict[str, Any] | None = None,
    *,
    data: PortalData | None = None,
    associations: list[str] | None = None,
) -> dict[str, Any]:
    """A record as HubSpot answers it; ``properties`` default to every stored property."""
    body: dict[str, Any] = {
        "id": record.id,
        "properties": properties
        if properties is not None
        else dict(sorted(record.properties.items())),
        "createdAt": iso_ms(record.created_at),
        "updatedAt": iso_ms(record.updated_at),
        "archived": record.archived,
    }
    if record.archived_at is not None:
        body["archivedAt"] = iso_ms(record.archived_at)
    if data is not None and associations:
        found: dict[str, Any] = {}
        for name in associations:
            target = resolve_type(name)
            if target is None or (schema.name, target.name) not in graph.DEFAULT:
                continue
            links = graph.associated(data, schema.name, record.id, target.name)
            results = [
                {"id": to_id, "type": graph.TYPES[kind].name}
                for to_id, kinds in links.items()
                for kind in sorted(kinds)
            ]
            if results:
                found[target.name] = {"results": results}
        if found:
            body["associations"] = found
    return body
