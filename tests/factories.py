"""Test data builders: each makes a valid row with unique values, overridable by keyword."""

from __future__ import annotations

from itertools import count

from accounts.models import Membership, Organization, Role, User

_seq = count(1)
PASSWORD = "correct horse battery"


def make_user(*, email: str | None = None, password: str = PASSWORD, **fields: object) -> User:
    return User.objects.create_user(
        email=email or f"person{next(_seq)}@example.com", password=password, **fields
    )


def make_organization(*, name: str | None = None, slug: str | None = None) -> Organization:
    n = next(_seq)
    return Organization.objects.create(name=name or f"Org {n}", slug=slug or f"org-{n}")


def make_membership(
    *,
    organization: Organization | None = None,
    user: User | None = None,
    role: Role = Role.MEMBER,
) -> Membership:
    return Membership.objects.create(
        organization=organization or make_organization(), user=user or make_user(), role=role
    )
