"""Signing up and in with email and password in the browser (django-allauth)."""

from __future__ import annotations

from django.test import Client
from django.utils.html import escape

from accounts.models import AuditEvent, Membership, Role, User


def test_sign_up_creates_the_person_and_their_organisation(db: None) -> None:
    client = Client()
    assert client.get("/accounts/signup/").status_code == 200
    response = client.post(
        "/accounts/signup/",
        {
            "email": "Ada@Example.com",
            "password1": "a-long pass phrase",
            "password2": "a-long pass phrase",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    user = User.objects.get(email__iexact="ada@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert AuditEvent.objects.filter(
        action="organization.created", organization=membership.organization
    ).exists()
    home = client.get("/")
    assert escape(membership.organization.name) in home.content.decode()


def test_sign_in_with_email_and_password_then_use_the_api(db: None) -> None:
    client = Client()
    client.post(
        "/accounts/signup/",
        {
            "email": "bo@example.com",
            "password1": "a-long pass phrase",
            "password2": "a-long pass phrase",
        },
    )
    client.post("/accounts/logout/")
    assert client.get("/api/v1/me").status_code == 401
    bad = client.post("/accounts/login/", {"login": "bo@example.com", "password": "wrong"})
    assert bad.status_code == 200
    assert client.get("/api/v1/me").status_code == 401
    good = client.post(
        "/accounts/login/", {"login": "BO@example.com", "password": "a-long pass phrase"}
    )
    assert good.status_code == 302
    assert client.get("/api/v1/me").json()["data"]["user"]["email"] == "bo@example.com"


def test_duplicate_email_is_refused(db: None) -> None:
    User.objects.create_user(email="cy@example.com", password="x")
    response = Client().post(
        "/accounts/signup/",
        {
            "email": "CY@example.com",
            "password1": "a-long pass phrase",
            "password2": "a-long pass phrase",
        },
    )
    assert response.status_code == 200
    assert User.objects.filter(email__iexact="cy@example.com").count() == 1
