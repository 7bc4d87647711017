"""How an API caller is identified: an API key (Bearer) or a signed-in browser session.

Both end in a ``Principal``: the organisation every query is scoped to, the role, and the
actor that audit events name.

A request that sends ``Authorization: Bearer`` is judged by its key alone: a bad, unknown or
revoked key is a 401 there and then, never a fall-through to the session (whose CSRF check
would turn it into a 403). The session's CSRF check applies only to requests the session
cookie actually authenticates.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja.errors import AuthenticationError, HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from core.context import organization_id_var, user_id_var
from core.errors import PermissionDenied

from .audit import Actor
from .keys import key_matches, prefix_of
from .models import MANAGER_ROLES, ApiKey, Role
from .selectors import active_key_by_prefix, membership_list


@dataclass(frozen=True, slots=True)
class Principal:
    organization_id: uuid.UUID
    organization_slug: str
    organization_name: str
    role: Role
    method: Literal["api_key", "session"]
    user_id: int | None = None
    user_email: str | None = None
    api_key_id: uuid.UUID | None = None
    api_key_prefix: str | None = None

    def __str__(self) -> str:
        # Stable identity for per-caller throttling; never includes a secret.
        who = self.api_key_id if self.method == "api_key" else self.user_id
        return f"{self.method}:{who}:{self.organization_id}"

    @property
    def actor(self) -> Actor:
        if self.method == "api_key":
            return Actor(label=f"api_key:{self.api_key_prefix}", api_key_id=self.api_key_id)
        return Actor(label=f"user:{self.user_email}", user_id=self.user_id)

    def require_manager(self) -> None:
        """Raise ``PermissionDenied`` unless the caller may manage the organisation."""
        if self.role not in MANAGER_ROLES:
            raise PermissionDenied(
                "Only an organisation's owners and admins can do this.",
                details={"role": str(self.role)},
            )


def _bind_log_context(principal: Principal) -> None:
    organization_id_var.set(str(principal.organization_id))
    user_id_var.set(str(principal.user_id) if principal.user_id else None)


def _key_principal(token: str, prefix: str) -> Principal | None:
    """The principal of an API key, looked up and (at most once a minute) marked as used in
    one trip to the database thread."""
    now = timezone.now()
    # last_used_at is coarse on purpose: one write a minute per key, not one per request.
    since = now - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    key = active_key_by_prefix(prefix=prefix, used_since=since)
    if key is None or not key_matches(token, key.key_hash):
        return None
    if key.stale:
        ApiKey.objects.filter(pk=key.id).update(last_used_at=now)
    return Principal(
        organization_id=key.organization_id,
        organization_slug=key.organization_slug,
        organization_name=key.organization_name,
        role=Role.ADMIN,
        method="api_key",
        api_key_id=key.id,
        api_key_prefix=key.prefix,
    )


class ApiKeyAuth(HttpBearer):
    """``Authorization: Bearer sbk_...``: an active key of one organisation."""

    async def authenticate(self, request: HttpRequest, token: str) -> Principal:
        prefix = prefix_of(token)
        principal = None if prefix is None else await sync_to_async(_key_principal)(token, prefix)
        if principal is None:
            # Raised, not None: Ninja would try the session next and answer its CSRF refusal.
            raise AuthenticationError()
        _bind_log_context(principal)
        return principal


class SessionAuth(APIKeyCookie):
    """A signed-in browser session (CSRF checked on unsafe methods once the session has
    authenticated someone: without a signed-in session the answer is 401, not a CSRF 403).

    The organisation is the one named by ``X-Organization`` (a slug the user belongs to), or
    else the user's first membership.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        # Ninja checks CSRF here, before knowing whether the cookie signs anyone in.
        return request.COOKIES.get(self.param_name)

    async def authenticate(self, request: HttpRequest, key: str | None) -> Principal | None:
        if not key:
            return None
        user = await request.auser()
        if not user.is_authenticated or not user.is_active:
            return None
        exempt = getattr(request, "_ninja_csrf_exempt", False)
        if self.csrf and not exempt and check_csrf(request) is not None:
            raise HttpError(403, "CSRF check Failed")
        memberships = membership_list(user_id=user.pk)
        wanted = request.headers.get("X-Organization")
        if wanted:
            memberships = memberships.filter(organization__slug=wanted)
        membership = await memberships.afirst()
        if membership is None:
            raise PermissionDenied(
                "You are not a member of that organisation."
                if wanted
                else "You are not a member of any organisation.",
            )
        principal = Principal(
            organization_id=membership.organization_id,
            organization_slug=membership.organization.slug,
            organization_name=membership.organization.name,
            role=Role(membership.role),
            method="session",
            user_id=user.pk,
            user_email=user.email,
        )
        _bind_log_context(principal)
        return principal


def principal_of(request: HttpRequest) -> Principal:
    auth = getattr(request, "auth", None)
    if not isinstance(auth, Principal):
        raise RuntimeError("route is missing authentication")
    return auth
