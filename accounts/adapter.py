from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction
from django.http import HttpRequest

from .audit import Actor
from .models import User
from .services import organization_create


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    """Signing up in the browser also creates the person's own organisation (they own it)."""

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        with transaction.atomic():
            saved: User = super().save_user(request, user, form, commit=commit)
            if commit:
                actor = Actor(label=f"user:{saved.email}", user_id=saved.pk)
                local = saved.email.split("@", 1)[0]
                organization_create(name=f"{local}'s organisation", owner=saved, actor=actor)
        return saved
