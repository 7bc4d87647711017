from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts.audit import Actor
from accounts.models import Organization, Role
from accounts.services import (
    api_key_create,
    membership_set,
    organization_create,
    user_get_or_create,
)


class Command(BaseCommand):
    help = (
        "Create an API key for an organisation, creating the organisation and its owner when "
        "missing. The key is printed alone on the last line (shown this once)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="Organisation slug.")
        parser.add_argument("--owner", required=True, help="Owner's email address.")
        parser.add_argument("--name", default="default", help="A name for the key.")

    def handle(self, *args: Any, org: str, owner: str, name: str, **options: Any) -> None:
        actor = Actor.system("create_api_key")
        with transaction.atomic():
            user, user_created = user_get_or_create(email=owner, actor=actor)
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                organization = organization_create(name=org, slug=org, owner=user, actor=actor)
                self.stdout.write(f"Created organisation {org}.")
            elif not organization.memberships.filter(user=user).exists():
                membership_set(organization=organization, user=user, role=Role.OWNER, actor=actor)
            created = api_key_create(
                organization_id=organization.pk, name=name, created_by_id=user.pk, actor=actor
            )
        if user_created:
            self.stdout.write(
                f"Created user {user.email} (no password; set one with changepassword)."
            )
        self.stdout.write(f"API key {created.api_key.prefix} ({name}) for {org}:")
        self.stdout.write(created.secret)
