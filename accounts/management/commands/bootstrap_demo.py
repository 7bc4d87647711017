from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.audit import Actor
from accounts.keys import prefix_of
from accounts.models import ApiKey, Organization, User
from accounts.services import api_key_create, organization_create

DEMO_EMAIL = "admin@switchboard.local"
DEMO_ORG = "demo"


class Command(BaseCommand):
    help = (
        "For `make run`: the first time, create a demo organisation, a superuser and an API key "
        "(kept in var/demo-credentials.json, mode 0600); every time, print where to log in."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.VAR_DIR) / "demo-credentials.json"
        stored: dict[str, str] | None = json.loads(path.read_text()) if path.exists() else None
        creds = stored if stored and self._still_valid(stored) else {}
        if not creds:
            creds = self._create()
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(creds, handle, indent=2)
            self.stdout.write(
                self.style.SUCCESS("Created the demo organisation, superuser and API key.")
            )
        base = settings.PUBLIC_URL
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  Switchboard  {base}/",
                    f"  Admin        {base}/admin/   email {creds['email']}   password {creds['password']}",
                    f"  API docs     {base}/api/v1/docs",
                    f"  Connect      {base}/connect/   (HubSpot through the local sandbox)",
                    f"  API key      {creds['api_key']}   (organisation '{creds['organization']}')",
                    f"  Try          curl -H 'Authorization: Bearer {creds['api_key']}' {base}/api/v1/me",
                    "",
                ]
            )
        )

    @staticmethod
    def _still_valid(creds: dict[str, str]) -> bool:
        # The database may have been reset while var/demo-credentials.json stayed.
        user = User.objects.filter(email=creds.get("email", "")).first()
        return (
            user is not None
            and user.check_password(creds.get("password", ""))
            and ApiKey.objects.active()
            .filter(prefix=prefix_of(creds.get("api_key", "")) or "")
            .exists()
        )

    @staticmethod
    def _create() -> dict[str, str]:
        actor = Actor.system("bootstrap_demo")
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.filter(email=DEMO_EMAIL).first()
            if user is None:
                user = User.objects.create_superuser(email=DEMO_EMAIL, password=password)
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            organization = Organization.objects.filter(
                slug=DEMO_ORG
            ).first() or organization_create(name="Demo", slug=DEMO_ORG, owner=user, actor=actor)
            created = api_key_create(
                organization_id=organization.pk, name="demo", created_by_id=user.pk, actor=actor
            )
        return {
            "email": DEMO_EMAIL,
            "password": password,
            "organization": DEMO_ORG,
            "api_key": created.secret,
        }
