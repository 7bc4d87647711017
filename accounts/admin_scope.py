"""The admin, scoped to organisations for staff who are not superusers.

Superusers see every row. Any other staff member sees only the rows of the organisations they
are a member of (``Membership``): changelists, object pages (change, history, delete, and every
custom view built on ``get_object``), actions (they act on the changelist's queryset), foreign
key choices, autocomplete answers and list filters. An object outside the scope is simply not in
the admin's queryset, so its URLs answer exactly as a nonexistent object's do.

Every registered model admin is either an ``OrganizationScopedAdmin`` (rows belong to
organisations; ``organization_path`` says how a row reaches its organisation) or a
``SuperuserOnlyAdmin`` (rows that belong to no organisation; ``superuser_only_reason`` says
why). ``tests/security/test_admin_scoping.py`` fails on any other kind.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

from django.contrib import admin
from django.contrib.admin.filters import AllValuesFieldListFilter, RelatedOnlyFieldListFilter
from django.contrib.admin.utils import get_fields_from_path
from django.db.models import Field, ForeignObjectRel, Model, QuerySet
from django.forms import ModelChoiceField, ModelMultipleChoiceField
from django.http import HttpRequest

from .models import Membership

_M = TypeVar("_M", bound=Model)
_C = TypeVar("_C", bound=Model)
_P = TypeVar("_P", bound=Model)
_F = TypeVar("_F", bound=ModelChoiceField[Any])

_CACHE_ATTRIBUTE = "_switchboard_admin_scope"


def organization_scope(request: HttpRequest) -> frozenset[uuid.UUID] | None:
    """The ids of the organisations this request may see in the admin; ``None`` is all of
    them (an active superuser). Read once per request."""
    user = request.user
    if user.is_active and user.is_superuser:
        return None
    cached: frozenset[uuid.UUID] | None = request.__dict__.get(_CACHE_ATTRIBUTE)
    if cached is None:
        cached = frozenset()
        if user.is_authenticated:
            cached = frozenset(
                Membership.objects.filter(user_id=user.pk).values_list("organization_id", flat=True)
            )
        request.__dict__[_CACHE_ATTRIBUTE] = cached
    return cached


def _is_multi_valued(model: type[Model], path: str) -> bool:
    fields: Sequence[Field[Any, Any] | ForeignObjectRel] = get_fields_from_path(model, path)
    return any(f.many_to_many or f.one_to_many for f in fields)


def scope_queryset(
    request: HttpRequest, queryset: QuerySet[_M], organization_path: str
) -> QuerySet[_M]:
    """``queryset`` narrowed to the request's organisations along ``organization_path`` (a
    lookup from the model to an ``Organization``: ``organization``, ``connection__organization``,
    ``id`` for the organisation itself). A path through a to-many relation matches a row once."""
    ids = organization_scope(request)
    if ids is None:
        return queryset
    lookup = {f"{organization_path}__in": ids}
    if _is_multi_valued(queryset.model, organization_path):
        return queryset.filter(pk__in=queryset.model._default_manager.filter(**lookup).values("pk"))
    return queryset.filter(**lookup)


def scope_choices(
    site: admin.AdminSite, request: HttpRequest, queryset: QuerySet[_M]
) -> QuerySet[_M]:
    """The choices of a relation field as the related model's admin scopes them: its
    organisations' rows, nothing of a superuser-only model, and everything of a model that is
    not in the admin (content types, permissions)."""
    related = site._registry.get(queryset.model)
    if isinstance(related, OrganizationScopedAdmin):
        return related.scope_queryset(request, queryset)
    if isinstance(related, SuperuserOnlyAdmin) and organization_scope(request) is not None:
        return queryset.none()
    return queryset


def _scoped_formfield(
    site: admin.AdminSite, request: HttpRequest, formfield: _F | None
) -> _F | None:
    if formfield is not None and formfield.queryset is not None:
        formfield.queryset = scope_choices(site, request, formfield.queryset)
    return formfield


class ScopedAllValuesFieldListFilter(AllValuesFieldListFilter):
    """``AllValuesFieldListFilter`` whose choices come from the admin's (scoped) queryset, also
    for a field across a relation (Django reads those from every row of the related model)."""

    def __init__(
        self,
        field: Field[Any, Any],
        request: HttpRequest,
        params: dict[str, Any],
        model: type[Model],
        model_admin: admin.ModelAdmin[Any],
        field_path: str,
    ) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = (
            model_admin.get_queryset(request)
            .order_by(field_path)
            .values_list(field_path, flat=True)
            .distinct()
        )


def scoped_list_filter(
    model: type[Model], list_filter: Sequence[Any], request: HttpRequest
) -> Sequence[Any]:
    """The admin's list filters with every relation filter offering only related rows the
    request may see (the organisation filter lists its own organisations, not every one)."""
    if organization_scope(request) is None:
        return list_filter
    scoped: list[Any] = []
    for entry in list_filter:
        if not isinstance(entry, str):
            scoped.append(entry)
            continue
        field = get_fields_from_path(model, entry)[-1]
        if field.is_relation:
            scoped.append((entry, RelatedOnlyFieldListFilter))
        elif "__" in entry and not field.choices and field.get_internal_type() != "BooleanField":
            scoped.append((entry, ScopedAllValuesFieldListFilter))
        else:
            scoped.append(entry)
    return scoped


class OrganizationScopedAdmin(admin.ModelAdmin[_M]):
    """A model admin whose rows belong to organisations (see the module's docstring).

    A subclass that builds its queryset without ``super().get_queryset`` passes it through
    ``scope_queryset``; a custom view finds its object with ``get_object``.
    """

    organization_path: ClassVar[str] = "organization"

    def scope_queryset(self, request: HttpRequest, queryset: QuerySet[_M]) -> QuerySet[_M]:
        return scope_queryset(request, queryset, self.organization_path)

    def get_queryset(self, request: HttpRequest) -> QuerySet[_M]:
        return self.scope_queryset(request, super().get_queryset(request))

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return _scoped_formfield(self.admin_site, request, formfield)

    def formfield_for_manytomany(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> ModelMultipleChoiceField[Any] | None:
        formfield = super().formfield_for_manytomany(db_field, request, **kwargs)
        return _scoped_formfield(self.admin_site, request, formfield)

    def get_list_filter(self, request: HttpRequest) -> Any:
        return scoped_list_filter(self.model, super().get_list_filter(request), request)


class ScopedTabularInline(admin.TabularInline[_C, _P]):
    """An inline whose relation fields offer only what the request may see."""

    def formfield_for_foreignkey(
        self, db_field: Any, request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        return _scoped_formfield(self.admin_site, request, formfield)


class SuperuserOnlyAdmin(admin.ModelAdmin[_M]):
    """A model admin for rows that belong to no organisation: only superusers see it at all
    (other staff get the admin's 403, whatever their model permissions)."""

    superuser_only_reason: ClassVar[str] = ""

    @staticmethod
    def _superuser(request: HttpRequest) -> bool:
        return organization_scope(request) is None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._superuser(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._superuser(request) and super().has_delete_permission(request, obj)
