"""Reads. Each returns a QuerySet (or one row) already scoped to an organisation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import QuerySet

from .models import ApiKey, Membership, Organization


def api_key_list(*, organization_id: uuid.UUID) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(organization_id=organization_id).select_related("created_by")


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """What authenticating an API key needs to know about it."""

    id: uuid.UUID
    organization_id: uuid.UUID
    organization_slug: str
    organization_name: str
    prefix: str
    key_hash: str
    stale: bool  # last used before the given time (or never): time to record a use


# Every API request runs this, so it is written once rather than compiled by the ORM each time
# (the ORM's compile was the largest single cost of a request). Active = not revoked, as
# ApiKey.objects.active().
# Table names come from the models; every value is a parameter.
_ACTIVE_KEY_SQL = (
    "SELECT k.id, k.organization_id, o.slug, o.name, k.prefix, k.key_hash,"  # noqa: S608
    " (k.last_used_at IS NULL OR k.last_used_at < %s)"
    f" FROM {ApiKey._meta.db_table} k"
    f" JOIN {Organization._meta.db_table} o ON o.id = k.organization_id"
    " WHERE k.prefix = %s AND k.revoked_at IS NULL"
)


def active_key_by_prefix(*, prefix: str, used_since: datetime) -> ActiveKey | None:
    """The unrevoked key with this prefix and its organisation, or None."""
    with connection.cursor() as cursor:
        cursor.execute(_ACTIVE_KEY_SQL, [used_since, prefix])
        row = cursor.fetchone()
    if row is None:
        return None
    key_id, organization_id, slug, name, key_prefix, key_hash, stale = row
    return ActiveKey(
        id=_as_uuid(key_id),
        organization_id=_as_uuid(organization_id),
        organization_slug=slug,
        organization_name=name,
        prefix=key_prefix,
        key_hash=key_hash,
        stale=bool(stale),
    )


def _as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    # PostgreSQL gives UUIDs; SQLite (the embedded stack) gives their hex.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def membership_list(*, user_id: int) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user_id=user_id)
        .select_related("organization")
        .order_by("created_at", "pk")
    )
