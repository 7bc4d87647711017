"""Writes for people, organisations and API keys. Keyword-only; each writes its audit event."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from core.errors import Conflict, NotFound, ValidationFailed

from .audit import Actor, audit_record
from .keys import generate_key
from .models import ApiKey, Membership, Organization, Role, User


def user_get_or_create(
    *, email: str, password: str | None = None, actor: Actor
) -> tuple[User, bool]:
    email = User.objects.normalize_email(email).lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return user, False
    user = User.objects.create_user(email=email, password=password)
    audit_record(
        actor=actor,
        action="user.created",
        entity_type="user",
        entity_id=user.pk,
        organization_id=None,
        changes={"email": email},
    )
    return user, True


def _unique_slug(base: str) -> str:
    root = slugify(base)[:48] or "org"
    slug, n = root, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{root}-{n}"
    return slug


@transaction.atomic
def organization_create(
    *, name: str, slug: str | None = None, owner: User | None, actor: Actor
) -> Organization:
    if slug is not None and Organization.objects.filter(slug=slug).exists():
        raise Conflict(f"An organisation with slug {slug!r} exists.", details={"slug": slug})
    organization = Organization.objects.create(name=name, slug=slug or _unique_slug(name))
    audit_record(
        actor=actor,
        action="organization.created",
        entity_type="organization",
        entity_id=organization.pk,
        organization_id=organization.pk,
        changes={"name": name, "slug": organization.slug},
    )
    if owner is not None:
        membership_set(organization=organization, user=owner, role=Role.OWNER, actor=actor)
    return organization


@transaction.atomic
def membership_set(
    *, organization: Organization, user: User, role: Role, actor: Actor
) -> Membership:
    """Add ``user`` to ``organization`` with ``role``, or change the role they have."""
    membership, created = Membership.objects.select_for_update().get_or_create(
        organization=organization, user=user, defaults={"role": role}
    )
    if not created and membership.role == role:
        return membership
    before = None if created else membership.role
    if not created:
        membership.role = role
        membership.save(update_fields=["role"])
    audit_record(
        actor=actor,
        action="membership.created" if created else "membership.updated",
        entity_type="membership",
        entity_id=membership.pk,
        organization_id=organization.pk,
        changes={"user": user.email, "role": [before, str(role)] if before else str(role)},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Actor) -> None:
    audit_record(
        actor=actor,
        action="membership.deleted",
        entity_type="membership",
        entity_id=membership.pk,
        organization_id=membership.organization_id,
        changes={"user": membership.user.email, "role": membership.role},
    )
    membership.delete()


@transaction.atomic
def organization_update(
    *, organization: Organization, changes: Mapping[str, object], actor: Actor
) -> None:
    """Record an edit already applied to ``organization`` (the admin saves the row itself)."""
    if changes:
        audit_record(
            actor=actor,
            action="organization.updated",
            entity_type="organization",
            entity_id=organization.pk,
            organization_id=organization.pk,
            changes=dict(changes),
        )


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    api_key: ApiKey
    secret: str  # the whole key; never stored, shown to the caller once


@transaction.atomic
def api_key_create(
    *, organization_id: uuid.UUID, name: str, created_by_id: int | None, actor: Actor
) -> CreatedApiKey:
    name = name.strip()
    if not name:
        raise ValidationFailed("The key needs a name.", details={"fields": {"name": "required"}})
    for _ in range(3):
        material = generate_key()
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    organization_id=organization_id,
                    name=name,
                    prefix=material.prefix,
                    key_hash=material.key_hash,
                    created_by_id=created_by_id,
                )
            break
        except IntegrityError:  # prefix collision: 62^8 space, but never fail a user for it
            continue
    else:
        raise Conflict("Could not allocate a unique key prefix; try again.")
    audit_record(
        actor=actor,
        action="api_key.created",
        entity_type="api_key",
        entity_id=api_key.pk,
        organization_id=organization_id,
        changes={"name": name, "prefix": api_key.prefix},
    )
    return CreatedApiKey(api_key=api_key, secret=material.secret)


@transaction.atomic
def api_key_revoke(*, organization_id: uuid.UUID, api_key_id: uuid.UUID, actor: Actor) -> ApiKey:
    """Revoke a key of ``organization_id``. Another organisation's key is ``NotFound``.

    Revoking a revoked key changes nothing and returns it as it is.
    """
    api_key = (
        ApiKey.objects.select_for_update()
        .filter(organization_id=organization_id, pk=api_key_id)
        .first()
    )
    if api_key is None:
        raise NotFound("No such API key.", details={"id": str(api_key_id)})
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="api_key.revoked",
            entity_type="api_key",
            entity_id=api_key.pk,
            organization_id=organization_id,
            changes={"prefix": api_key.prefix},
        )
    return api_key
