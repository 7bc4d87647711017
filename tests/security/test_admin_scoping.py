"""The admin, scoped to organisations, walked from its own registry.

Every model admin in ``admin.site._registry`` and every URL it serves (changelist, change,
history, delete, its custom views from ``get_urls()``), and every site-wide admin URL, as:

- a signed-in member of ``bravo`` who is not staff: the login redirect, everywhere;
- a staff member of ``bravo`` (not a superuser) holding every model permission: ``alpha``'s
  rows are absent from every changelist, filter, autocomplete answer and page, and each URL
  of an ``alpha`` object (GET and POST, actions included) answers exactly as a nonexistent
  object's does, changing nothing; ``bravo``'s rows are there;
- a superuser: everything.

A registered model admin that is neither organisation-scoped nor superuser-only (with its
reason) fails the walk.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.db import models
from django.forms import ModelChoiceField
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.admin_scope import OrganizationScopedAdmin, SuperuserOnlyAdmin
from accounts.models import Role, User
from integrations.models import Connection
from tests.factories import make_membership
from tests.security.conftest import (
    Tenant,
    Tenants,
    assert_unchanged,
    outside_of,
    project_models,
)
from workflows.models import Workflow

ADMIN = "/admin/"

# Site-wide admin routes (not a model admin's): what each is, walked below.
SITE_ROUTES = {
    "admin/": "index",
    "admin/login/": "login",
    "admin/logout/": "logout",
    "admin/password_change/": "own password",
    "admin/password_change/done/": "own password",
    "admin/autocomplete/": "autocomplete",
    "admin/jsi18n/": "javascript catalogue",
    "admin/r/<path:content_type_id>/<path:object_id>/": "view on site",
    "admin/(?P<url>.*)$": "catch-all",
}
APP_INDEX = re.compile(r"^admin/\^\(\?P<app_label>[a-z|]+\)/\$$")


def registry() -> list[tuple[type[models.Model], ModelAdmin[Any]]]:
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def base(model: type[models.Model]) -> str:
    return f"{ADMIN}{model._meta.app_label}/{model._meta.model_name}/"


def object_routes(model_admin: ModelAdmin[Any]) -> list[tuple[str, tuple[str, ...]]]:
    """The model admin's URL patterns that name one object: (route, its parameters)."""
    routes = []
    for pattern in model_admin.get_urls():
        assert isinstance(pattern, URLPattern)
        names = tuple(pattern.pattern.regex.groupindex)
        if names:
            routes.append((str(pattern.pattern), names))
    return routes


# The value of each URL parameter for a target object. A parameter missing here fails the walk.
def parameter_values(target: models.Model | None, model: type[models.Model]) -> dict[str, str]:
    if target is None:  # a nonexistent object
        pk: Any = uuid.uuid4() if isinstance(model._meta.pk, models.UUIDField) else 2_000_000_000
        return {"object_id": str(pk), "id": str(pk), "approval_id": str(uuid.uuid4())}
    values = {"object_id": str(target.pk), "id": str(target.pk)}
    approval = getattr(target, "approvals", None)
    values["approval_id"] = str(approval.first().pk) if approval is not None else str(uuid.uuid4())
    return values


def fill(route: str, names: tuple[str, ...], values: dict[str, str]) -> str:
    missing = [n for n in names if n not in values]
    assert not missing, f"{route}: no value for URL parameter(s) {missing}"
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)], route)


@dataclass(frozen=True)
class Outcome:
    """What a response says, with the object id in it made generic."""

    status: int
    location: str
    messages: tuple[str, ...]


def outcome(response: Any, ids: list[str]) -> Outcome:
    def generic(text: str) -> str:
        for value in ids:
            text = text.replace(value, "<id>")
        return text

    messages = tuple(generic(str(m)) for m in get_messages(response.wsgi_request))
    return Outcome(response.status_code, generic(response.get("Location", "")), messages)


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@dataclass
class People:
    staff_user: User
    staff: Client  # bravo's staff member with every model permission, not a superuser
    superuser: Client
    member: Client  # bravo's member, not staff


@pytest.fixture
def people(tenants: Tenants) -> People:
    staff = User.objects.create_user("staff@bravo-ops.test", None, is_staff=True)
    staff.user_permissions.set(Permission.objects.all())
    make_membership(organization=tenants.bravo.org, user=staff, role=Role.ADMIN)
    superuser = User.objects.create_superuser("root@ops.test", None)
    return People(staff, login(staff), login(superuser), login(tenants.bravo.member))


def rows_of(t: Tenant) -> dict[type[models.Model], models.Model]:
    """One row of every registered model for the tenant (installation-wide ones included)."""
    rows = t.rows()
    rows[Group] = Group.objects.get_or_create(name=f"{t.label} operators")[0]
    rows[EmailAddress] = EmailAddress.objects.get_or_create(user=t.owner, email=t.owner.email)[0]
    return rows


def admin_routes() -> set[str]:
    def walk(patterns: list[Any], prefix: str) -> Iterator[str]:
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            else:
                yield prefix + str(p.pattern)

    return {r for r in walk(get_resolver().url_patterns, "") if r.startswith("admin/")}


# What a POST to an object URL sends: enough for each view to act if it found the object.
POST_DATA = {
    "post": "yes",
    "decision": "approve",
    "comment": "from another organisation",
    "input": "{}",
    "password1": "Another-0rganisation!",
    "password2": "Another-0rganisation!",
}


def call(client: Client, method: str, url: str) -> Any:
    client.cookies.pop("messages", None)  # only this response's messages count
    return client.post(url, POST_DATA) if method == "POST" else client.get(url)


def ids_in(values: dict[str, str]) -> list[str]:
    return sorted(set(values.values()), key=len, reverse=True)


def test_every_registered_model_admin_is_scoped_or_superuser_only() -> None:
    unclassified = [
        model._meta.label
        for model, model_admin in registry()
        if not isinstance(model_admin, OrganizationScopedAdmin)
        and not (isinstance(model_admin, SuperuserOnlyAdmin) and model_admin.superuser_only_reason)
    ]
    assert not unclassified, (
        f"{unclassified}: make each an OrganizationScopedAdmin (organization_path) or a "
        "SuperuserOnlyAdmin (superuser_only_reason); see accounts/admin_scope.py"
    )


def test_the_walk_covers_every_admin_url() -> None:
    walked = set(SITE_ROUTES)
    for model, model_admin in registry():
        walked |= {f"admin/{base(model)[len(ADMIN) :]}{p.pattern}" for p in model_admin.get_urls()}
    unwalked = {r for r in admin_routes() - walked if not APP_INDEX.match(r)}
    assert not unwalked


def every_admin_url(t: Tenant) -> list[str]:
    rows = rows_of(t)
    urls = [ADMIN, f"{ADMIN}password_change/", f"{ADMIN}jsi18n/", f"{ADMIN}no-such-page/"]
    urls += [f"{ADMIN}{app}/" for app in {m._meta.app_label for m, _ in registry()}]
    urls.append(
        f"{ADMIN}autocomplete/?app_label=accounts&model_name=apikey&field_name=organization"
    )
    for model, model_admin in registry():
        urls += [base(model), f"{base(model)}add/"]
        row = rows[model]
        ct = ContentType.objects.get_for_model(model)
        urls.append(f"{ADMIN}r/{ct.pk}/{row.pk}/")
        for route, names in object_routes(model_admin):
            urls.append(base(model) + fill(route, names, parameter_values(row, model)))
    return urls


def test_signed_in_people_who_are_not_staff_get_only_the_login_page(
    tenants: Tenants, people: People
) -> None:
    urls = every_admin_url(tenants.alpha) + every_admin_url(tenants.bravo)
    for url in urls:
        for method in ("GET", "POST"):
            response = call(people.member, method, url)
            assert response.status_code == 302, (method, url, response.status_code)
            assert response["Location"].startswith(f"{ADMIN}login/?next="), (method, url)
    assert people.member.get(f"{ADMIN}login/").status_code == 200
    print(f"\n{len(urls)} admin URLs, GET and POST, as a member who is not staff")


def test_staff_see_and_touch_only_their_organisations_rows(
    tenants: Tenants, people: People, sandbox: Any, watch_side_effects: Any
) -> None:
    alpha, bravo = tenants.alpha, tenants.bravo
    theirs, mine = rows_of(alpha), rows_of(bravo)
    staff = people.staff
    request = RequestFactory().get(ADMIN)
    request.user = people.staff_user
    before = outside_of(bravo.org)
    calls_before = sandbox.counters()["total"]
    started, walked = time.monotonic(), 0
    with watch_side_effects() as quiet:
        for model, model_admin in registry():
            label = model._meta.label
            if isinstance(model_admin, SuperuserOnlyAdmin):
                for url in [base(model), f"{base(model)}add/"] + [
                    base(model) + fill(route, names, parameter_values(row, model))
                    for row in (theirs[model], mine[model])
                    for route, names in object_routes(model_admin)
                ]:
                    # (``<id>/`` redirects to ``<id>/change/`` first, for anyone.)
                    assert staff.get(url, follow=True).status_code == 403, url
                    walked += 1
                continue
            a, b = theirs[model], mine[model]

            # The changelist: bravo's row, never alpha's (nor any of alpha's data in filters).
            response = staff.get(base(model))
            walked += 1
            assert response.status_code == 200, label
            listed = {row.pk for row in response.context["cl"].result_list}
            assert b.pk in listed, f"{label}: bravo's row is not listed"
            assert a.pk not in listed, f"{label}: alpha's row is listed"
            assert not alpha.leaks(response.content.decode()), label

            # Every URL of one object: alpha's answers as a nonexistent one's, bravo's not.
            for route, names in object_routes(model_admin):
                theirs_values = parameter_values(a, model)
                missing_values = parameter_values(None, model)
                for method in ("GET", "POST"):
                    missing = call(staff, method, base(model) + fill(route, names, missing_values))
                    got = call(staff, method, base(model) + fill(route, names, theirs_values))
                    walked += 2
                    where = f"{label} {method} {route}"
                    assert outcome(got, ids_in(theirs_values)) == outcome(
                        missing, ids_in(missing_values)
                    ), where
                    assert not alpha.leaks(got.content.decode()), where
                    if method == "GET" and outcome(missing, []).messages:
                        # A "no such object" answer: bravo's own object must not get it.
                        own = call(
                            staff,
                            "GET",
                            base(model) + fill(route, names, parameter_values(b, model)),
                        )
                        walked += 1
                        assert outcome(own, ids_in(parameter_values(b, model))) != outcome(
                            missing, ids_in(missing_values)
                        ), f"{where}: bravo's object is not found"
                        assert not alpha.leaks(own.content.decode()), where

            # Every action, on alpha's row: as on a nonexistent row (nothing done).
            missing_pk = parameter_values(None, model)["object_id"]
            for action in model_admin.get_actions(request):
                staff.cookies.pop("messages", None)
                got = staff.post(base(model), {"action": action, "_selected_action": [a.pk]})
                staff.cookies.pop("messages", None)
                missing = staff.post(
                    base(model), {"action": action, "_selected_action": [missing_pk]}
                )
                walked += 2
                assert got.status_code == missing.status_code, f"{label} action {action}"
                assert [str(m) for m in get_messages(got.wsgi_request)] == [
                    str(m) for m in get_messages(missing.wsgi_request)
                ], f"{label} action {action}"

            # View on site: as for a nonexistent object.
            ct = ContentType.objects.get_for_model(model)
            got = staff.get(f"{ADMIN}r/{ct.pk}/{a.pk}/")
            missing = staff.get(f"{ADMIN}r/{ct.pk}/{missing_pk}/")
            walked += 2
            assert (got.status_code, got.content) == (missing.status_code, missing.content)

        # Site-wide pages: nothing of alpha's, no superuser-only model offered.
        for url in [ADMIN, f"{ADMIN}password_change/", f"{ADMIN}jsi18n/"] + [
            f"{ADMIN}{app}/" for app in {m._meta.app_label for m, _ in registry()}
        ]:
            response = staff.get(url)
            walked += 1
            assert response.status_code in (200, 404), url
            body = response.content.decode()
            assert not alpha.leaks(body), url
            assert "/admin/auth/group/" not in body
            assert "/admin/account/emailaddress/" not in body

    assert quiet.published == [], "Celery messages went out"
    assert quiet.callbacks == [], "work was queued for after the commit"
    assert sandbox.counters()["total"] == calls_before, "a provider call went out"
    assert_unchanged(before, outside_of(bravo.org))
    print(
        f"\n{len(registry())} model admins, {walked} requests in {time.monotonic() - started:.1f} s"
    )


def relation_fields() -> Iterator[tuple[type[models.Model], str, type[models.Model]]]:
    """Every foreign key and many-to-many field whose target the admin can autocomplete."""
    for model in project_models():
        for field in model._meta.get_fields():
            if not (field.is_relation and field.concrete) or field.related_model is None:
                continue
            target = field.related_model
            assert isinstance(target, type)
            if target in admin.site._registry and admin.site._registry[target].search_fields:
                yield model, field.name, target


def autocomplete(client: Client, model: type[models.Model], field: str) -> Any:
    params = {"app_label": model._meta.app_label, "model_name": str(model._meta.model_name)}
    return client.get(f"{ADMIN}autocomplete/", params | {"field_name": field, "term": ""})


def test_autocomplete_offers_only_the_organisations_rows(tenants: Tenants, people: People) -> None:
    theirs, mine = rows_of(tenants.alpha), rows_of(tenants.bravo)
    checked = 0
    for model, field, target in relation_fields():
        where = f"{model._meta.label}.{field} -> {target._meta.label}"
        if isinstance(admin.site._registry[target], SuperuserOnlyAdmin):
            assert autocomplete(people.staff, model, field).status_code == 403, where
            continue
        response = autocomplete(people.staff, model, field)
        assert response.status_code == 200, where
        offered = {r["id"] for r in response.json()["results"]}
        assert str(theirs[target].pk) not in offered, where
        assert str(mine[target].pk) in offered, where
        assert not tenants.alpha.leaks(response.content.decode()), where
        everything = {
            r["id"] for r in autocomplete(people.superuser, model, field).json()["results"]
        }
        assert str(theirs[target].pk) in everything, where
        checked += 1
    assert checked >= 5


def choice_fields(response: Any) -> Iterator[tuple[str, Any]]:
    """The relation fields of a change page's form and of its inline forms (not an inline
    form's hidden primary key: the formset resolves it among the parent's own rows)."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [*inline.formset.forms, inline.formset.empty_form]
    for form in forms:
        for name, field in form.fields.items():
            if isinstance(field, ModelChoiceField) and name != form._meta.model._meta.pk.name:
                yield f"{type(form).__name__}.{name}", field


def test_relation_choices_offer_only_the_organisations_rows(
    tenants: Tenants, people: People
) -> None:
    theirs, mine = rows_of(tenants.alpha), rows_of(tenants.bravo)
    checked = []
    for model, model_admin in registry():
        if isinstance(model_admin, SuperuserOnlyAdmin):
            continue
        url = f"{base(model)}{mine[model].pk}/change/"
        response = people.staff.get(url)
        assert response.status_code == 200, url
        for name, field in choice_fields(response):
            target = field.queryset.model
            if target in theirs:
                assert not field.queryset.filter(pk=theirs[target].pk).exists(), name
                checked.append(name)
        everything = people.superuser.get(url)
        for name, field in choice_fields(everything):
            if field.queryset.model is Connection and model is Workflow:
                continue  # the workflow's own organisation's connections, for anyone
            if field.queryset.model in theirs:
                assert field.queryset.filter(pk=theirs[field.queryset.model].pk).exists(), name
    assert len(checked) >= 2, checked  # the members inline's people, a workflow's connection

    # Adding alpha's owner to bravo by their id: refused like any made-up choice.
    org = tenants.bravo.org
    members = list(org.memberships.order_by("pk"))
    data = {
        "name": org.name,
        "slug": org.slug,
        "memberships-TOTAL_FORMS": str(len(members) + 1),
        "memberships-INITIAL_FORMS": str(len(members)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, m in enumerate(members):
        data |= {f"memberships-{i}-id": str(m.pk), f"memberships-{i}-user": str(m.user_id)}
        data |= {f"memberships-{i}-role": m.role, f"memberships-{i}-organization": str(org.pk)}
    new = len(members)
    data |= {f"memberships-{new}-user": str(tenants.alpha.owner.pk)}
    data |= {f"memberships-{new}-role": "member", f"memberships-{new}-organization": str(org.pk)}
    response = people.staff.post(f"{base(type(org))}{org.pk}/change/", data)
    assert response.status_code == 200  # the form again, with the error
    assert "Select a valid choice" in response.content.decode()
    assert not org.memberships.filter(user=tenants.alpha.owner).exists()


def test_superusers_see_every_organisations_rows(tenants: Tenants, people: People) -> None:
    theirs, mine = rows_of(tenants.alpha), rows_of(tenants.bravo)
    for model, model_admin in registry():
        response = people.superuser.get(base(model))
        assert response.status_code == 200, model
        listed = {row.pk for row in response.context["cl"].result_list}
        assert {theirs[model].pk, mine[model].pk} <= listed, model
        for route, names in object_routes(model_admin):
            if not route.endswith(("change/", "history/")):
                continue
            values = parameter_values(theirs[model], model)
            got = people.superuser.get(base(model) + fill(route, names, values))
            assert got.status_code == 200, (model, route)


def test_the_shared_event_shows_staff_only_their_part(tenants: Tenants, people: People) -> None:
    """An event routed to both organisations: bravo's staff see their connection and their
    error line, not alpha's; a superuser sees both."""
    url = f"{base(tenants.shared_event.__class__)}{tenants.shared_event.pk}/change/"
    page = people.staff.get(url).content.decode()
    assert tenants.bravo.connection.display_name in page
    assert "bravo-secret-failure" in page
    assert not tenants.alpha.leaks(page)
    assert "alpha-secret-failure" not in page
    everything = people.superuser.get(url).content.decode()
    assert tenants.alpha.connection.display_name in everything
    assert "alpha-secret-failure" in everything


def test_staff_without_a_membership_see_no_rows(tenants: Tenants) -> None:
    loner = User.objects.create_user("loner@ops.test", None, is_staff=True)
    loner.user_permissions.set(Permission.objects.all())
    client = login(loner)
    for model, model_admin in registry():
        response = client.get(base(model))
        if isinstance(model_admin, SuperuserOnlyAdmin):
            assert response.status_code == 403, model
        else:
            assert list(response.context["cl"].result_list) == [], model
