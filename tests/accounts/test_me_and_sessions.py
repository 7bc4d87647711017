from __future__ import annotations

from django.test import Client

from accounts.keys import prefix_of
from accounts.models import Organization, Role
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok
from tests.factories import make_membership, make_organization


def test_me_with_an_api_key(api: Api, org: Organization) -> None:
    data = assert_envelope_ok(api.get("/api/v1/me"))
    assert data["organization"] == {"id": str(org.pk), "slug": org.slug, "name": org.name}
    assert data["auth_method"] == "api_key"
    assert data["role"] == "admin"
    assert data["user"] is None
    assert data["api_key"]["prefix"] == prefix_of(api.key or "")


def test_me_with_a_browser_session_picks_the_organisation(org: Organization) -> None:
    membership = make_membership(organization=org, role=Role.ADMIN)
    second = make_organization()
    make_membership(organization=second, user=membership.user, role=Role.MEMBER)
    client = Client()
    client.force_login(membership.user)
    data = assert_envelope_ok(client.get("/api/v1/me"))
    assert data["organization"]["slug"] == org.slug
    assert data["role"] == "admin"
    assert data["user"]["email"] == membership.user.email
    data = assert_envelope_ok(client.get("/api/v1/me", headers={"X-Organization": second.slug}))
    assert data["organization"]["slug"] == second.slug
    assert data["role"] == "member"


def test_session_for_an_organisation_you_are_not_in(org: Organization) -> None:
    membership = make_membership(organization=org)
    stranger = make_organization()
    client = Client()
    client.force_login(membership.user)
    response = client.get("/api/v1/me", headers={"X-Organization": stranger.slug})
    assert_envelope_error(response, 403, "permission_denied")


def test_signed_in_person_without_an_organisation(db: None) -> None:
    from tests.factories import make_user

    client = Client()
    client.force_login(make_user())
    assert_envelope_error(client.get("/api/v1/me"), 403, "permission_denied")
