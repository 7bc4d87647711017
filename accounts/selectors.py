"""Reads. Each returns a QuerySet (or one row) already scoped to an organisation."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from .models import ApiKey, Membership


def api_key_list(*, organization_id: uuid.UUID) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(organization_id=organization_id).select_related("created_by")


def api_key_by_prefix(*, prefix: str) -> QuerySet[ApiKey]:
    return ApiKey.objects.active().filter(prefix=prefix).select_related("organization")


def membership_list(*, user_id: int) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(user_id=user_id)
        .select_related("organization")
        .order_by("created_at", "pk")
    )
