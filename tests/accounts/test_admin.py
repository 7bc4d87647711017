from __future__ import annotations

from django.test import Client

from accounts.keys import prefix_of
from accounts.models import ApiKey, AuditEvent, Membership, Organization, Role
from tests.conftest import new_key
from tests.factories import make_membership, make_user


def staff_client() -> Client:
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def test_admin_pages_render_and_never_show_key_material(org: Organization) -> None:
    key = new_key(org, "deploy key")
    api_key = ApiKey.objects.get()
    make_membership(organization=org, role=Role.ADMIN)
    client = staff_client()
    pages = [
        "/admin/",
        "/admin/accounts/user/",
        "/admin/accounts/user/add/",
        "/admin/accounts/organization/",
        f"/admin/accounts/organization/{org.pk}/change/",
        "/admin/accounts/apikey/",
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        "/admin/accounts/auditevent/",
        "/admin/accounts/apikey/?q=deploy",
        "/admin/accounts/auditevent/?action=api_key.created",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert key not in body, page
        assert api_key.key_hash not in body, page
    listing = client.get("/admin/accounts/apikey/").content.decode()
    assert (prefix_of(key) or "missing") in listing
    assert client.get("/admin/accounts/apikey/add/").status_code == 403


def test_revoke_action_revokes_and_audits(org: Organization) -> None:
    key = new_key(org)
    api_key = ApiKey.objects.get()
    client = staff_client()
    response = client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke", "_selected_action": [str(api_key.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 key(s)." in response.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    event = AuditEvent.objects.get(action="api_key.revoked")
    assert event.actor_user is not None
    assert event.actor_user.is_staff
    from tests.conftest import Api

    assert Api(key=key).get("/api/v1/me").status_code == 401


def test_admin_is_for_staff_only(org: Organization) -> None:
    client = Client()
    client.force_login(make_membership(organization=org, role=Role.OWNER).user)
    response = client.get("/admin/accounts/apikey/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def inline_form(org: Organization, rows: list[dict[str, str]], initial: int) -> dict[str, str]:
    data = {
        "name": org.name,
        "slug": org.slug,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(initial),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        data |= {f"memberships-{i}-{k}": v for k, v in row.items()}
    return data


def test_admin_membership_and_organisation_edits_are_audited(org: Organization) -> None:
    client = staff_client()
    person = make_user(email="new.member@example.com")
    url = f"/admin/accounts/organization/{org.pk}/change/"
    added = inline_form(
        org, [{"user": str(person.pk), "role": "member", "organization": str(org.pk)}], 0
    )
    added["name"] = "Renamed Org"
    response = client.post(url, added)
    assert response.status_code == 302, response.content.decode()[:3000]
    membership = Membership.objects.get(organization=org, user=person)
    assert membership.role == Role.MEMBER
    assert AuditEvent.objects.filter(
        action="membership.created", entity_id=str(membership.pk)
    ).exists()
    renamed = AuditEvent.objects.get(action="organization.updated", organization=org)
    assert renamed.changes == {"name": "Renamed Org"}

    org.refresh_from_db()
    row = {"id": str(membership.pk), "user": str(person.pk), "organization": str(org.pk)}
    promoted = inline_form(org, [row | {"role": "admin"}], 1)
    assert client.post(url, promoted).status_code == 302
    assert Membership.objects.get(pk=membership.pk).role == Role.ADMIN
    updated = AuditEvent.objects.get(action="membership.updated", entity_id=str(membership.pk))
    assert updated.changes["role"] == ["member", "admin"]

    removed = inline_form(org, [row | {"role": "admin", "DELETE": "on"}], 1)
    assert client.post(url, removed).status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(
        action="membership.deleted", entity_id=str(membership.pk)
    ).exists()


def test_admin_creates_organisations_through_the_service(db: None) -> None:
    client = staff_client()
    data = inline_form(Organization(name="Fresh Co", slug="fresh-co"), [], 0)
    response = client.post("/admin/accounts/organization/add/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    org = Organization.objects.get(slug="fresh-co")
    event = AuditEvent.objects.get(action="organization.created", organization=org)
    assert event.actor_user is not None
