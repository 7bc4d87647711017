"""Associations between records, both directions, with HubSpot's default type ids.

HubSpot-defined association types (developers.hubspot.com, Associations v4, type IDs): every
labelled association also carries the pair's unlabelled type; a contact (deal) has at most one
``Primary`` company, and a contact's primary company is its ``associatedcompanyid``. Associating
a note or task with a contact, company or deal logs activity on it: its ``notes_last_updated``
(Last Activity Date) and modification dates move to now.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schema import LAST_ACTIVITY, SCHEMAS, iso_ms
from .state import PortalData, to_ms


@dataclass(frozen=True)
class AssociationType:
    type_id: int
    from_type: str
    to_type: str
    label: str | None
    name: str  # the v3 name shown in ``associations`` of a record read


TYPES: dict[int, AssociationType] = {
    t.type_id: t
    for t in (
        AssociationType(1, "contacts", "companies", "Primary", "contact_to_company"),
        AssociationType(279, "contacts", "companies", None, "contact_to_company_unlabeled"),
        AssociationType(2, "companies", "contacts", "Primary", "company_to_contact"),
        AssociationType(280, "companies", "contacts", None, "company_to_contact_unlabeled"),
        AssociationType(3, "deals", "contacts", None, "deal_to_contact"),
        AssociationType(4, "contacts", "deals", None, "contact_to_deal"),
        AssociationType(5, "deals", "companies", "Primary", "deal_to_company"),
        AssociationType(341, "deals", "companies", None, "deal_to_company_unlabeled"),
        AssociationType(6, "companies", "deals", "Primary", "company_to_deal"),
        AssociationType(342, "companies", "deals", None, "company_to_deal_unlabeled"),
        AssociationType(202, "notes", "contacts", None, "note_to_contact"),
        AssociationType(201, "contacts", "notes", None, "contact_to_note"),
        AssociationType(190, "notes", "companies", None, "note_to_company"),
        AssociationType(189, "companies", "notes", None, "company_to_note"),
        AssociationType(214, "notes", "deals", None, "note_to_deal"),
        AssociationType(213, "deals", "notes", None, "deal_to_note"),
        AssociationType(204, "tasks", "contacts", None, "task_to_contact"),
        AssociationType(203, "contacts", "tasks", None, "contact_to_task"),
        AssociationType(192, "tasks", "companies", None, "task_to_company"),
        AssociationType(191, "companies", "tasks", None, "company_to_task"),
        AssociationType(216, "tasks", "deals", None, "task_to_deal"),
        AssociationType(215, "deals", "tasks", None, "deal_to_task"),
    )
}
REVERSE = {1: 2, 2: 1, 279: 280, 280: 279, 3: 4, 4: 3, 5: 6, 6: 5, 341: 342, 342: 341} | {
    a: b
    for pair in ((202, 201), (190, 189), (214, 213), (204, 203), (192, 191), (216, 215))
    for a, b in (pair, pair[::-1])
}
ACTIVITIES = frozenset({"notes", "tasks"})
DEFAULT = {(t.from_type, t.to_type): t.type_id for t in TYPES.values() if t.label is None}
PRIMARY = {("contacts", "companies"): 1, ("deals", "companies"): 5}


def valid_type(type_id: int, from_type: str, to_type: str) -> bool:
    found = TYPES.get(type_id)
    return found is not None and (found.from_type, found.to_type) == (from_type, to_type)


def _add(
    data: PortalData, from_type: str, from_id: str, to_type: str, to_id: str, ids: set[int]
) -> None:
    data.links(from_type, from_id, to_type).setdefault(to_id, set()).update(ids)
    back = {REVERSE[i] for i in ids}
    data.links(to_type, to_id, from_type).setdefault(from_id, set()).update(back)


def _drop(
    data: PortalData, from_type: str, from_id: str, to_type: str, to_id: str, ids: set[int]
) -> None:
    forward = data.links(from_type, from_id, to_type)
    if to_id in forward:
        forward[to_id] -= ids
    backward = data.links(to_type, to_id, from_type)
    if from_id in backward:
        backward[from_id] -= {REVERSE[i] for i in ids}


def _set_primary_company(data: PortalData, contact_id: str, company_id: str | None) -> None:
    record = data.table("contacts").get(contact_id)
    if record is None:
        return
    if record.properties.get("associatedcompanyid") == company_id:
        return
    if company_id is None:
        record.properties.pop("associatedcompanyid", None)
    else:
        record.properties["associatedcompanyid"] = company_id
    stamp = iso_ms(data.touch(record))
    for name in ("lastmodifieddate", "hs_lastmodifieddate"):
        record.properties[name] = stamp
    if data.webhooks is not None:
        data.webhooks.emit(
            portal_id=data.portal.hub_id,
            object_type="contact",
            change="propertyChange",
            object_id=contact_id,
            occurred_ms=to_ms(record.updated_at),
            property_name="associatedcompanyid",
            property_value=company_id,
        )


def _activity_logged(data: PortalData, record_type: str, record_id: str) -> None:
    """A note or task was just associated with this record: its Last Activity Date (and its
    modification dates) move to now, as a property change."""
    record = data.table(record_type).get(record_id)
    schema = SCHEMAS.get(record_type)
    if record is None or record.archived or schema is None or schema.activity:
        return
    stamp = iso_ms(data.touch(record))
    record.properties[LAST_ACTIVITY] = stamp
    for name in schema.modified_props:
        record.properties[name] = stamp
    if data.webhooks is not None:
        data.webhooks.emit(
            portal_id=data.portal.hub_id,
            object_type=schema.singular,
            change="propertyChange",
            object_id=record_id,
            occurred_ms=to_ms(record.updated_at),
            property_name=LAST_ACTIVITY,
            property_value=stamp,
        )


def _pairs(
    from_type: str, from_id: str, to_type: str, to_id: str, ids: set[int]
) -> tuple[tuple[str, str, str, str, set[int]], ...]:
    """The link seen from each end: (a type, a id, b type, b id, type ids from a to b)."""
    return (
        (from_type, from_id, to_type, to_id, ids),
        (to_type, to_id, from_type, from_id, {REVERSE[i] for i in ids}),
    )


def link(
    data: PortalData, from_type: str, from_id: str, to_type: str, to_id: str, type_ids: set[int]
) -> None:
    """Associate two records with ``type_ids`` (given in the from -> to direction)."""
    ids = set(type_ids) | {DEFAULT[(from_type, to_type)]}
    for a_type, a_id, b_type, b_id, kinds in _pairs(from_type, from_id, to_type, to_id, ids):
        primary = PRIMARY.get((a_type, b_type))
        if primary is None or primary not in kinds:
            continue
        for other, other_kinds in list(data.links(a_type, a_id, b_type).items()):
            if other != b_id and primary in other_kinds:
                _drop(data, a_type, a_id, b_type, other, {primary})
        if a_type == "contacts":
            _set_primary_company(data, a_id, b_id)
    new = to_id not in data.links(from_type, from_id, to_type)
    _add(data, from_type, from_id, to_type, to_id, ids)
    if new and (from_type in ACTIVITIES) != (to_type in ACTIVITIES):
        logged_on = (to_type, to_id) if from_type in ACTIVITIES else (from_type, from_id)
        _activity_logged(data, *logged_on)


def unlink(
    data: PortalData,
    from_type: str,
    from_id: str,
    to_type: str,
    to_id: str,
    type_ids: set[int] | None = None,
) -> None:
    """Remove the association: every type, or only the labels ``type_ids`` (removing the
    unlabelled type removes every type, as in HubSpot)."""
    current = set(data.links(from_type, from_id, to_type).get(to_id, set()))
    everything = type_ids is None or DEFAULT[(from_type, to_type)] in type_ids
    remove = current if everything else current & (type_ids or set())
    _drop(data, from_type, from_id, to_type, to_id, remove)
    for a_type, a_id, b_type, b_id, kinds in _pairs(from_type, from_id, to_type, to_id, remove):
        links = data.links(a_type, a_id, b_type)
        if b_id in links and not links[b_id]:
            del links[b_id]
        if a_type == "contacts" and PRIMARY.get((a_type, b_type)) in kinds:
            record = data.table("contacts").get(a_id)
            if record is not None and record.properties.get("associatedcompanyid") == b_id:
                _set_primary_company(data, a_id, None)


def associated(data: PortalData, from_type: str, from_id: str, to_type: str) -> dict[str, set[int]]:
    """The live ``to_type`` records associated with a record, and the types of each link."""
    table = data.table(to_type)
    found = data.links(from_type, from_id, to_type)
    return {
        to_id: set(kinds)
        for to_id, kinds in sorted(found.items(), key=lambda item: int(item[0]))
        if kinds and to_id in table and not table[to_id].archived
    }
