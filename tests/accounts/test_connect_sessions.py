from __future__ import annotations

import uuid
from datetime import timedelta

import jwt
import pytest
from django.utils import timezone
from freezegun import freeze_time

from accounts.audit import Actor
from accounts.connect_sessions import (
    EndUser,
    _signing_key,
    connect_session_issue,
    connect_session_verify,
)
from accounts.models import AuditEvent, Organization
from core.errors import PermissionDenied, Unauthenticated, ValidationFailed
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok

ACTOR = Actor(label="test")


def issue(org: Organization, providers: list[str] | None = None, ttl: int = 600) -> str:
    return connect_session_issue(
        organization_id=org.pk,
        providers=providers or [],
        end_user=EndUser(id="cust-42", email="c@example.com"),
        ttl_seconds=ttl,
        actor=ACTOR,
    ).token


def test_round_trip_binds_organisation_providers_and_end_user(org: Organization) -> None:
    claims = connect_session_verify(issue(org, ["hubspot"]), provider="hubspot")
    assert claims.organization_id == org.pk
    assert claims.providers == ["hubspot"]
    assert claims.end_user is not None
    assert claims.end_user.id == "cust-42"
    assert timedelta(0) < claims.expires_at - timezone.now() <= timedelta(seconds=600)
    assert AuditEvent.objects.filter(action="connect_session.created", organization=org).exists()


def test_provider_outside_the_session_is_refused(org: Organization) -> None:
    token = issue(org, ["hubspot"])
    with pytest.raises(PermissionDenied):
        connect_session_verify(token, provider="salesforce")
    assert connect_session_verify(issue(org), provider="salesforce").providers == []


def test_expired_session(org: Organization) -> None:
    token = issue(org, ttl=60)
    with freeze_time(timezone.now() + timedelta(seconds=61)), pytest.raises(Unauthenticated) as err:
        connect_session_verify(token)
    assert err.value.details == {"reason": "expired"}


@pytest.mark.parametrize("ttl", [0, 1801, 3600])
def test_lifetime_is_capped_at_30_minutes(org: Organization, ttl: int) -> None:
    with pytest.raises(ValidationFailed):
        issue(org, ttl=ttl)


def test_tampered_or_foreign_tokens_are_invalid(org: Organization) -> None:
    token = issue(org)
    header, payload, signature = token.split(".")
    forged = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "aud": "switchboard:connect",
            "iss": "switchboard",
            "exp": 9999999999,
            "iat": 0,
            "jti": str(uuid.uuid4()),
        },
        "some other key of thirty-two bytes!",
        algorithm="HS256",
    )
    unsigned = jwt.encode({"sub": str(org.pk)}, key="", algorithm="none")
    wrong_audience = jwt.encode(
        {
            "sub": str(org.pk),
            "aud": "other",
            "iss": "switchboard",
            "exp": 9999999999,
            "iat": 0,
            "jti": str(uuid.uuid4()),
        },
        _signing_key(),
        algorithm="HS256",
    )
    for bad in [f"{header}.{payload}.{signature[:-2]}xx", forged, unsigned, wrong_audience, "x"]:
        with pytest.raises(Unauthenticated) as err:
            connect_session_verify(bad)
        assert err.value.details == {"reason": "invalid"}


def test_api_creates_sessions_for_the_callers_organisation(api: Api, org: Organization) -> None:
    data = assert_envelope_ok(
        api.post(
            "/api/v1/connect-sessions",
            {"providers": ["hubspot", "hubspot"], "end_user": {"id": "u1"}, "ttl_seconds": 900},
        ),
        201,
    )
    claims = connect_session_verify(data["token"])
    assert data["url"].endswith(f"/connect/?session={data['token']}")
    assert claims.organization_id == org.pk
    assert data["providers"] == ["hubspot"]


@pytest.mark.parametrize(
    "body",
    [
        {"ttl_seconds": 3600},
        {"providers": ["Not A Provider"]},
        {"providers": ["nosuchcrm"]},
        {"end_user": {"email": "x"}},
    ],
)
def test_api_refuses_bad_session_requests(api: Api, body: dict[str, object]) -> None:
    response = api.post("/api/v1/connect-sessions", body)
    assert_envelope_error(response, 422, "validation_failed")
