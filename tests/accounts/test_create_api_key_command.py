from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from accounts.models import ApiKey, Membership, Organization, Role, User
from tests.conftest import Api, assert_envelope_ok


def run(*args: str) -> str:
    out = StringIO()
    call_command("create_api_key", *args, stdout=out)
    return out.getvalue()


def test_creates_organisation_owner_and_key(db: None) -> None:
    output = run("--org", "acme", "--owner", "ops@acme.test", "--name", "deploy")
    key = output.strip().splitlines()[-1]
    assert key.startswith("sbk_")
    assert " " not in key
    data = assert_envelope_ok(Api(key=key).get("/api/v1/me"))
    assert data["organization"]["slug"] == "acme"
    user = User.objects.get(email="ops@acme.test")
    assert Membership.objects.get(user=user).role == Role.OWNER
    assert ApiKey.objects.get().name == "deploy"


def test_second_run_reuses_the_organisation(db: None) -> None:
    first = run("--org", "acme", "--owner", "ops@acme.test").strip().splitlines()[-1]
    second = run("--org", "acme", "--owner", "ops@acme.test").strip().splitlines()[-1]
    assert first != second
    assert Organization.objects.count() == 1
    assert User.objects.count() == 1
    assert ApiKey.objects.filter(organization__slug="acme").count() == 2
