"""The integrations admin: connections without token values, operator actions, the call log."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.test import Client

from accounts.models import AuditEvent, Organization
from integrations.models import Connection, ConnectionStatus, ProviderCallLog
from integrations.services.calls import call_log_prune
from tests.factories import make_user
from tests.integrations.test_tokens import make_connection, refresh_grants


def staff() -> Client:
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def act(client: Client, action: str, connection: Connection) -> str:
    response = client.post(
        "/admin/integrations/connection/",
        {"action": action, "_selected_action": [str(connection.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


def test_connection_pages_never_show_tokens(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    connection = make_connection(sandbox, org)
    client = staff()
    for page in (
        "/admin/integrations/connection/",
        f"/admin/integrations/connection/{connection.pk}/change/",
        "/admin/integrations/oauthattempt/",
    ):
        response = client.get(page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert connection.access_token not in body
        assert connection.refresh_token is not None
        assert connection.refresh_token not in body
    assert (
        "acme-sandbox.hubspot.test"
        in client.get("/admin/integrations/connection/").content.decode()
    )


def test_operator_actions(sandbox: Any, sandbox_settings: Any, org: Organization) -> None:
    connection = make_connection(sandbox, org)
    client = staff()
    assert "acme-sandbox.hubspot.test: OK" in act(client, "test_connection", connection)
    assert "token refreshed" in act(client, "refresh_token_now", connection)
    assert refresh_grants(sandbox) == 1
    sandbox.revoke_tokens()
    page = act(client, "refresh_token_now", connection)
    assert "reauth_required" in page
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.NEEDS_REAUTH
    assert "disconnected" in act(client, "disconnect", connection)
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert AuditEvent.objects.filter(action="connection.deleted").count() == 1


def test_the_call_log_keeps_the_newest_rows(
    sandbox: Any, sandbox_settings: Any, org: Organization
) -> None:
    connection = make_connection(sandbox, org)
    ProviderCallLog.objects.bulk_create(
        ProviderCallLog(connection=connection, method="GET", path=f"/crm/{n}", duration_ms=1.0)
        for n in range(30)
    )
    deleted = async_to_sync(call_log_prune)(connection_id=connection.pk, keep=10)
    assert deleted == 20
    kept = list(
        ProviderCallLog.objects.filter(connection=connection).values_list("path", flat=True)
    )
    assert sorted(kept) == sorted(f"/crm/{n}" for n in range(20, 30))
