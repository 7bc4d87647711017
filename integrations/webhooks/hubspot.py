"""HubSpot's webhook payloads: the delivery's shape, and what each event means for the mirror.

A delivery is a JSON array (HubSpot batches up to 100 events) of objects like
``{"eventId", "subscriptionId", "portalId", "appId", "occurredAt", "subscriptionType",
"attemptNumber", "objectId", "changeSource", "propertyName", "propertyValue"}``. Every event is
stored as it came; only the fields routing needs are validated here (each event on its own: see
``views.py``, "Partial deliveries"), the rest is kept raw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from ..providers.unified import ObjectType

PROVIDER = "hubspot"

Action = Literal["fetch", "delete", "purge"]

# "contact.creation" -> contact; the generic "object.*" subscriptions name the type by id.
_PREFIXES: dict[str, ObjectType] = {"contact": "contact", "company": "company", "deal": "deal"}
_TYPE_IDS: dict[str, ObjectType] = {"0-1": "contact", "0-2": "company", "0-3": "deal"}
# What an event kind asks of the mirror (kinds not listed are not record changes).
_FETCH_KINDS = frozenset({"creation", "propertyChange", "restore", "associationChange"})

# Ids arrive as numbers; strings are accepted too. Bounded so the stored key always fits.
Id = (
    Annotated[StrictInt, Field(ge=0, lt=10**30)]
    | Annotated[StrictStr, Field(min_length=1, max_length=40)]
)


class HubSpotEvent(BaseModel):
    """The fields of an event that storing and routing rely on; others are kept raw."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event_id: Id = Field(alias="eventId")
    portal_id: Id = Field(alias="portalId")
    subscription_type: StrictStr = Field(alias="subscriptionType", min_length=1, max_length=100)
    occurred_at: StrictInt | None = Field(None, alias="occurredAt", ge=0, le=10**14)
    object_id: Id | None = Field(None, alias="objectId")

    def key(self) -> str:
        """The stored event id: HubSpot's ``eventId`` within its portal (HubSpot does not
        promise event ids unique across portals; within one, a redelivery keeps its id)."""
        return f"{self.portal_id}:{self.event_id}"

    def occurred(self) -> datetime | None:
        return None if self.occurred_at is None else ms_to_datetime(self.occurred_at)


def ms_to_datetime(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Change:
    """One thing an event asks of the mirror: fetch a record again, or mark it deleted
    (``purge``: deleted for privacy, its personal data removed from the mirror too)."""

    object_type: ObjectType
    record_id: str
    action: Action
    at: datetime | None


def object_type_of(payload: dict[str, Any]) -> ObjectType | None:
    prefix = str(payload.get("subscriptionType", "")).partition(".")[0]
    if prefix == "object":
        return _TYPE_IDS.get(str(payload.get("objectTypeId", "")))
    return _PREFIXES.get(prefix)


def _id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value).strip()
    return text if text and len(text) <= 64 else None


def changes_of(payload: dict[str, Any]) -> list[Change]:
    """What a stored event asks of the mirror; empty when it is not a change of a record
    type we mirror (tickets, conversations, unknown kinds...)."""
    object_type = object_type_of(payload)
    if object_type is None:
        return []
    kind = str(payload.get("subscriptionType", "")).partition(".")[2]
    occurred = payload.get("occurredAt")
    at = ms_to_datetime(occurred) if isinstance(occurred, int) and occurred >= 0 else None
    object_id = _id(payload.get("objectId"))

    def change(record_id: str | None, action: Action) -> list[Change]:
        return [] if record_id is None else [Change(object_type, record_id, action, at)]

    if kind == "associationChange":
        return change(_id(payload.get("fromObjectId")) or object_id, "fetch")
    if kind in _FETCH_KINDS:
        return change(object_id, "fetch")
    if kind == "deletion":
        return change(object_id, "delete")
    if kind == "privacyDeletion":
        return change(object_id, "purge")
    if kind == "merge":
        # The merged records live on as one (newObjectId when HubSpot made a new record, else
        # the primary); the others are gone.
        survivor = (
            _id(payload.get("newObjectId")) or _id(payload.get("primaryObjectId")) or object_id
        )
        merged = payload.get("mergedObjectIds")
        gone = [_id(m) for m in merged] if isinstance(merged, list) else []
        found = change(survivor, "fetch")
        for record_id in dict.fromkeys(g for g in gone if g and g != survivor):
            found += change(record_id, "delete")
        return found
    return []
