"""Token refresh: ahead of expiry, after a 401, exactly once under concurrency; a refused
refresh puts the connection in needs_reauth. Against the sandbox's real token endpoint."""

from __future__ import annotations

import asyncio
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import close_old_connections, transaction
from django.db import connection as db
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditEvent, Organization
from core.errors import ProviderAuthError
from integrations.models import Connection, ConnectionStatus
from integrations.providers.base import AccountIdentity, TokenSet
from integrations.services.calls import crm_client_for
from integrations.services.connections import connection_upsert
from integrations.services.tokens import ConnectionTokens, connection_refresh_token
from tests.conftest import Api, assert_envelope_error, assert_envelope_ok


def make_connection(
    sandbox: Any,
    org: Organization,
    *,
    expires_in: int = 1800,
    hub_id: int = 62515,
    display_name: str = "acme-sandbox.hubspot.test",
    connected_by_id: int | None = None,
    scopes: list[str] | None = None,
) -> Connection:
    """A HubSpot connection to a sandbox portal, with a token pair minted there (no browser;
    ``scopes``: fewer than the app's, for a connection the portal refuses things)."""
    extra = {"scopes": scopes} if scopes is not None else {}
    minted = sandbox.mint_token(hub_id=hub_id, expires_in=expires_in, **extra)
    with transaction.atomic():
        return connection_upsert(
            organization_id=org.pk,
            provider_key="hubspot",
            tokens=TokenSet(
                access_token=minted["access_token"],
                refresh_token=minted["refresh_token"],
                expires_at=timezone.now() + timedelta(seconds=expires_in),
            ),
            identity=AccountIdentity(external_id=str(hub_id), display_name=display_name),
            connected_by_id=connected_by_id,
            end_user=None,
            actor=Actor(label="test"),
        )


def refresh_grants(sandbox: Any) -> int:
    return int(sandbox.counters()["token_grants"].get("refresh_token", 0))


def test_a_token_about_to_expire_is_refreshed_before_use(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    connection = make_connection(sandbox, org, expires_in=120)  # inside the 5 min leeway
    old = connection.access_token
    token = async_to_sync(ConnectionTokens(connection.pk).access_token)()
    assert token != old
    assert refresh_grants(sandbox) == 1
    connection.refresh_from_db()
    assert connection.access_token == token
    assert connection.token_expires_at is not None
    assert connection.token_expires_at > timezone.now() + timedelta(minutes=20)
    assert connection.last_refreshed_at is not None


@pytest.mark.django_db(transaction=True)
def test_fifty_threads_cause_exactly_one_refresh(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    connection = make_connection(sandbox, org)
    stale = connection.access_token
    sandbox.expire_tokens()

    def refresh() -> str:
        try:  # each thread has its own database connection, as separate workers would
            return connection_refresh_token(connection_id=connection.pk, rejected=stale)
        finally:
            close_old_connections()
            db.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        tokens = list(pool.map(lambda _: refresh(), range(50)))
    assert len(set(tokens)) == 1
    assert tokens[0] != stale
    assert refresh_grants(sandbox) == 1


def test_fifty_concurrent_calls_with_an_expired_token_refresh_once(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    connection = make_connection(sandbox, org)
    sandbox.expire_tokens()  # the provider now answers 401 to the current token
    client = crm_client_for(connection)

    async def fifty() -> list[Any]:
        return await asyncio.gather(*(client.list("contact", limit=1) for _ in range(50)))

    results = async_to_sync(fifty)()
    assert all(r.is_ok for r in results), [r.error for r in results if not r.is_ok][:3]
    assert refresh_grants(sandbox) == 1


def test_a_revoked_refresh_token_needs_reauth(
    sandbox: Any, sandbox_settings: Any, org: Organization, api: Api
) -> None:
    connection = make_connection(sandbox, org)
    sandbox.revoke_tokens()
    with pytest.raises(ProviderAuthError):
        connection_refresh_token(connection_id=connection.pk, rejected=connection.access_token)
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.NEEDS_REAUTH
    assert "reconnect" in connection.status_reason
    assert connection.last_error_code == "reauth_required"
    assert AuditEvent.objects.filter(action="connection.needs_reauth").count() == 1
    # The API says so in the envelope, and the wizard offers to reconnect.
    response = api.get(f"/api/v1/connections/{connection.pk}/contacts")
    assert_envelope_error(response, 409, "reauth_required")
    listed = assert_envelope_ok(api.get(f"/api/v1/connections/{connection.pk}"))
    assert listed["status"] == "needs_reauth"


@pytest.mark.django_db(transaction=True)
def test_a_database_dump_holds_no_plaintext_token(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    connection = make_connection(sandbox, org)
    connection_refresh_token(connection_id=connection.pk, rejected=None)  # rotate once too
    connection.refresh_from_db()
    secrets = [connection.access_token, connection.refresh_token]
    settings_dict = db.settings_dict
    if db.vendor != "postgresql":
        pytest.skip("pg_dump needs PostgreSQL")
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            settings_dict["HOST"] or "127.0.0.1",
            "-p",
            str(settings_dict["PORT"] or 5432),
            "-U",
            settings_dict["USER"] or "postgres",
            settings_dict["NAME"],
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=os.environ | {"PGPASSWORD": settings_dict.get("PASSWORD") or ""},
    ).stdout
    assert "integrations_connection" in dump
    for secret in secrets:
        assert secret
        assert secret not in dump
