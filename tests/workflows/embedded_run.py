"""Run by test_embedded.py in a child process on the embedded defaults (SQLite database, SQLite
checkpoints, tasks executed eagerly): a lead_qualification run to approval and on to the end.
Prints one JSON line with what happened. Reads SANDBOX_ACCESS_TOKEN / SANDBOX_REFRESH_TOKEN.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

import orjson  # noqa: E402
from asgiref.sync import async_to_sync  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.audit import Actor  # noqa: E402
from accounts.models import Organization  # noqa: E402
from integrations.models import CrmWrite  # noqa: E402
from integrations.providers.base import AccountIdentity, TokenSet  # noqa: E402
from integrations.providers.unified import CompanyIn, ContactIn  # noqa: E402
from integrations.services.calls import crm_client_for  # noqa: E402
from integrations.services.connections import connection_upsert  # noqa: E402
from integrations.sync.mirror import mirror_upsert  # noqa: E402
from workflows.checkpoints import sqlite_path  # noqa: E402
from workflows.models import WorkflowRun  # noqa: E402
from workflows.services import approval_decide, run_start, workflow_ensure_defaults  # noqa: E402


def main() -> None:
    call_command("migrate", verbosity=0)
    actor = Actor(label="embedded-test")
    org = Organization.objects.create(name="Embedded", slug="embedded")
    with transaction.atomic():
        hubspot = connection_upsert(
            organization_id=org.pk,
            provider_key="hubspot",
            tokens=TokenSet(
                access_token=os.environ["SANDBOX_ACCESS_TOKEN"],
                refresh_token=os.environ["SANDBOX_REFRESH_TOKEN"],
                expires_at=timezone.now() + timedelta(minutes=30),
            ),
            identity=AccountIdentity(external_id="62515", display_name="acme"),
            connected_by_id=None,
            end_user=None,
            actor=actor,
        )
    client = crm_client_for(hubspot)
    company = async_to_sync(client.create)(
        "company", CompanyIn(name="Embedded Co", domain="embedded-co.example.com", employees=300)
    ).unwrap()
    contact = async_to_sync(client.create)(
        "contact",
        ContactIn(
            email="sam@embedded-co.example.com",
            job_title="Head of Operations",
            lifecycle_stage="lead",
            company_id=company.id,
        ),
    ).unwrap()
    mirror_upsert(connection_id=hubspot.pk, object_type="company", records=[company])
    mirror_upsert(connection_id=hubspot.pk, object_type="contact", records=[contact])
    workflow = {w.key: w for w in workflow_ensure_defaults(org)}["lead_qualification"]
    with transaction.atomic():  # eager: the task runs when this commits
        run = run_start(
            workflow=workflow, actor=actor, trigger="api", input={"contact_id": contact.id}
        )
    run.refresh_from_db()
    waited = run.status
    with transaction.atomic():
        approval_decide(approval=run.approvals.get(), approved=True, actor=actor)
    run = WorkflowRun.objects.get(pk=run.pk)
    print(
        orjson.dumps(
            {
                "vendor": connection.vendor,
                "checkpoints": str(sqlite_path()),
                "checkpoints_exist": sqlite_path().exists(),
                "waited": waited,
                "status": run.status,
                "error": run.error_message,
                "output": run.output,
                "writes": sorted(CrmWrite.objects.values_list("object_type", "status")),
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
