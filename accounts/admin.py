from __future__ import annotations

from typing import Any

from allauth.account.admin import EmailAddressAdmin as AllauthEmailAddressAdmin
from allauth.account.models import EmailAddress
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm
from django.contrib.auth.forms import UserChangeForm as BaseUserChangeForm
from django.contrib.auth.models import Group
from django.db.models import Count, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from .admin_scope import (
    OrganizationScopedAdmin,
    ScopedTabularInline,
    SuperuserOnlyAdmin,
    organization_scope,
)
from .audit import Actor
from .models import ApiKey, AuditEvent, Membership, Organization, Role, User
from .services import (
    api_key_revoke,
    membership_remove,
    membership_set,
    organization_create,
    organization_update,
)


def _actor(request: HttpRequest) -> Actor:
    return Actor(label=f"user:{request.user}", user_id=request.user.pk)


class UserCreationForm(BaseUserCreationForm[User]):
    class Meta:
        model = User
        fields = ("email",)


class UserChangeForm(BaseUserChangeForm[User]):
    class Meta:
        model = User
        fields = "__all__"


def _superuser(request: HttpRequest) -> bool:
    return organization_scope(request) is None


@admin.register(User)
class UserAdmin(OrganizationScopedAdmin[User], DjangoUserAdmin):  # type: ignore[type-arg]  # bound is AbstractUser; ours is email-only
    """People. A person can belong to several organisations and their account carries
    installation-wide powers (staff, superuser, groups, permissions, password), so only
    superusers add, change or delete one. Other staff see, read-only, the people who share an
    organisation with them (who is in my organisation; the members inline picks from them)."""

    organization_path = "memberships__organization"
    form = UserChangeForm
    add_form = UserCreationForm
    ordering = ("email",)
    list_display = ("email", "full_name", "is_staff", "is_superuser", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "full_name")
    readonly_fields = ("date_joined", "last_login")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    member_fieldsets = (
        (None, {"fields": ("email", "full_name", "is_active")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return super().get_fieldsets(request, obj) if _superuser(request) else self.member_fieldsets

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _superuser(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _superuser(request) and super().has_delete_permission(request, obj)


class MembershipInline(ScopedTabularInline[Membership, Organization]):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin[Organization]):
    """Edits go through the services so that every change leaves an audit event.

    Only superusers add organisations: a new one has no members yet, so it would be outside
    the scope of any other staff member who made it."""

    organization_path = "id"

    list_display = ("name", "slug", "member_count", "created_at")
    search_fields = ("name", "slug", "memberships__user__email")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at")
    inlines = (MembershipInline,)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _superuser(request) and super().has_add_permission(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        # Ordered again: a grouped query drops Meta.ordering (autocomplete pages through it).
        annotated = super().get_queryset(request).annotate(member_total=Count("memberships"))
        return annotated.order_by("name", "pk")

    @admin.display(description="members", ordering="member_total")
    def member_count(self, obj: Organization) -> int:
        return int(getattr(obj, "member_total", 0))

    def save_model(
        self, request: HttpRequest, obj: Organization, form: ModelForm[Organization], change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
            changed = {name: str(form.cleaned_data.get(name)) for name in form.changed_data}
            organization_update(organization=obj, changes=changed, actor=_actor(request))
        else:
            created = organization_create(
                name=obj.name, slug=obj.slug, owner=None, actor=_actor(request)
            )
            obj.pk, obj.created_at = created.pk, created.created_at
            obj._state.adding = False

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        actor = _actor(request)
        formset.save(commit=False)  # sorts rows into new, changed and deleted; saves nothing
        for membership in formset.deleted_objects:
            membership_remove(membership=membership, actor=actor)
        for membership, fields in formset.changed_objects:
            if "user" in fields:
                # Another person in this row: the old membership ends, a new one begins.
                membership_remove(membership=Membership.objects.get(pk=membership.pk), actor=actor)
            membership_set(
                organization=form.instance,
                user=membership.user,
                role=Role(membership.role),
                actor=actor,
            )
        for membership in formset.new_objects:
            membership_set(
                organization=form.instance,
                user=membership.user,
                role=Role(membership.role),
                actor=actor,
            )


@admin.register(ApiKey)
class ApiKeyAdmin(OrganizationScopedAdmin[ApiKey]):
    """Keys are listed and revoked here; the secret is never stored, so never shown.

    New keys come from the API or ``manage.py create_api_key``, which show the key once.
    """

    list_display = (
        "name",
        "prefix",
        "organization",
        "active",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "organization")
    search_fields = ("name", "prefix", "organization__name", "organization__slug")
    list_select_related = ("organization",)
    ordering = ("-created_at", "-id")  # autocomplete pages through it: keep it ordered
    fields = (
        "id",
        "organization",
        "name",
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = (
        "id",
        "organization",
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    actions = ("revoke",)

    @admin.display(boolean=True)
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False  # revoke instead: the row keeps the audit trail meaningful

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(
                organization_id=api_key.organization_id,
                api_key_id=api_key.pk,
                actor=_actor(request),
            )
            count += 1
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)


@admin.register(AuditEvent)
class AuditEventAdmin(OrganizationScopedAdmin[AuditEvent]):
    """Other staff than superusers see their organisations' events (not those of no
    organisation: sign-ins, installation-wide changes)."""

    list_display = (
        "created_at",
        "actor_label",
        "action",
        "entity_type",
        "entity_id",
        "organization",
        "request_id",
    )
    list_filter = ("action", "entity_type", "organization")
    search_fields = ("actor_label", "action", "entity_id", "request_id")
    list_select_related = ("organization",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False


# Installation-wide models of Django and allauth: no organisation owns their rows.
admin.site.unregister(Group)
admin.site.unregister(EmailAddress)


@admin.register(Group)
class GroupAdmin(SuperuserOnlyAdmin[Group], DjangoGroupAdmin):
    superuser_only_reason = (
        "Permission groups are shared by every organisation's staff: changing one changes "
        "what staff of other organisations may do."
    )


@admin.register(EmailAddress)
class EmailAddressAdmin(SuperuserOnlyAdmin[Any], AllauthEmailAddressAdmin):  # type: ignore[misc]  # allauth is untyped
    superuser_only_reason = (
        "A person's sign-in addresses belong to their account, which can span organisations; "
        "verifying or changing one affects their access to all of them."
    )
